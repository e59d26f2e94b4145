"""Executor gates: strict order, fail closed on missing marks, caps at the executor (independent of the
detector's sizing), pending marks exactly once, verdict lines, bad input refused with a reason."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from hip3.config import ConfigError, parse_config
from hip3.execution.entry_marks import PendingMarks
from hip3.execution.gates import ExecutorGates, check_flatten, check_order_input
from hip3.execution.params import (
    BurstParams,
    CorrelationConcurrencyParams,
    CorrelationCooldownParams,
    ExecutorParams,
    HourlyDrawdownParams,
    MarketHealthParams,
    ReentryDelayParams,
    SoftGateParams,
    TiltGuardParams,
)
from hip3.execution.soft_gates import SoftGates
from tests.execution.helpers import GOLD, MS, SILVER, SPECS, TSLA, D, closed, entry, flatten, pos, snap

NOW_NS = 1_000 * MS
NOW_MS = 1_700_000_000_000


def make(params: ExecutorParams | None = None, soft: SoftGateParams | None = None) -> ExecutorGates:
    g = ExecutorGates(params or ExecutorParams(), SoftGates(soft or SoftGateParams()), SPECS)
    for c in SPECS:
        g.set_mark(c, 10.0)
    return g


def ev(g: ExecutorGates, intent, s=None, *, latched=False, now_ns=NOW_NS, now_ms=NOW_MS, balance=None, fif=()):
    return g.evaluate(intent, snapshot=snap() if s is None else s, hard_stop_latched=latched, now_ns=now_ns,
                      now_ms=now_ms, balance_usd=balance, flatten_in_flight=fif)


def test_accepts_and_marks_pending_once() -> None:
    g = make()
    v = ev(g, entry())
    assert v.accepted and v.reason == "Queued" and v.sz == D(2)
    assert "verdict accepted reason=Queued coin=xyz:GOLD" in v.log_line()
    v2 = ev(g, entry())
    assert v2.outcome == "skipped" and v2.reason == "PendingOrderExists"
    assert g.release(v.intent_id) is True
    assert g.release(v.intent_id) is False  # exactly once
    assert ev(g, entry()).accepted


@pytest.mark.parametrize(
    ("intent", "reason"),
    [
        (entry(GOLD, asset=1), "AssetMismatch"),
        (entry(sz="0"), "InvalidSize"),
        (entry(sz="-1"), "InvalidSize"),
        (entry(sz="1.001"), "InvalidSize"),
        (entry(px="10.00001"), "InvalidPrice"),
        (entry(px="123456.7"), "InvalidPrice"),
        (entry(valid_until_ns=NOW_NS - 1), "Expired"),
        (entry(reduce_only=True), "InvalidIntent"),
    ],
)
def test_bad_input_refused_with_reason(intent, reason: str) -> None:
    v = ev(make(), intent)
    assert v.outcome == "rejected" and v.reason == reason and v.detail


def test_unknown_market() -> None:
    g = ExecutorGates(ExecutorParams(), SoftGates(SoftGateParams()), {GOLD: SPECS[GOLD]})
    v = ev(g, entry(SILVER))
    assert v.reason == "UnknownMarket"


def test_hard_stop_first() -> None:
    assert ev(make(), entry(), latched=True).reason == "HardStop"


def test_not_synced_rejected() -> None:
    assert ev(make(), entry(), snap(synced=False)).reason == "PositionsNotSynced"


def test_missing_mark_fails_closed_for_order_position_and_pending() -> None:
    g = make()
    g.set_mark(GOLD, 0.0)
    assert ev(g, entry(GOLD)).reason == "MarketDataUnavailable"
    g = make()
    g.set_mark(SILVER, 0.0)
    assert ev(g, entry(GOLD), snap(pos(SILVER, "1"))).reason == "MarketDataUnavailable"
    g = make()
    assert ev(g, entry(SILVER)).accepted
    g.set_mark(SILVER, float("nan"))
    assert ev(g, entry(GOLD)).reason == "MarketDataUnavailable"


def test_capacity_shrinks_and_rejects_small() -> None:
    g = make()  # cap $50 per market, mark 10
    v = ev(g, entry(sz="10"))  # $100 -> shrink to $50 ... minus nothing
    assert v.accepted and v.sz == D("5.00") and "shrunk" in v.log_line()
    g = make()
    v = ev(g, entry(sz="2"), snap(pos(GOLD, "4.6")))  # available $4 -> MaxPositionPerMarket
    assert v.reason == "MaxPositionPerMarket"
    g = make()
    v = ev(g, entry(sz="2"), snap(pos(GOLD, "5")))  # available 0
    assert v.reason == "MaxPositionPerMarket"


def test_capacity_counts_pending_at_mark_and_detector_size_ignored() -> None:
    # The detector asked for $1000, the executor cap ($20 here) wins.
    g = make(ExecutorParams(max_notional_per_market_usd=20.0))
    v = ev(g, entry(sz="100"))
    assert v.accepted and v.sz == D(2)


def test_below_exchange_minimum_rejected() -> None:
    v = ev(make(), entry(sz="0.9"))  # $9 < the exchange's $10 minimum
    assert v.reason == "BelowMinNotional"


def test_dynamic_sizing_is_refused_until_the_balance_is_wired() -> None:
    # Review finding 8: the executor has no balance (balance_usd=None), so "dynamic_sizing = true" was
    # silently the static cap. It is refused at decode time, with one clear line naming the field.
    with pytest.raises(ValueError, match="not wired yet: the balance is not published to the executor"):
        ExecutorParams(dynamic_sizing=True)
    with pytest.raises(ConfigError) as e:
        parse_config('mode = "observe"\n[executor]\ndynamic_sizing = true\n', "x.toml")
    line = str(e.value)
    assert "\n" not in line and "`executor`" in line and "dynamic_sizing" in line and "not wired yet" in line
    g = make()  # static: a balance changes nothing
    assert g.market_cap_usd(D(300)) == D(50)


def test_dynamic_cap_math_for_when_it_is_wired() -> None:
    params = ExecutorParams(risk_per_market_fraction=0.1)
    msgspec.structs.force_setattr(params, "dynamic_sizing", True)  # past the decode-time refusal
    g = make(params)
    assert g.market_cap_usd(D(300)) == D(30)
    assert g.market_cap_usd(None) == D(50)  # unknown balance -> static cap
    v = ev(g, entry(sz="5"), balance=D(300))
    assert v.accepted and v.sz == D(3)


def test_total_exposure() -> None:
    g = make()  # $100 total
    s = snap(pos(SILVER, "4"), pos(TSLA, "4"))  # $80
    assert ev(g, entry(GOLD, sz="2"), s).reason == "MaxPositionTotal"  # 80 + 20 >= 100
    assert ev(g, entry(GOLD, sz="1.5"), s).accepted


def test_concurrency() -> None:
    g = make(ExecutorParams(max_concurrent_positions=1, max_total_notional_usd=1000))
    assert ev(g, entry(GOLD), snap(pos(SILVER, "1"))).reason == "MaxConcurrentPositions"


def test_correlation_weighted_concurrency() -> None:
    soft = SoftGateParams(correlation_concurrency=CorrelationConcurrencyParams(
        enabled=True, max_weight=2.5, group_weight=1.5, groups={GOLD: "metals", SILVER: "metals"}))
    g = make(ExecutorParams(max_total_notional_usd=1000), soft)
    # GOLD long + proposed SILVER long: both weigh 1.5 -> 3.0 > 2.5
    assert ev(g, entry(SILVER), snap(pos(GOLD, "1"))).reason == "MaxConcurrentPositions"
    # opposite direction: 1 + 1 = 2 <= 2.5
    assert ev(g, entry(SILVER, is_buy=False), snap(pos(GOLD, "1"))).accepted


def test_flatten_pending_then_position_then_pending() -> None:
    g = make()
    assert ev(g, entry(), snap(pending_flatten=(GOLD,))).reason == "FlattenInProgress"
    assert ev(g, entry(), fif={GOLD}).reason == "FlattenInProgress"
    assert ev(g, entry(), snap(pos(GOLD, "1"))).reason == "AlreadyHasPosition"


def test_budget_undoes_pending_mark() -> None:
    g = make(ExecutorParams(action_budget_orders=1, max_total_notional_usd=1000))
    assert ev(g, entry(GOLD)).accepted
    v = ev(g, entry(SILVER))
    assert v.reason == "BudgetExhausted"
    assert not g.pending.is_pending(SILVER)
    assert ev(g, entry(SILVER), now_ns=NOW_NS + 1000 * MS).accepted  # window passed


def test_soft_gate_order_and_burst_recorded_only_after_all_gates() -> None:
    soft = SoftGateParams(burst=BurstParams(enabled=True, max_signals=1, window_ms=60_000, cooldown_ms=60_000))
    g = make(soft=soft)
    # rejected by a later gate (capacity): the burst signal is not recorded
    assert ev(g, entry(sz="2"), snap(pos(GOLD, "5"))).reason == "MaxPositionPerMarket"
    assert ev(g, entry()).accepted  # burst not consumed by the rejected one
    assert ev(g, entry(SILVER)).accepted
    # GOLD now in burst cooldown
    v = ev(g, entry(GOLD))
    assert v.reason == "BurstSignal"


def test_soft_gates_each_block() -> None:
    cases = [
        (SoftGateParams(hourly_drawdown=HourlyDrawdownParams(enabled=True, max_loss_usd=1.0)), "MaxDrawdown"),
        (SoftGateParams(correlation_cooldown=CorrelationCooldownParams(enabled=True, max_closes=1)),
         "CorrelationCooldown"),
        (SoftGateParams(tilt_guard=TiltGuardParams(enabled=True, max_consecutive_losses=1)), "TiltGuard"),
        (SoftGateParams(reentry_delay=ReentryDelayParams(enabled=True)), "ReEntryDelay"),
        (SoftGateParams(market_health=MarketHealthParams(enabled=True, min_samples=1)), "MarketHealth"),
    ]
    for soft, reason in cases:
        g = make(soft=soft)
        g.soft.on_position_closed(closed(GOLD, pnl="-2"), NOW_MS - 1)
        v = ev(g, entry(GOLD))
        assert v.outcome == "rejected" and v.reason == reason, (reason, v)


def test_pending_marks_unit() -> None:
    p = PendingMarks()
    assert p.try_mark(GOLD, "a", Decimal(1))
    assert not p.try_mark(GOLD, "b", Decimal(1))
    assert len(p) == 1 and p.items() == [(GOLD, Decimal(1))]
    assert not p.release("b")
    assert p.release("a") and len(p) == 0


def test_check_flatten() -> None:
    assert check_flatten(flatten(), SPECS, NOW_NS).accepted
    assert check_flatten(flatten(sz="0"), SPECS, NOW_NS).reason == "InvalidSize"
    assert check_flatten(flatten(valid_until_ns=1), SPECS, NOW_NS).reason == "Expired"
    assert check_flatten(flatten(px="9.99999"), SPECS, NOW_NS).reason == "InvalidPrice"


def test_absurd_size_or_price_is_refused_not_an_overflow() -> None:
    """A fuzzed 1E+999999 passed the lot and tick rules and raised decimal.Overflow in the caps'
    arithmetic, crashing the executor; now it is an input rejection."""
    for sz, px, reason in (("1E+999999", "10", "InvalidSize"), ("1", "1E+999999", "InvalidPrice")):
        v = check_order_input(intent_id="i", coin=GOLD, asset=SPECS[GOLD].asset, px=D(px), sz=D(sz),
                              valid_until_ns=10**15, specs=SPECS, now_ns=0)
        assert v is not None and v.reason == reason and "out of range" in v.detail

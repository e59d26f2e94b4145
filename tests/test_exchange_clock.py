"""The exchange-clock estimate (hip3.account.exchange_clock) and the entry conditions built on it: pure,
clock-injected."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hip3.account.collateral import CollateralParams
from hip3.account.entry_conditions import EntryConditions
from hip3.account.exchange_clock import ClockOffsetEstimator, ClockParams, ExchangeTime, skew_problem
from hip3.messages import DexCollateral, ExchangeClock, FeedState, PositionSnapshot
from hip3.strategy.entry_readiness import EntryReadiness, reason_key

MS = 1_000_000
MONO0 = 5_000 * MS  # a monotonic clock that started a while ago
WALL0 = 1_700_000_000_000 * MS  # the host's wall clock at MONO0


def _est(skew_ms: int, latencies_ms: list[int], spacing_ms: int = 100, bucket_ms: int = 2000) -> ClockOffsetEstimator:
    """Samples from an exchange whose clock is the host's + ``skew_ms``, each frame received
    ``latency`` ms after the exchange stamped it."""
    est = ClockOffsetEstimator(bucket_ms=bucket_ms, buckets=15)
    est.set_reference(MONO0, WALL0)
    for i, lat in enumerate(latencies_ms):
        recv_mono = MONO0 + i * spacing_ms * MS
        exch_ms = (WALL0 // MS) + i * spacing_ms + skew_ms - lat
        assert est.add(exch_ms, recv_mono)
    return est


@pytest.mark.parametrize("skew_ms", [10_000, -10_000, 0, 1234])
def test_the_estimate_is_the_least_delayed_frame(skew_ms: int) -> None:
    est = _est(skew_ms, [80, 35, 250, 12, 400, 60] * 5)
    now_mono = MONO0 + 10_000 * MS
    now_wall = WALL0 + 10_000 * MS
    # A lower bound: short of the truth by the smallest latency of each bucket (12 ms here), never above.
    assert est.skew_ms(now_mono, now_wall) == skew_ms - 12
    msg = est.message(now_mono, now_wall)
    assert msg is not None and msg.skew_ms == skew_ms - 12 and msg.samples == 30
    t = ExchangeTime()
    t.on_clock(msg)
    assert t.now_ms(now_mono, now_wall) == now_wall // MS + skew_ms - 12


def test_a_wall_clock_step_shows_at_once_and_does_not_spoil_the_estimate() -> None:
    est = _est(10_000, [20] * 10)
    now_mono = MONO0 + 2_000 * MS
    assert est.skew_ms(now_mono, WALL0 + 2_000 * MS) == 9_980
    # NTP steps the host 9 s forward: the estimate (against the monotonic clock) is unchanged and the
    # skew follows the new wall time immediately.
    assert est.skew_ms(now_mono, WALL0 + 11_000 * MS) == 980
    t = ExchangeTime()
    msg = est.message(now_mono, WALL0 + 2_000 * MS)
    assert msg is not None
    t.on_clock(msg)
    assert t.skew_ms(now_mono, WALL0 + 11_000 * MS) == 980


def test_one_bogus_timestamp_moves_one_bucket_not_the_estimate() -> None:
    est = _est(0, [20] * 100, spacing_ms=100, bucket_ms=1000)  # ten buckets of ten frames
    before = est.offset_mono_ms()
    # A frame stamped 5 minutes in the future (a corrupted field) lands in the next bucket.
    assert est.add(WALL0 // MS + 10_100 + 300_000, MONO0 + 10_100 * MS)
    assert est.offset_mono_ms() == before


def test_implausible_and_missing_timestamps_are_dropped_and_counted() -> None:
    est = ClockOffsetEstimator()
    est.set_reference(MONO0, WALL0)
    assert not est.add(1, MONO0)  # a test frame's "time": 1
    assert not est.add(0, MONO0)
    assert not est.add(WALL0 // MS + 3 * 86_400_000, MONO0)
    assert est.rejected == 3 and est.samples == 0
    assert est.offset_mono_ms() is None and est.message(MONO0, WALL0) is None
    assert ExchangeTime().now_ms(MONO0, WALL0) == WALL0 // MS  # unmeasured: the host's time


def test_skew_problem_says_the_offset_and_the_way_out() -> None:
    assert skew_problem(1999, 2000) == "" and skew_problem(-2000, 2000) == ""
    behind = skew_problem(10_012, 2000)
    assert "host clock 10012 ms behind the exchange" in behind and "+10012 ms" in behind and "NTP" in behind
    ahead = skew_problem(-10_012, 2000)
    assert "host clock 10012 ms ahead of the exchange" in ahead and "-10012 ms" in ahead
    assert reason_key(behind) == reason_key(skew_problem(10_450, 2000))  # numbers move, the reason does not


def _funded(withdrawable: str = "500") -> DexCollateral:
    return DexCollateral(dex="xyz", account_value=Decimal(withdrawable), withdrawable=Decimal(withdrawable),
                         margin_used=Decimal(0), perp_withdrawable=Decimal(0))


def _snap(c: DexCollateral | None) -> PositionSnapshot:
    return PositionSnapshot(version=1, synced=True, positions=(), open_orders=(), realized_pnl_usd=Decimal(0),
                            fees_usd=Decimal(0), feed_conn_id=1, collateral=c)


def _clock(skew_ms: int) -> ExchangeClock:
    return ExchangeClock(offset_mono_ms=0, skew_ms=skew_ms, samples=10, last_sample_age_ms=5)


def test_entry_readiness_refuses_a_skewed_clock_with_the_measured_offset() -> None:
    r = EntryReadiness(trading=True, conditions=EntryConditions(CollateralParams(), ClockParams(max_skew_ms=2000)))
    r.on_feed_state(FeedState(state="connected", conn_id=1, market_data_ready=True, user_ready=True, since_ns=0))
    r.on_positions(_snap(_funded()))
    assert "not measured yet" in r.blocked_reason(False)
    r.on_clock(_clock(10_003))
    assert "host clock 10003 ms behind the exchange" in r.blocked_reason(False)
    r.on_clock(_clock(-9_990))
    assert "host clock 9990 ms ahead of the exchange" in r.blocked_reason(False)
    r.on_clock(_clock(40))
    assert r.blocked_reason(False) == ""
    assert r.blocked_reason(True) == "hard stop latched"


def test_entry_conditions_refuse_only_known_problems_for_the_executor() -> None:
    strict = EntryConditions(CollateralParams(), ClockParams())
    lenient = EntryConditions(CollateralParams(), ClockParams(), refuse_unknown=False)
    assert "not known yet" in strict.problem() and lenient.problem() == ""
    for c in (strict, lenient):
        c.on_snapshot(_snap(_funded()))
    assert "not measured yet" in strict.problem() and lenient.problem() == ""
    for c in (strict, lenient):
        c.on_clock(_clock(-5000))
        assert "5000 ms ahead" in c.problem()
        c.on_clock(_clock(0))
        assert c.problem() == ""
        # Collateral first: it is the operator's to fix, and says how.
        c.on_snapshot(_snap(_funded("0")))
        c.on_clock(_clock(9000))
        assert c.problem().startswith("dex 'xyz' has no usable collateral")

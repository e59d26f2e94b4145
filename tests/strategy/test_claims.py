"""Flatten claims and the positions mirror: one flatten per market in flight, a claim released on any
terminal state, resync keeps entry state; bad input never raises."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hip3.messages import ExchangeClock, OrderCancelled, OrderFilled, OrderRejected, OrderSubmitted, PositionClosed
from hip3.strategy.exit_watcher_core import ExitWatcherCore
from hip3.strategy.params import ExitParams, OracleExitParams, OracleTrackerParams

from .helpers import MS, T0_MS, T0_NS, bbo, ctx, position, snapshot

C = "xyz:A"
EXIT_BBO = bbo(C, 99.99, 100.01)  # at the oracle: mark regression fires after min hold


def make(params: ExitParams | None = None) -> ExitWatcherCore:
    core = ExitWatcherCore(params or ExitParams(), OracleTrackerParams(), {C: 2}, id_prefix="t")
    core.add_markets([C, "xyz:B"])
    core.on_ctx(ctx(C, 100.0), T0_NS)
    core.on_position_snapshot(snapshot(position(C)), T0_NS, T0_MS)
    return core


def at(ms: float) -> int:
    return T0_NS + int(ms * MS)


def submitted(intent_id: str, cloid: str = "0xabc") -> OrderSubmitted:
    return OrderSubmitted(cloid=cloid, intent_id=intent_id, coin=C, asset=110001, is_buy=False, px=Decimal("99"),
                          sz=Decimal("2"), reduce_only=True, tif="Ioc", kind="flatten", reason="x", nonce=1,
                          post_id=1, origin_recv_ns=0, sent_ns=0)


def test_never_two_flattens_for_one_position() -> None:
    """Every exit path is blocked while the market's claim is held."""
    core = make(ExitParams(claim_expiry_ms=60_000))
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None and core.is_claimed(C)
    assert core.on_bbo(EXIT_BBO, at(2100)) is None
    assert core.on_ctx(ctx(C, 100.2), at(2100)) is None
    assert core.on_tick(at(40_000)) == []  # time stop too
    assert core.stats()["flattens"] == 1


@pytest.mark.parametrize("keyed_by", ["cloid", "intent_id"])
def test_claim_released_on_ioc_miss(keyed_by: str) -> None:
    """An IOC that did not match releases the claim; the next update retries."""
    core = make()
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None
    cloid = "0xabc" if keyed_by == "cloid" else first.intent_id
    if keyed_by == "cloid":
        core.on_order_submitted(submitted(first.intent_id, cloid))
    core.on_order_rejected(OrderRejected(cloid=cloid, coin=C, benign=True, reduce_only=True, recv_ns=0,
                                         reason="Order could not immediately match against any resting orders."))
    assert not core.is_claimed(C)
    second = core.on_bbo(EXIT_BBO, at(2100))
    assert second is not None and second.intent_id != first.intent_id


def test_intent_that_never_became_an_order_releases_its_claim() -> None:
    """A flatten that could not be sent (no executor) or was refused must not hold the market."""
    core = make()
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None and core.is_claimed(C)
    core.release_intent("some-other-intent")
    assert core.is_claimed(C)
    core.release_intent(first.intent_id)
    assert not core.is_claimed(C)
    assert core.on_bbo(EXIT_BBO, at(2100)) is not None


def test_order_given_up_before_submission_releases_by_intent_id() -> None:
    """The executor gave the flatten up (or refused it) before any OrderSubmitted linked its cloid."""
    core = make()
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None
    core.on_order_rejected(OrderRejected(cloid="0xnever-seen", coin=C, reason="requeue_exhausted", benign=False,
                                         reduce_only=True, recv_ns=0, intent_id="another-intent"))
    assert core.is_claimed(C)
    core.on_order_rejected(OrderRejected(cloid="0xnever-seen", coin=C, reason="requeue_exhausted", benign=False,
                                         reduce_only=True, recv_ns=0, intent_id=first.intent_id))
    assert not core.is_claimed(C)


def test_claim_released_on_cancel() -> None:
    core = make()
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None
    core.on_order_submitted(submitted(first.intent_id, "0xc1"))
    core.on_order_cancelled(OrderCancelled(cloid="0xc1", oid=1, coin=C, reason="x", recv_ns=0))
    assert not core.is_claimed(C)


def test_unrelated_terminal_events_do_not_release() -> None:
    core = make()
    assert core.on_bbo(EXIT_BBO, at(2000)) is not None
    core.on_order_rejected(OrderRejected(cloid="0xother", coin=C, reason="x", benign=False, reduce_only=False,
                                         recv_ns=0))
    assert core.is_claimed(C)


def test_partial_fill_releases_and_resizes() -> None:
    core = make()
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None
    core.on_order_submitted(submitted(first.intent_id, "0xf"))
    core.on_order_filled(OrderFilled(cloid="0xf", oid=1, coin=C, is_buy=False, total_sz=Decimal("0.5"),
                                     avg_px=Decimal("99.9"), reduce_only=True, recv_ns=0))
    assert not core.is_claimed(C)
    second = core.on_bbo(EXIT_BBO, at(2100))
    assert second is not None and second.sz == Decimal("1.5")


def test_full_fill_keeps_claim_until_closed() -> None:
    core = make()
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None
    core.on_order_submitted(submitted(first.intent_id, "0xf"))
    core.on_order_filled(OrderFilled(cloid="0xf", oid=1, coin=C, is_buy=False, total_sz=Decimal("2"),
                                     avg_px=Decimal("99.9"), reduce_only=True, recv_ns=0))
    assert core.is_claimed(C)
    core.on_position_closed(PositionClosed(coin=C, is_long=True, size=Decimal(2), entry_px=Decimal(100),
                                           exit_px=Decimal("99.9"), pnl_usd=Decimal("-0.2"), fees_usd=Decimal(0),
                                           hold_ms=2000, exit_reason="mark_regression", closed_ms=T0_MS))
    assert not core.is_claimed(C) and core.position(C) is None
    assert core.on_bbo(EXIT_BBO, at(2100)) is None


def test_claim_expiry_releases_with_alert() -> None:
    core = make(ExitParams(claim_expiry_ms=15_000))
    assert core.on_bbo(EXIT_BBO, at(2000)) is not None
    assert core.on_tick(at(17_000)) == []
    assert core.is_claimed(C)
    retry = core.on_tick(at(17_001))  # released, and the polling backup retries at once
    assert [i.intent_id for i in retry] == ["t-f2"]
    assert core.stats()["claim_expired"] == 1 and len(core.take_alerts()) == 1


def test_tracker_pending_flatten_blocks_then_expires() -> None:
    """After a restart our claims are gone; the tracker's pending_flatten still prevents a duplicate."""
    core = make(ExitParams(claim_expiry_ms=10_000))
    core.on_position_snapshot(snapshot(position(C), pending=(C,)), at(1000), T0_MS + 1000)
    assert core.on_bbo(EXIT_BBO, at(2000)) is None
    assert core.on_tick(at(11_000)) == []
    retry = core.on_tick(at(11_001))  # pending longer than the claim expiry: stop trusting it
    assert len(retry) == 1 and core.stats()["ext_pending_expired"] == 1


def test_resync_keeps_entry_time_and_baselines() -> None:
    """A later snapshot (resync) with a fresh opened_ms keeps the local entry time and baselines."""
    core = ExitWatcherCore(ExitParams(oracle_exit=OracleExitParams(exit_with_moves=2)), OracleTrackerParams(), {C: 2})
    core.on_ctx(ctx(C, 100.0), T0_NS)
    core.on_ctx(ctx(C, 100.1), T0_NS)  # one "with" move before entry
    core.on_position_snapshot(snapshot(position(C)), T0_NS, T0_MS)
    pos = core.position(C)
    assert pos is not None and pos.with_moves_at_entry == 1 and pos.entry_ns == T0_NS
    core.on_ctx(ctx(C, 100.2), at(500))  # one with-move since entry (within min hold)
    core.on_position_snapshot(snapshot(position(C, opened_ms=T0_MS + 20_000), version=2), at(20_000), T0_MS + 20_000)
    pos2 = core.position(C)
    assert pos2 is pos and pos.entry_ns == T0_NS and pos.with_moves_at_entry == 1 and pos.oracle_px_at_entry == 100.1
    # Time stop still sees 30 s held from the real entry.
    assert [i.reason for i in core.on_tick(at(30_001))] == ["time_stop"]


def test_opened_ms_sets_entry_time_for_late_joiner() -> None:
    core = ExitWatcherCore(ExitParams(), OracleTrackerParams(), {C: 2})
    core.on_ctx(ctx(C, 100.0, mark=100.0), T0_NS)
    core.on_position_snapshot(snapshot(position(C, opened_ms=T0_MS - 29_000)), T0_NS, T0_MS)
    assert [i.reason for i in core.on_tick(at(1001))] == ["time_stop"]


def _clock(exchange_ms_at_t0: int) -> ExchangeClock:
    """The feed's estimate: at monotonic ``T0_NS`` the exchange's clock reads ``exchange_ms_at_t0``."""
    return ExchangeClock(offset_mono_ms=exchange_ms_at_t0 - T0_NS // MS, skew_ms=exchange_ms_at_t0 - T0_MS,
                         samples=10, last_sample_age_ms=5)


@pytest.mark.parametrize("skew_ms", [-1500, 1500])  # host clock 1.5 s ahead of / behind the exchange
def test_hold_timers_start_at_the_fill_on_the_exchanges_clock_not_the_hosts(skew_ms: int) -> None:
    """The position was opened 1 s before the snapshot, by the exchange's clock. Through the host's wall
    clock the hold began 2.5 s early (host ahead: the time stop fired 2.5 s early) or 1 s late, clamped
    at the snapshot (host behind). Through the measured offset it begins at the fill either way."""
    core = ExitWatcherCore(ExitParams(), OracleTrackerParams(), {C: 2})
    core.on_ctx(ctx(C, 100.0, mark=100.0), T0_NS)
    exchange_now = T0_MS + skew_ms  # the host's wall clock reads T0_MS
    core.on_exchange_clock(_clock(exchange_now))
    core.on_position_snapshot(snapshot(position(C, opened_ms=exchange_now - 1000)), T0_NS, T0_MS)
    assert core.position(C).entry_ns == T0_NS - 1000 * MS  # type: ignore[union-attr]
    assert core.on_tick(at(28_900)) == []  # 29.9 s held
    assert [i.reason for i in core.on_tick(at(29_001))] == ["time_stop"]  # 30.001 s held


def test_an_opening_time_after_now_on_the_exchanges_clock_is_now() -> None:
    core = ExitWatcherCore(ExitParams(), OracleTrackerParams(), {C: 2})
    core.on_exchange_clock(_clock(T0_MS))
    core.on_position_snapshot(snapshot(position(C, opened_ms=T0_MS + 5_000)), T0_NS, T0_MS)
    assert core.position(C).entry_ns == T0_NS  # type: ignore[union-attr]


def test_unsynced_snapshot_never_removes() -> None:
    core = make()
    core.on_position_snapshot(snapshot(synced=False), at(100), T0_MS)
    assert core.position(C) is not None
    core.on_position_snapshot(snapshot(synced=True), at(100), T0_MS)
    assert core.position(C) is None


def test_snapshot_removal_releases_claim() -> None:
    core = make()
    assert core.on_bbo(EXIT_BBO, at(2000)) is not None
    core.on_position_snapshot(snapshot(), at(2100), T0_MS)
    assert not core.is_claimed(C)


def test_side_flip_is_a_new_position() -> None:
    core = make()
    core.on_position_snapshot(snapshot(position(C, is_long=False, opened_ms=T0_MS + 5000)), at(5000), T0_MS + 5000)
    pos = core.position(C)
    assert pos is not None and not pos.is_long and pos.entry_ns == at(5000)


@pytest.mark.parametrize(
    ("bid", "ask"),
    [(0.0, 100.0), (100.0, 0.0), (-1.0, 100.0), (100.1, 100.0), (float("nan"), 100.0), (99.0, float("nan")),
     (99.0, float("inf"))],
)
def test_bad_bbo_with_position_is_ignored(bid: float, ask: float) -> None:
    core = make()
    assert core.on_bbo(bbo(C, bid, ask), at(2000)) is None
    assert not core.is_claimed(C)


def test_updates_without_position_and_unknown_coins() -> None:
    core = make()
    assert core.on_bbo(bbo("xyz:B", 1.0, 2.0), at(2000)) is None
    assert core.on_ctx(ctx("xyz:NEW", float("nan")), at(2000)) is None
    assert core.on_bbo(bbo("xyz:NEW", 1.0, 2.0), at(2000)) is None


def test_position_in_market_without_spec_still_exits() -> None:
    core = ExitWatcherCore(ExitParams(), OracleTrackerParams(), {}, id_prefix="t")
    core.on_ctx(ctx(C, 100.0), T0_NS)
    core.on_position_snapshot(snapshot(position(C, size="0.25")), T0_NS, T0_MS)
    out = core.on_bbo(EXIT_BBO, at(2000))
    assert out is not None and out.sz == Decimal("0.25") and core.stats()["no_spec"] == 1


def test_a_close_refused_below_the_minimum_value_is_said_once_and_not_retried() -> None:
    """The exchange refuses the whole-position close as below $10: retrying cannot help. Before, the claim
    was released and the next update (every bbo, every tick) sent the same doomed flatten again, forever."""
    core = make(ExitParams(claim_expiry_ms=60_000))
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None and first.sz == Decimal("2")
    core.on_order_submitted(submitted(first.intent_id, "0xdust"))
    core.on_order_rejected(OrderRejected(cloid="0xdust", coin=C, benign=True, reduce_only=True, recv_ns=0,
                                         reason="exchange: Order must have minimum value of $10. asset=110001"))
    assert not core.is_claimed(C)
    alerts = core.take_alerts()
    assert len(alerts) == 1 and alerts[0].startswith(f"{C}: the exchange refused to close 2 (below its $10")
    for k in range(1, 200):  # 20 s of market updates and ticks: nothing more is sent
        assert core.on_bbo(EXIT_BBO, at(2000 + 100 * k)) is None
        assert core.on_ctx(ctx(C, 100.0), at(2000 + 100 * k)) is None
        assert core.on_tick(at(2000 + 100 * k)) == []
    assert core.stats()["flattens"] == 1 and core.stats()["dust_positions"] == 1
    assert core.take_alerts() == []
    # The position grows (another fill): a whole close may pass the minimum now, so it is tried again.
    core.on_position_snapshot(snapshot(position(C, size="3")), at(30_000), T0_MS + 30_000)
    again = core.on_bbo(EXIT_BBO, at(31_000))
    assert again is not None and again.sz == Decimal("3") and core.stats()["dust_positions"] == 0


def test_other_refusals_of_a_close_are_retried() -> None:
    core = make()
    first = core.on_bbo(EXIT_BBO, at(2000))
    assert first is not None
    core.on_order_rejected(OrderRejected(cloid=first.intent_id, coin=C, benign=True, reduce_only=True, recv_ns=0,
                                         intent_id=first.intent_id, reason="exchange: Order has zero size"))
    assert core.on_bbo(EXIT_BBO, at(2100)) is not None and core.take_alerts() == []

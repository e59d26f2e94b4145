"""Regression tests for the execution review's findings (pure logic, injected clocks): requeues on a
refused post, a second entry before the fill reaches the snapshot, risk triggers after a reset, a flatten
failure counted once, the flatten's invalid-id reason, the merged rejection builder, the hard-stop
flattener's alert while it waits for a synced view."""

from __future__ import annotations

from pathlib import Path

from hip3.execution.batch import BatchScheduler, QueuedCancel, QueuedOrder
from hip3.execution.core import ExecutionCore
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.orders import OrderTracker
from hip3.execution.params import ExecutorParams, RiskParams
from hip3.execution.risk import RiskMonitor
from hip3.messages import OrderRejected, OrderUpdate, PositionSnapshot
from tests.execution.helpers import GOLD, MS, SILVER, SPECS, D, closed, entry, flatten, pos, snap
from tests.execution.test_core import NOW_MS, make, ok, send

# --------------------------------------------------------------------------- 1: refused posts


def test_refused_posts_requeue_without_spending_the_budget_or_counting_failures(tmp_path: Path) -> None:
    """WsNotConnected / WsBudgetError: the flatten and the cancel are requeued as they were, however often
    it happens; nothing is given up, no flatten failure is counted, no hard stop is requested. The entry in
    the batch is still dropped (benign) and its market released."""
    core = make(tmp_path, max_requeues=2)
    assert core.submit_flatten(flatten(SILVER), now_ns=0).accepted
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.accepted
    events = []
    for _ in range(50):  # far past max_requeues
        b = core.next_batch(0)
        assert b is not None and b.kind == "order"
        events += core.on_send_failure(b, "post while not connected", 0, NOW_MS, transient=True)
    assert [type(e).__name__ for e in events] == ["OrderRejected"]  # only the entry, once
    assert isinstance(events[0], OrderRejected) and events[0].benign and events[0].coin == GOLD
    assert not core.gates.pending.is_pending(GOLD)
    assert core.risk.flatten_failures == 0 and core.take_hardstop_request() is None
    b = core.next_batch(0)
    assert b is not None and b.orders[0].coin == SILVER and b.orders[0].requeues == 0
    assert SILVER in core.tracker.flatten_in_flight()  # still live, its budget intact
    core.on_send_failure(b, "budget", 0, NOW_MS, transient=True)
    core.scheduler.enqueue_cancel(QueuedCancel(coin=GOLD, asset=SPECS[GOLD].asset, oid=9))
    for _ in range(50):
        b = core.next_batch(0)
        assert b is not None and b.kind == "cancel"
        assert core.on_send_failure(b, "budget", 0, NOW_MS, transient=True) == []
    assert b.cancels[0].requeues == 0 and core.scheduler.queued() == (1, 1, 0)


def test_real_send_failures_still_spend_the_budget(tmp_path: Path) -> None:
    """A failure after the frame could have left (a sign failure, a whole-request error) keeps the bound."""
    core = make(tmp_path, max_requeues=2)
    core.submit_flatten(flatten(SILVER), now_ns=0)
    events = []
    for _ in range(3):
        b = core.next_batch(0)
        assert b is not None
        events += core.on_send_failure(b, "sign failed", 0, NOW_MS)
    assert core.next_batch(0) is None
    assert len(events) == 1 and isinstance(events[0], OrderRejected) and events[0].reason == "requeue_exhausted"
    assert core.risk.flatten_failures == 1


def test_scheduler_transient_requeue_keeps_the_count() -> None:
    s = BatchScheduler(ExecutorParams(max_requeues=0))
    o = QueuedOrder(cloid="0x1", intent_id="i", coin=GOLD, asset=1, is_buy=False, px=D(1), sz=D(1),
                    reduce_only=True, kind="flatten")
    s.enqueue_reduce_only(o)
    for _ in range(10):
        b = s.next_batch(0)
        assert b is not None
        dropped, given_up = s.on_send_failure(b, spend_requeue=False)
        assert dropped == [] and given_up == [] and b.orders[0].requeues == 0
    b = s.next_batch(0)
    assert b is not None
    assert s.on_send_failure(b) == ([], [b.orders[0]])  # max_requeues=0: a real failure gives up at once


# --------------------------------------------------------------------------- 2: fill before the snapshot


def _filled(core: ExecutionCore, coin: str = GOLD, post_id: int = 1, s: PositionSnapshot | None = None) -> None:
    v, _ = core.submit_entry(entry(coin), snapshot=s or snap(), now_ns=0, now_ms=NOW_MS)
    assert v.accepted, v
    send(core, post_id)
    core.on_post_response(post_id, ok({"filled": {"totalSz": "2", "avgPx": "10", "oid": 5}}), 1, NOW_MS)
    assert not core.gates.pending.is_pending(coin)


def _verdict(core: ExecutionCore, s: PositionSnapshot, coin: str = GOLD):  # type: ignore[no-untyped-def]
    core.on_snapshot(s)
    v, _ = core.submit_entry(entry(coin), snapshot=s, now_ns=0, now_ms=NOW_MS)
    return v


def test_second_entry_refused_until_the_snapshot_shows_the_fill_then_allowed_after_the_close(
    tmp_path: Path,
) -> None:
    core = make(tmp_path)
    old = snap(version=1)
    core.on_snapshot(old)
    _filled(core, s=old)
    v = _verdict(core, old)  # the old snapshot: the tracker has not applied the fill yet
    assert not v.accepted and v.reason in ("AlreadyHasPosition", "PendingOrderExists"), v
    v = _verdict(core, snap(version=2))  # newer, but bumped for something else: still not showing it
    assert not v.accepted and v.reason == "AlreadyHasPosition"
    v = _verdict(core, snap(pos(GOLD, "2"), version=3))
    assert not v.accepted and v.reason == "AlreadyHasPosition"
    v = _verdict(core, snap(version=4))  # closed later
    assert v.accepted, v


def test_filled_notional_counts_in_caps_and_concurrency_before_the_snapshot(tmp_path: Path) -> None:
    core = make(tmp_path, max_total_notional_usd=30.0)
    _filled(core)  # $20 at mark 10
    v, _ = core.submit_entry(entry(SILVER), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert not v.accepted and v.reason == "MaxPositionTotal", v  # 20 + 20 >= 30
    core = make(tmp_path / "b", max_concurrent_positions=1)
    _filled(core)
    v, _ = core.submit_entry(entry(SILVER), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert not v.accepted and v.reason == "MaxConcurrentPositions", v
    core = make(tmp_path / "c", max_notional_per_market_usd=20.0)
    _filled(core)
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert not v.accepted and v.reason == "MaxPositionPerMarket", v


def test_entry_without_fill_releases_as_before(tmp_path: Path) -> None:
    core = make(tmp_path)
    core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    send(core, 1)
    core.on_post_response(1, ok({"error": "Order could not immediately match against any resting orders."}),
                          1, NOW_MS)
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.accepted, v


def test_fill_seen_through_order_updates_blocks_too(tmp_path: Path) -> None:
    """The IOC's orderUpdate can end the order before the post response: a partial fill (sz < origSz)."""
    core = make(tmp_path)
    core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    b = send(core, 1)
    core.on_order_update(OrderUpdate(coin=GOLD, oid=5, cloid=b.orders[0].cloid, is_buy=True, limit_px=D(10),
                                     sz=D("0.5"), orig_sz=D(2), status="canceled", status_ms=0, recv_ns=1), NOW_MS)
    assert not core.gates.pending.is_pending(GOLD)
    v = _verdict(core, snap())
    assert not v.accepted and v.reason == "AlreadyHasPosition"
    # The position's close reaching us also ends the block (the snapshot that showed it may be lost).
    core.on_position_closed(closed(GOLD), NOW_MS)
    assert _verdict(core, snap()).accepted


def test_snapshot_showing_the_fill_before_the_post_response_clears_it(tmp_path: Path) -> None:
    """userFills can reach the tracker first: the snapshot current at the fill already shows it."""
    core = make(tmp_path)
    core.submit_entry(entry(GOLD), snapshot=snap(version=1), now_ns=0, now_ms=NOW_MS)
    send(core, 1)
    core.on_snapshot(snap(pos(GOLD, "2"), version=2))
    core.on_post_response(1, ok({"filled": {"totalSz": "2", "avgPx": "10", "oid": 5}}), 1, NOW_MS)
    assert _verdict(core, snap(pos(GOLD, "2"), version=2)).reason == "AlreadyHasPosition"
    assert GOLD not in core.gates.filled  # the snapshot itself blocks it now (gate 7)
    assert _verdict(core, snap(version=3)).accepted


def test_restarted_tracker_versions(tmp_path: Path) -> None:
    core = make(tmp_path)
    core.on_snapshot(snap(version=50))
    _filled(core, s=snap(version=50))
    assert not _verdict(core, snap(version=1)).accepted  # a restarted tracker, not showing it yet
    assert _verdict(core, snap(pos(GOLD, "2"), version=2)).reason == "AlreadyHasPosition"
    assert _verdict(core, snap(version=3)).accepted


# --------------------------------------------------------------------------- 3: reset re-arms the risk


def test_risk_monitor_reset_rearms_every_trigger() -> None:
    r = RiskMonitor(RiskParams(max_loss_usd=5.0, max_flatten_failed=1))
    assert (r.on_position_closed(closed(pnl="-6")) or "").startswith("max_loss")
    assert r.on_flatten_failed("timeout") is None  # latched: ignored
    r.reset()
    assert r.reason is None and r.realized_usd == 0 and r.flatten_failures == 0 and r.consecutive_losses == 0
    assert r.on_position_closed(closed(pnl="-4")) is None  # since reset: -4 > -5
    assert (r.on_position_closed(closed(pnl="-2")) or "").startswith("max_loss")
    r.reset()
    assert r.on_flatten_failed("timeout") is None
    assert (r.on_flatten_failed("timeout") or "").startswith("flatten_failed")


def test_core_reset_hardstop_rearms_the_triggers(tmp_path: Path) -> None:
    core = make(tmp_path)
    core.risk = RiskMonitor(RiskParams(daily_loss_cap_usd=1e6))  # max_loss alone: the daily cap outlives a reset
    core.on_position_closed(closed(pnl="-2000"), NOW_MS)
    assert (core.take_hardstop_request() or "").startswith("max_loss")
    core.set_hard_stop(True, 0)
    core.set_hard_stop(False, 0)  # the operator's reset
    core.on_position_closed(closed(pnl="-999"), NOW_MS)
    assert core.take_hardstop_request() is None  # since the reset: -999 > -1000
    core.on_position_closed(closed(pnl="-2"), NOW_MS)
    assert (core.take_hardstop_request() or "").startswith("max_loss")


# --------------------------------------------------------------------------- 5: counted once


def test_flatten_timeout_counts_once_and_is_never_resent(tmp_path: Path) -> None:
    """A timed-out flatten may have executed: it is released (benign, so the exit's claim is freed) and
    counted once as a flatten failure, and its cloid is never posted again (fault tests: delayed answers
    doubled every flatten at the exchange, and the fill dedup by cloid then lost the second fill)."""
    core = make(tmp_path, max_requeues=5)
    core.submit_flatten(flatten(SILVER), now_ns=0)
    b = send(core, 1, now_ns=0)
    events = core.expire(5000 * MS, NOW_MS)
    rej = [e for e in events if isinstance(e, OrderRejected)]
    assert [(e.cloid, e.reason, e.benign) for e in rej] == [(b.orders[0].cloid, "timeout: outcome unknown", True)]
    assert core.risk.flatten_failures == 1
    assert core.next_batch(6000 * MS) is None and core.scheduler.queued() == (0, 0, 0)
    # A second flatten for the same market (the exit's retry) is a new order with a new cloid.
    assert core.submit_flatten(flatten(SILVER), now_ns=6000 * MS).accepted
    b2 = send(core, 2, now_ns=6000 * MS)
    assert b2.orders[0].cloid != b.orders[0].cloid
    core.expire(11_000 * MS, NOW_MS)
    assert core.risk.flatten_failures == 2


# --------------------------------------------------------------------------- 7: reason


def test_flatten_with_invalid_intent_id(tmp_path: Path) -> None:
    core = make(tmp_path)
    v = core.submit_flatten(flatten(GOLD, intent_id="has space"), now_ns=0)
    assert v.reason == "InvalidIntentId"
    core.submit_flatten(flatten(GOLD, intent_id="f-dup"), now_ns=0)
    assert core.submit_flatten(flatten(SILVER, intent_id="f-dup"), now_ns=0).reason == "DuplicateIntent"


# --------------------------------------------------------------------------- 9: one rejection builder


def test_fail_and_status_rejections_share_one_builder_and_count_unmatched_meaningfully() -> None:
    ended: list[str] = []
    t = OrderTracker(on_terminal=lambda o, _sz: ended.append(o.cloid))
    o = QueuedOrder(cloid="0x1", intent_id="i1", coin=GOLD, asset=1, is_buy=True, px=D(10), sz=D(2),
                    reduce_only=False, kind="entry")
    t.add(o)
    rej = t.fail([o, o], "timeout", 7, benign=False)
    assert len(rej) == 1 and rej[0].reason == "timeout" and rej[0].recv_ns == 7 and ended == ["0x1"]
    assert t.unmatched == 0  # a local failure of an order that already ended is not an unmatched answer
    from hip3.execution.batch import Batch
    events, _ = t.apply_post_response(Batch(kind="order", orders=(o,)), ok({"error": "x"}), 8)
    assert events == [] and t.unmatched == 1  # an exchange status for an ended order is


# --------------------------------------------------------------------------- 12: unsynced alert


def test_hardstop_waiting_for_a_synced_view_alerts_and_keeps_waiting() -> None:
    hs = HardStopFlattener(RiskParams(flatten_unsynced_alert_ms=10_000, flatten_slow_interval_ms=10_000), SPECS)
    hs.start(1, 0)
    marks = {GOLD: D(10)}
    assert hs.step(snapshot=None, marks=marks, inflight_posts=0, now_ns=0).progress is None
    assert hs.step(snapshot=None, marks=marks, inflight_posts=0, now_ns=9_999 * MS).progress is None
    st = hs.step(snapshot=snap(pos(GOLD), synced=False), marks=marks, inflight_posts=0, now_ns=10_000 * MS)
    assert st.progress is not None and st.progress.alert and not st.progress.done and st.problems
    assert not st.orders and not st.cancels  # it keeps waiting: nothing is decided on an unsynced view
    assert hs.step(snapshot=None, marks=marks, inflight_posts=0, now_ns=15_000 * MS).progress is None
    again = hs.step(snapshot=None, marks=marks, inflight_posts=0, now_ns=20_000 * MS)
    assert again.progress is not None and again.progress.alert
    st = hs.step(snapshot=snap(pos(GOLD)), marks=marks, inflight_posts=0, now_ns=21_000 * MS)
    assert len(st.orders) == 1  # synced: flattening starts
    # A new unsynced episode waits its full delay again.
    assert hs.step(snapshot=None, marks=marks, inflight_posts=0, now_ns=22_000 * MS).progress is None
    assert hs.step(snapshot=None, marks=marks, inflight_posts=0, now_ns=31_999 * MS).progress is None
    assert hs.step(snapshot=None, marks=marks, inflight_posts=0, now_ns=32_000 * MS).progress is not None

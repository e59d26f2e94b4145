"""Post responses, orderUpdates (unknown statuses terminal), whole-request errors, timeouts, the sent-intent
journal across a restart, and pending marks released exactly once."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from hip3.execution.batch import Batch
from hip3.execution.core import ExecutionCore
from hip3.execution.journal import SentIntentJournal
from hip3.execution.orders import post_answer
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.hyperliquid.responses import ExchangeResponse, OrderStatus
from hip3.messages import OrderAcked, OrderCancelled, OrderFilled, OrderRejected, OrderSubmitted, OrderUpdate
from tests.execution.helpers import GOLD, MS, SILVER, SPECS, TSLA, D, answer, entry, flatten, post_frame, snap
from tests.terms_helpers import known_terms

NOW_MS = 1_700_000_000_000


def ok(*statuses: object) -> ExchangeResponse:
    return answer({"type": "action", "payload": {"status": "ok", "response": {"type": "order",
                                                                               "data": {"statuses": list(statuses)}}}})


def make(tmp_path: Path, **kw: object) -> ExecutionCore:
    cl = itertools.count(1)
    j = SentIntentJournal(tmp_path, now_ms=NOW_MS, retention_ms=600_000)
    core = ExecutionCore(ExecutorParams(**kw), RiskParams(), SoftGateParams(), SPECS, j,  # type: ignore[arg-type]
                         make_cloid=lambda: f"0x{next(cl):032x}", terms=known_terms(SPECS))
    for c in SPECS:
        core.gates.set_mark(c, 10.0)
    return core


def send(core: ExecutionCore, post_id: int, now_ns: int = 0) -> Batch:
    b = core.next_batch(now_ns)
    assert b is not None
    core.prepare_send(b, NOW_MS)
    events = core.on_sent(b, post_id, 1000 + post_id, now_ns)
    assert all(isinstance(e, OrderSubmitted) for e in events) and len(events) == len(b.orders)
    return b


def submit(core: ExecutionCore, *intents) -> None:
    for i in intents:
        v, _ = core.submit_entry(i, snapshot=snap(), now_ns=0, now_ms=NOW_MS)
        assert v.accepted, v


def test_each_post_status(tmp_path: Path) -> None:
    core = make(tmp_path, max_total_notional_usd=1000.0)
    submit(core, entry(GOLD), entry(SILVER), entry(TSLA))
    core.submit_flatten(flatten("xyz:GOLD", intent_id="fl1"), now_ns=0)
    b = send(core, 1)
    assert [o.coin for o in b.orders] == [GOLD, GOLD, SILVER, TSLA]  # reduce-only first
    events = core.on_post_response(1, ok(
        {"error": "Reduce only order would increase position."},
        {"filled": {"totalSz": "2", "avgPx": "10.01", "oid": 11}},
        {"resting": {"oid": 12}},
        "success",
    ), 5, NOW_MS)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["OrderRejected", "OrderFilled", "OrderAcked"]
    rej, fill, ack = events
    assert isinstance(rej, OrderRejected) and rej.benign and rej.reduce_only
    assert isinstance(fill, OrderFilled) and fill.total_sz == D(2) and fill.avg_px == D("10.01")
    assert isinstance(ack, OrderAcked) and ack.oid == 12
    assert core.scheduler.inflight == 0
    assert not core.gates.pending.is_pending(GOLD)  # filled: released
    assert core.gates.pending.is_pending(SILVER) and core.gates.pending.is_pending(TSLA)  # resting / success
    # TSLA's oid arrives by orderUpdates without cloid? it has a cloid; SILVER's cancel comes without cloid.
    upd = OrderUpdate(coin=SILVER, oid=12, cloid=None, is_buy=True, limit_px=D(10), sz=D(2), orig_sz=D(2),
                      status="marginCanceled", status_ms=0, recv_ns=9)
    ev = core.on_order_update(upd, NOW_MS)
    assert len(ev) == 1 and isinstance(ev[0], OrderCancelled) and ev[0].reason == "marginCanceled"
    assert not core.gates.pending.is_pending(SILVER)
    tsla = b.orders[3]
    ev = core.on_order_update(OrderUpdate(coin=TSLA, oid=13, cloid=tsla.cloid, is_buy=True, limit_px=D(10), sz=D(2),
                                          orig_sz=D(2), status="open", status_ms=0, recv_ns=9), NOW_MS)
    assert isinstance(ev[0], OrderAcked) and ev[0].oid == 13
    ev = core.on_order_update(OrderUpdate(coin=TSLA, oid=13, cloid=None, is_buy=True, limit_px=D(10), sz=D(0),
                                          orig_sz=D(2), status="someFutureStatus", status_ms=0, recv_ns=9), NOW_MS)
    assert isinstance(ev[0], OrderCancelled)  # unknown status: terminal
    assert len(core.gates.pending) == 0 and len(core.tracker) == 0


@pytest.mark.parametrize("status", ["perpMarginRejected", "iocCancelRejected", "scheduledCancel", "filled"])
def test_order_update_terminal_statuses(tmp_path: Path, status: str) -> None:
    core = make(tmp_path)
    submit(core, entry())
    b = send(core, 1)
    core.on_post_response(1, ok("success"), 1, NOW_MS)
    ev = core.on_order_update(OrderUpdate(coin=GOLD, oid=5, cloid=b.orders[0].cloid, is_buy=True, limit_px=D(10),
                                          sz=D(0), orig_sz=D(2), status=status, status_ms=0, recv_ns=1), NOW_MS)
    assert len(core.gates.pending) == 0
    if status.endswith("Rejected"):
        # Both benign: an IOC miss, and a margin refusal (the dex's collateral, not the order's fault).
        assert isinstance(ev[0], OrderRejected) and ev[0].benign


def test_short_status_list_rejects_the_rest(tmp_path: Path) -> None:
    core = make(tmp_path, max_total_notional_usd=1000.0)
    submit(core, entry(GOLD), entry(SILVER))
    send(core, 1)
    events = core.on_post_response(1, ok({"error": "Price must be divisible by tick size."}), 1, NOW_MS)
    assert len(events) == 2 and all(isinstance(e, OrderRejected) and not e.benign for e in events)
    assert all("tick size" in e.reason for e in events if isinstance(e, OrderRejected))
    assert len(core.gates.pending) == 0


@pytest.mark.parametrize("resp", [
    {"type": "action", "payload": {"status": "err", "response": "Invalid nonce: duplicate nonce 5"}},
    {"type": "error", "payload": "400 Bad Request"},
    # Garbage where the refusal's text should be (an answer that is not JSON at all has an unknown outcome,
    # never reaches the core: ``test_post_answer_shapes``).
    {"type": "action", "payload": {"status": "err", "response": {"garbage": [1]}}},
])
def test_whole_request_error_cleans_up_like_send_failure(tmp_path: Path, resp: object) -> None:
    core = make(tmp_path)
    submit(core, entry(GOLD))
    core.submit_flatten(flatten(SILVER), now_ns=0)
    send(core, 1)
    events = core.on_post_response(1, answer(resp), 1, NOW_MS)
    assert [type(e).__name__ for e in events] == ["OrderRejected"]  # the new order; flatten requeued
    assert len(core.gates.pending) == 0 and core.scheduler.inflight == 0
    assert core.scheduler.queued() == (0, 1, 0)
    b = core.next_batch(0)
    assert b is not None and b.orders[0].coin == SILVER and b.orders[0].reduce_only


def test_unmatched_response_dropped(tmp_path: Path) -> None:
    core = make(tmp_path)
    assert core.on_post_response(42, ok("success"), 1, NOW_MS) == []
    assert core.dropped_unmatched == 1
    assert core.on_order_update(OrderUpdate(coin=GOLD, oid=1, cloid="0xdead", is_buy=True, limit_px=D(1), sz=D(1),
                                            orig_sz=D(1), status="open", status_ms=0, recv_ns=0), NOW_MS) == []


def test_late_post_fill_after_order_update_still_reported(tmp_path: Path) -> None:
    core = make(tmp_path)
    submit(core, entry())
    b = send(core, 1)
    core.on_order_update(OrderUpdate(coin=GOLD, oid=5, cloid=b.orders[0].cloid, is_buy=True, limit_px=D(10),
                                     sz=D(0), orig_sz=D(2), status="canceled", status_ms=0, recv_ns=1), NOW_MS)
    ev = core.on_post_response(1, ok({"filled": {"totalSz": "1", "avgPx": "10", "oid": 5}}), 2, NOW_MS)
    assert len(ev) == 1 and isinstance(ev[0], OrderFilled) and ev[0].total_sz == D(1)


def test_timeout_and_send_failure(tmp_path: Path) -> None:
    core = make(tmp_path)
    submit(core, entry())
    core.submit_flatten(flatten(SILVER), now_ns=0)
    send(core, 1, now_ns=0)
    ev = core.expire(5000 * MS, NOW_MS)
    # The entry: a timeout rejection; the flatten: released as outcome unknown (benign), not requeued.
    assert [(e.reason, e.benign) for e in ev if isinstance(e, OrderRejected)] == [
        ("timeout", False), ("timeout: outcome unknown", True)]
    assert len(core.gates.pending) == 0 and core.scheduler.queued() == (0, 0, 0)
    assert core.risk.flatten_failures == 1
    # late answer of the timed-out post: no crash, counted
    assert core.on_post_response(1, ok("success", "success"), 1, NOW_MS) == []
    submit(core, entry(TSLA))
    b = core.next_batch(6000 * MS)
    assert b is not None
    ev = core.on_send_failure(b, "not ready", 6000 * MS)
    assert len(ev) == 1 and isinstance(ev[0], OrderRejected) and ev[0].benign
    assert core.scheduler.queued() == (0, 0, 0) and len(core.gates.pending) == 0


def test_hard_stop_drops_queued_entries(tmp_path: Path) -> None:
    core = make(tmp_path)
    submit(core, entry())
    ev = core.set_hard_stop(True, 0)
    assert len(ev) == 1 and len(core.gates.pending) == 0
    v, _ = core.submit_entry(entry(SILVER), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.reason == "HardStop"
    assert core.submit_flatten(flatten(SILVER), now_ns=0).accepted


def test_duplicate_intent_and_journal_across_restart(tmp_path: Path) -> None:
    core = make(tmp_path)
    i = entry(intent_id="intent-A")
    submit(core, i)
    v, _ = core.submit_entry(i, snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.reason == "DuplicateIntent"  # still queued
    send(core, 1)
    core.on_post_response(1, ok({"error": "Order could not immediately match against any resting orders."}),
                          1, NOW_MS)
    core.journal.close()
    # "restart": new objects on the same directory
    core2 = make(tmp_path)
    v, _ = core2.submit_entry(i, snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.outcome == "rejected" and v.reason == "DuplicateIntent"
    fl = flatten(intent_id="flat-B")
    assert core2.submit_flatten(fl, now_ns=0).accepted
    send(core2, 1)
    core2.journal.close()
    core3 = make(tmp_path)
    assert core3.submit_flatten(fl, now_ns=0).reason == "DuplicateIntent"
    assert core3.journal.cloid_of("intent-A") is not None


def test_journal_prunes_and_ignores_torn_lines(tmp_path: Path) -> None:
    j = SentIntentJournal(tmp_path, now_ms=1000, retention_ms=100)
    j.record([("old", "0x1")], 1000)
    j.close()
    with (tmp_path / "sent_intents.log").open("a") as f:
        f.write("2000 torn")
    j2 = SentIntentJournal(tmp_path, now_ms=1050, retention_ms=100)
    assert "old" in j2 and len(j2) == 1
    j2.close()
    j3 = SentIntentJournal(tmp_path, now_ms=5000, retention_ms=100)
    assert "old" not in j3 and len(j3) == 0
    with pytest.raises(ValueError):
        j3.record([("has space", "0x1")], 5000)


def test_invalid_intent_id_refused(tmp_path: Path) -> None:
    core = make(tmp_path)
    v, _ = core.submit_entry(entry(intent_id="a b"), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.reason == "InvalidIntentId"


def test_post_answer_shapes() -> None:
    assert ok("success").statuses == (OrderStatus("string", text="success"),) and ok("success").ok
    default = answer({"status": "ok", "response": {"type": "default"}})
    assert default.ok and default.statuses == ()
    assert answer({"status": "err", "response": "boom"}) == ExchangeResponse(False, error="boom")
    # Not a recognisable answer: its outcome is unknown (the scheduler's expiry), never a rejection.
    assert post_answer(post_frame(None)) is None and post_frame(None).type == "unknown"

"""Batch scheduler: tiers, batch purity, dedup, in-flight limit/watermark, idle send, timeouts, failures."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from hip3.execution.batch import BatchScheduler, QueuedCancel, QueuedOrder
from hip3.execution.params import ExecutorParams
from tests.execution.helpers import GOLD, MS, SILVER

_n = 0


def order(coin: str = GOLD, *, ro: bool = False) -> QueuedOrder:
    global _n
    _n += 1
    return QueuedOrder(cloid=f"0x{_n:032x}", intent_id=f"i{_n}", coin=coin, asset=1, is_buy=True, px=Decimal(10),
                       sz=Decimal(1), reduce_only=ro, kind="flatten" if ro else "entry")


def cancel(oid: int) -> QueuedCancel:
    return QueuedCancel(coin=GOLD, asset=1, oid=oid)


def test_priority_and_never_mixed() -> None:
    s = BatchScheduler(ExecutorParams())
    s.enqueue_new(order())
    s.enqueue_reduce_only(order(SILVER, ro=True))
    s.enqueue_cancel(cancel(1))
    b1 = s.next_batch(0)
    assert b1 is not None and b1.kind == "cancel" and not b1.orders and len(b1) == 1
    b2 = s.next_batch(0)  # nothing in flight (not marked sent): idle -> at once
    assert b2 is not None and b2.kind == "order" and [o.reduce_only for o in b2.orders] == [True, False]
    assert s.next_batch(0) is None


def test_max_batch_size() -> None:
    s = BatchScheduler(ExecutorParams(new_queue_capacity=200))
    for _ in range(60):
        assert s.enqueue_new(order()).ok
    b = s.next_batch(0)
    assert b is not None and len(b) == 50
    assert s.queued() == (0, 0, 10)


def test_reduce_only_dedup_per_market() -> None:
    s = BatchScheduler(ExecutorParams())
    assert s.enqueue_reduce_only(order(ro=True)).reason == "Queued"
    r = s.enqueue_reduce_only(order(ro=True))
    assert r.ok and r.reason == "DuplicateNoop"
    assert s.queued() == (0, 1, 0)


def test_queue_capacities() -> None:
    s = BatchScheduler(ExecutorParams(cancel_queue_capacity=1, new_queue_capacity=1, reduce_only_queue_capacity=1))
    assert s.enqueue_cancel(cancel(1)).ok and s.enqueue_cancel(cancel(2)).reason == "QueueFull"
    assert s.enqueue_cancel(cancel(1)).reason == "DuplicateNoop"
    assert s.enqueue_new(order()).ok and s.enqueue_new(order()).reason == "QueueFull"
    assert s.enqueue_reduce_only(order(GOLD, ro=True)).ok
    assert s.enqueue_reduce_only(order(SILVER, ro=True)).reason == "QueueFull"


def test_inflight_limit_refuses_new_accepts_reduce_only() -> None:
    p = ExecutorParams(inflight_limit=2, inflight_high_watermark=2)
    s = BatchScheduler(p)
    for pid in (1, 2):
        s.enqueue_new(order())
        b = s.next_batch(pid * 100 * MS)
        assert b is not None
        s.mark_sent(b, pid, pid * 100 * MS)
    assert s.inflight == 2
    assert s.enqueue_new(order()).reason == "InflightFull"
    assert s.enqueue_reduce_only(order(ro=True)).ok
    assert s.next_batch(10**12) is None  # at the limit nothing is sent
    assert s.on_response(1) is not None and s.inflight == 1
    b = s.next_batch(10**12)
    assert b is not None and b.orders[0].reduce_only
    assert s.on_response(999) is None  # unknown post id: no crash


def test_high_watermark_holds_new_but_not_reduce_only() -> None:
    s = BatchScheduler(ExecutorParams(inflight_limit=3, inflight_high_watermark=1))
    s.enqueue_new(order())
    b = s.next_batch(0)
    assert b is not None
    s.mark_sent(b, 1, 0)
    s.enqueue_new(order())
    assert s.next_batch(10**12) is None  # new held at the watermark
    s.enqueue_reduce_only(order(ro=True))
    b = s.next_batch(10**12)
    assert b is not None and [o.reduce_only for o in b.orders] == [True]


def test_hard_stop_drops_and_holds_new() -> None:
    s = BatchScheduler(ExecutorParams())
    s.enqueue_new(order())
    dropped = s.set_hard_stop(True)
    assert len(dropped) == 1 and s.queued() == (0, 0, 0)
    assert s.enqueue_new(order()).reason == "HardStop"
    assert s.enqueue_reduce_only(order(ro=True)).ok
    assert s.set_hard_stop(False) == []


def test_send_at_once_when_idle_batch_under_load() -> None:
    s = BatchScheduler(ExecutorParams(batch_interval_ms=20))
    s.enqueue_new(order())
    assert s.next_wakeup_ns(5) == 5
    b = s.next_batch(5)  # idle: no tick wait
    assert b is not None
    s.mark_sent(b, 1, 5)
    s.enqueue_new(order(SILVER))
    assert s.next_batch(6) is None  # under load: coalesce
    assert s.next_wakeup_ns(6) == 5 + 20 * MS
    b = s.next_batch(5 + 20 * MS)
    assert b is not None and len(b) == 1


def test_timeout_releases_new_and_reduce_only_requeues_cancels() -> None:
    """Outcome unknown: orders are released, never re-sent (their cloid must not reach the exchange twice);
    cancels by oid are idempotent and requeued."""
    s = BatchScheduler(ExecutorParams())
    s.enqueue_new(order())
    s.enqueue_reduce_only(order(SILVER, ro=True))
    b = s.next_batch(0)
    assert b is not None
    s.mark_sent(b, 7, 0)
    s.enqueue_cancel(cancel(5))
    c = s.next_batch(20 * MS)
    assert c is not None and c.kind == "cancel"
    s.mark_sent(c, 8, 20 * MS)
    assert s.expire(4999 * MS) == []
    out = s.expire(5020 * MS)
    assert [t.post_id for t in out] == [7, 8] and s.inflight == 0
    assert len(out[0].dropped_new) == 1 and not out[0].dropped_new[0].reduce_only
    assert len(out[0].released_reduce_only) == 1 and out[0].released_reduce_only[0].reduce_only
    assert s.queued() == (1, 0, 0)
    again = s.next_batch(6000 * MS)
    assert again is not None and again.cancels[0].requeues == 1


def test_send_failure_and_requeue_budget() -> None:
    s = BatchScheduler(ExecutorParams(max_requeues=1))
    s.enqueue_new(order())
    s.enqueue_reduce_only(order(ro=True))
    b = s.next_batch(0)
    assert b is not None
    dropped, given_up = s.on_send_failure(b)
    assert len(dropped) == 1 and given_up == [] and s.queued() == (0, 1, 0)
    b = s.next_batch(0)
    assert b is not None
    dropped, given_up = s.on_send_failure(b)
    assert dropped == [] and len(given_up) == 1 and s.queued() == (0, 0, 0)


def test_expired_new_orders_are_never_sent_and_handed_back() -> None:
    """An entry queued past its intent's validity (the exchange's message budget was used up) is never
    sent late at a stale price; reduce-only orders do not expire here."""
    s = BatchScheduler(ExecutorParams())
    fresh = msgspec.structs.replace(order(GOLD), cloid="0xfresh", valid_until_ns=50 * MS)
    stale = msgspec.structs.replace(order(SILVER), cloid="0xstale", valid_until_ns=5 * MS)
    flat = msgspec.structs.replace(order(GOLD, ro=True), cloid="0xflat", valid_until_ns=1)  # ignored
    for o in (stale, fresh):
        assert s.enqueue_new(o).ok
    assert s.enqueue_reduce_only(flat).ok
    b = s.next_batch(10 * MS)
    assert b is not None and [o.cloid for o in b.orders] == ["0xflat", "0xfresh"]
    assert [o.cloid for o in s.drop_expired_new(10 * MS)] == ["0xstale"]
    assert s.drop_expired_new(10 * MS) == []  # handed back once
    # Still queued when its validity passes: dropped by the periodic check, the rest kept in order.
    later = [msgspec.structs.replace(order(c), cloid=f"0x{i}", valid_until_ns=v)
             for i, (c, v) in enumerate(((GOLD, 20 * MS), (SILVER, 0), (GOLD, 90 * MS)))]
    for o in later:
        assert s.enqueue_new(o).ok
    assert [o.cloid for o in s.drop_expired_new(30 * MS)] == ["0x0"]
    assert s.queued() == (0, 0, 2)

"""Position book: VWAP, reduce, close, flip, PnL/fees, fill dedup across post response and userFills
(partial fills never lost), snapshot fills ignored, no phantom positions from late closing fills, resync
never clears first and keeps local state, suspect empty responses, one PositionClosed per close."""

from __future__ import annotations

import itertools
from decimal import Decimal

from hip3.execution.gates import ExecutorGates
from hip3.execution.params import ExecutorParams, SoftGateParams
from hip3.execution.soft_gates import SoftGates
from hip3.messages import (
    OpenOrder,
    OrderAcked,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdate,
    UserFill,
)
from hip3.positions import ExchangePosition, PositionBook
from tests.execution.helpers import GOLD, SILVER, SPECS, entry

D = Decimal
_tid = itertools.count(1000)
X = "0x" + "a" * 32


def submitted(cloid: str = X, *, coin: str = GOLD, is_buy: bool = True, sz: str = "2.7", ro: bool = False,
              kind: str = "entry", reason: str = "") -> OrderSubmitted:
    return OrderSubmitted(cloid=cloid, intent_id="i-" + cloid, coin=coin, asset=SPECS[coin].asset, is_buy=is_buy,
                          px=D(10), sz=D(sz), reduce_only=ro, tif="Ioc", kind=kind, reason=reason, nonce=1,
                          post_id=1, origin_recv_ns=0, sent_ns=0)


def ofill(cloid: str = X, total: str = "2.7", avg: str = "10", *, coin: str = GOLD, is_buy: bool = True,
          ro: bool = False) -> OrderFilled:
    return OrderFilled(cloid=cloid, oid=5, coin=coin, is_buy=is_buy, total_sz=D(total), avg_px=D(avg),
                       reduce_only=ro, recv_ns=0)


def ufill(sz: str, px: str = "10", *, cloid: str | None = X, tid: int | None = None, coin: str = GOLD,
          is_buy: bool = True, fee: str = "0.01", closed_pnl: str = "0", snapshot: bool = False,
          time_ms: int = 1000) -> UserFill:
    return UserFill(coin=coin, px=D(px), sz=D(sz), is_buy=is_buy, time_ms=time_ms, oid=5,
                    tid=next(_tid) if tid is None else tid, cloid=cloid, fee=D(fee), closed_pnl=D(closed_pnl),
                    crossed=True, is_snapshot=snapshot, recv_ns=0)


def book() -> PositionBook:
    b = PositionBook({c: s.asset for c, s in SPECS.items()})
    b.apply_rest_positions([], 0)
    return b


def size(b: PositionBook, coin: str = GOLD) -> Decimal:
    p = b.position(coin)
    return D(0) if p is None else (p.size if p.is_long else -p.size)


# ------------------------------------------------------------------------- dedup (partials never lost)


def test_post_then_stream_counted_once() -> None:
    b = book()
    b.on_order_submitted(submitted())
    r = b.on_order_filled(ofill(), 0)
    assert size(b) == D("2.7") and r.fills[0].source == "post"
    b.on_user_fill(ufill("1.2"), 0)
    b.on_user_fill(ufill("1.5"), 0)
    assert size(b) == D("2.7")
    assert b.fees_usd == D("0.02")  # fees still booked once per tid


def test_stream_partials_then_post_total() -> None:
    b = book()
    b.on_order_submitted(submitted())
    b.on_user_fill(ufill("1.2", "9.9"), 0)
    assert size(b) == D("1.2")
    b.on_order_filled(ofill(total="2.7", avg="10"), 0)
    assert size(b) == D("2.7")
    p = b.position(GOLD)
    assert p is not None and p.entry_px == D("10")  # VWAP equals the post's avgPx
    b.on_user_fill(ufill("1.5", "10.08"), 0)  # the rest of the stream: already in the total
    assert size(b) == D("2.7")


def test_all_stream_partials_before_post() -> None:
    b = book()
    t1, t2 = ufill("1.2", tid=1), ufill("1.5", tid=2)
    b.on_user_fill(t1, 0)
    b.on_user_fill(t2, 0)
    b.on_user_fill(t1, 0)  # duplicate tid
    b.on_order_filled(ofill(), 0)
    b.on_order_filled(ofill(), 0)  # duplicate post total
    assert size(b) == D("2.7")


def test_snapshot_fills_ignored_and_plain_tid_dedup() -> None:
    b = book()
    assert not b.on_user_fill(ufill("5", snapshot=True), 0).changed
    assert size(b) == 0
    f = ufill("1", cloid=None, tid=77)
    b.on_user_fill(f, 0)
    b.on_user_fill(f, 0)
    assert size(b) == D(1)


# ------------------------------------------------------------------------------------ position model


def test_vwap_reduce_close_with_pnl_fees_and_reason() -> None:
    b = book()
    b.on_user_fill(ufill("1", "10", cloid=None, fee="0.1"), 0)
    b.on_user_fill(ufill("3", "12", cloid=None, fee="0.3"), 0)
    p = b.position(GOLD)
    assert p is not None and p.size == D(4) and p.entry_px == D("11.5")
    fl = "0x" + "f" * 32
    b.on_order_submitted(submitted(fl, is_buy=False, sz="4", ro=True, kind="flatten", reason="mark_regression"))
    assert GOLD in b.snapshot().pending_flatten
    r = b.on_user_fill(ufill("1", "13", cloid=fl, is_buy=False, fee="0.1"), 0)
    assert size(b) == D(3) and r.closed == []
    r = b.on_order_filled(ofill(fl, total="4", avg="12.5", is_buy=False, ro=True), 5000)
    assert size(b) == 0 and len(r.closed) == 1
    c = r.closed[0]
    assert c.exit_reason == "mark_regression" and c.size == D(4) and c.exit_px == D("12.5")
    assert c.pnl_usd == D(4) and c.fees_usd == D("0.5") and c.is_long
    assert b.realized_pnl_usd == D(4) and b.fees_usd == D("0.5")
    assert GOLD not in b.snapshot().pending_flatten
    r = b.on_user_fill(ufill("3", "12.333", cloid=fl, is_buy=False, fee="0.3"), 0)  # rest of the stream
    assert r.closed == [] and size(b) == 0 and b.fees_usd == D("0.8")


def test_flip_with_remainder_and_new_entry_time() -> None:
    b = book()
    b.on_user_fill(ufill("2", "10", cloid=None, time_ms=100), 0)
    y = "0x" + "b" * 32
    b.on_order_submitted(submitted(y, is_buy=False, sz="5"))
    r = b.on_order_filled(ofill(y, total="5", avg="11", is_buy=False), 9000)
    assert len(r.closed) == 1 and r.closed[0].exit_reason == "flip" and r.closed[0].pnl_usd == D(2)
    p = b.position(GOLD)
    assert p is not None and not p.is_long and p.size == D(3) and p.entry_px == D(11) and p.opened_ms == 9000


def test_exactly_one_close_whichever_path_reports_it() -> None:
    for order in ("post_first", "stream_first"):
        b = book()
        b.on_user_fill(ufill("2", cloid=None), 0)
        fl = "0x" + "c" * 32
        b.on_order_submitted(submitted(fl, is_buy=False, sz="2", ro=True, kind="flatten", reason="time_stop"))
        post, stream = ofill(fl, "2", "10", is_buy=False, ro=True), ufill("2", cloid=fl, is_buy=False)
        if order == "post_first":
            events = b.on_order_filled(post, 0).closed + b.on_user_fill(stream, 0).closed
        else:
            events = b.on_user_fill(stream, 0).closed + b.on_order_filled(post, 0).closed
        assert len(events) == 1 and events[0].exit_reason == "time_stop", order


def test_closing_fill_for_unheld_market_creates_no_phantom() -> None:
    b = book()
    fl = "0x" + "d" * 32
    b.on_order_submitted(submitted(fl, is_buy=False, ro=True, kind="flatten", reason="time_stop"))
    r = b.on_order_filled(ofill(fl, is_buy=False, ro=True), 0)
    assert b.position(GOLD) is None and r.closed == [] and b.needs_resync
    b.on_user_fill(ufill("1", cloid=None, is_buy=False, closed_pnl="-0.5"), 0)  # manual close of nothing
    assert b.position(GOLD) is None
    b.on_user_fill(ufill("1", cloid=None, is_buy=False, coin=SILVER), 0)  # manual open: allowed
    assert size(b, SILVER) == D(-1)


def test_reduce_only_overfill_does_not_flip() -> None:
    b = book()
    b.on_user_fill(ufill("1", cloid=None), 0)
    fl = "0x" + "e" * 32
    b.on_order_submitted(submitted(fl, is_buy=False, sz="2", ro=True, kind="flatten", reason="x"))
    r = b.on_order_filled(ofill(fl, "2", "10", is_buy=False, ro=True), 0)
    assert len(r.closed) == 1 and b.position(GOLD) is None and b.needs_resync


def test_unknown_closing_reason_is_external() -> None:
    b = book()
    b.on_user_fill(ufill("1", cloid=None), 0)
    r = b.on_user_fill(ufill("1", cloid=None, is_buy=False, closed_pnl="0"), 0)
    assert r.closed[0].exit_reason == "external"


# ------------------------------------------------------------------------------------ resync


def test_resync_adds_updates_then_removes_and_gate_sees_position_throughout() -> None:
    gates = ExecutorGates(ExecutorParams(), SoftGates(SoftGateParams()), SPECS)
    gates.set_mark(GOLD, 10.0)
    gates.set_mark(SILVER, 10.0)
    seen: list[str] = []

    def observer() -> None:  # a gate check at every intermediate state of the resync
        if not b.synced:
            return
        s = b.snapshot()
        v = gates.evaluate(entry(GOLD, sz="1"), snapshot=s, hard_stop_latched=False, now_ns=0, now_ms=0)
        seen.append(v.reason)

    b = PositionBook({c: s.asset for c, s in SPECS.items()}, observer=observer)
    b.apply_rest_positions([ExchangePosition(GOLD, D(2), D(10)), ExchangePosition(SILVER, D(1), D(30))], 0)
    b.on_order_submitted(submitted(sz="2"), edge_bps=33.0)
    p0 = b.position(GOLD)
    assert p0 is not None and p0.opened_ms == 0
    seen.clear()
    r = b.apply_rest_positions([ExchangePosition(GOLD, D(3), D(11))], 5000)
    assert seen and all(x == "AlreadyHasPosition" for x in seen)  # never a "no position" state
    p = b.position(GOLD)
    assert p is not None and p.size == D(3) and p.entry_px == D(11) and p.opened_ms == 0  # local entry time kept
    assert b.position(SILVER) is None and [c.coin for c in r.closed] == [SILVER]
    assert r.closed[0].exit_reason == "resync"


def test_resync_keeps_entry_edge_and_time() -> None:
    b = book()
    b.on_order_submitted(submitted(), edge_bps=42.0)
    b.on_order_filled(ofill(), 1234)
    b.apply_rest_positions([ExchangePosition(GOLD, D("2.7"), D(10))], 99_999)
    p = b.position(GOLD)
    assert p is not None and p.entry_edge_bps == 42.0 and p.opened_ms == 1234 and p.entry_cloid == X


def test_an_entry_filled_before_its_order_submitted_gets_its_edge_when_it_comes() -> None:
    """The fill (feed's user stream) and the ``OrderSubmitted`` (executor) have no order between them: a
    position opened by the fill first had entry edge 0 for good (the report's edge buckets, the exits'
    edge scaling); the snapshot after the ``OrderSubmitted`` now carries it."""
    b = book()
    b.on_user_fill(ufill("2.7"), 0)
    p = b.position(GOLD)
    assert p is not None and p.entry_edge_bps == 0.0
    version = b.version
    b.on_order_submitted(submitted(), edge_bps=42.0)
    p = b.position(GOLD)
    assert p is not None and p.entry_edge_bps == 42.0 and b.version > version
    b.on_order_submitted(submitted("0x" + "b" * 32), edge_bps=7.0)  # another order's: not this position's
    assert b.position(GOLD).entry_edge_bps == 42.0  # type: ignore[union-attr]


def test_suspicious_empty_response_needs_two_in_a_row() -> None:
    b = book()
    b.on_user_fill(ufill("1", cloid=None), 0)
    r = b.apply_rest_positions([], 10)
    assert r.suspect and b.position(GOLD) is not None
    r = b.apply_rest_positions([ExchangePosition(GOLD, D(1), D(10))], 20)  # streak broken
    r = b.apply_rest_positions([], 30)
    assert r.suspect and b.position(GOLD) is not None
    r = b.apply_rest_positions([ExchangePosition(GOLD, D(0), D(10))], 40)  # zero row == empty: second
    assert not r.suspect and b.position(GOLD) is None and len(r.closed) == 1


def test_resync_leaves_positions_filled_after_the_request() -> None:
    b = book()
    b.on_user_fill(ufill("1", cloid=None, time_ms=5000), 0)
    b.on_user_fill(ufill("1", cloid=None, coin=SILVER, time_ms=5000), 0)
    b.apply_rest_positions([ExchangePosition(SILVER, D(1), D(10))], 6000, requested_ms=4000)
    assert b.position(GOLD) is not None  # the response predates the fill


def test_balance_and_snapshot_version() -> None:
    b = PositionBook()
    assert not b.snapshot().synced
    assert b.set_balance(D(100), D(50)) == D(150)  # L1 + dex
    assert b.set_balance(D(0), D(0)) == D(150)  # suspect zero held once
    assert b.set_balance(D(0), D(0)) is None
    v = b.snapshot().version
    b.apply_rest_positions([], 0)
    s = b.snapshot()
    assert s.synced and s.version > v


def test_open_orders_from_acks_updates_and_rest() -> None:
    b = book()
    b.on_order_submitted(submitted())
    assert b.on_order_acked(OrderAcked(cloid=X, oid=9, coin=GOLD, recv_ns=0))
    assert [o.oid for o in b.snapshot().open_orders] == [9]
    b.on_order_update(OrderUpdate(coin=GOLD, oid=9, cloid=X, is_buy=True, limit_px=D(10), sz=D(1), orig_sz=D("2.7"),
                                  status="open", status_ms=0, recv_ns=0))
    assert b.snapshot().open_orders[0].sz == D(1)
    b.on_order_update(OrderUpdate(coin=GOLD, oid=10, cloid=None, is_buy=False, limit_px=D(12), sz=D(1),
                                  orig_sz=D(1), status="open", status_ms=0, recv_ns=0))  # manual order
    assert len(b.snapshot().open_orders) == 2
    b.on_order_cancelled(OrderCancelled(cloid=X, oid=9, coin=GOLD, reason="canceled", recv_ns=0))
    assert [o.oid for o in b.snapshot().open_orders] == [10]
    rest = OpenOrder(coin=SILVER, asset=SPECS[SILVER].asset, oid=11, cloid=None, is_buy=True, limit_px=D(1),
                     sz=D(1), reduce_only=False)
    assert b.apply_rest_open_orders([rest])
    assert [o.oid for o in b.snapshot().open_orders] == [11]
    b.on_order_update(OrderUpdate(coin=SILVER, oid=11, cloid=None, is_buy=True, limit_px=D(1), sz=D(0),
                                  orig_sz=D(1), status="scheduledCancel", status_ms=0, recv_ns=0))
    assert b.snapshot().open_orders == ()


def test_pending_flatten_released_on_rejection() -> None:
    b = book()
    fl = "0x" + "1" * 32
    b.on_order_submitted(submitted(fl, ro=True, kind="flatten"))
    assert b.snapshot().pending_flatten == (GOLD,)
    b.on_order_rejected(OrderRejected(cloid=fl, coin=GOLD, reason="exchange: x", benign=True, reduce_only=True,
                                      recv_ns=0))
    assert b.snapshot().pending_flatten == ()


# ------------------------------------------------------------------------------------ review findings 4, 6


def _open_then_close_locally(b: PositionBook, close_ms: int) -> None:
    b.on_order_submitted(submitted(sz="2"))
    b.on_order_filled(ofill(total="2"), 1000)
    b.on_order_submitted(submitted("0x" + "b" * 32, is_buy=False, sz="2", ro=True, kind="flatten",
                                   reason="time_stop"))
    r = b.on_order_filled(ofill("0x" + "b" * 32, total="2", avg="11", is_buy=False, ro=True), close_ms)
    assert [c.exit_reason for c in r.closed] == ["time_stop"] and b.position(GOLD) is None


def test_stale_resync_does_not_resurrect_a_position_closed_after_the_request() -> None:
    """Finding 4: a REST answer requested before the local close still lists the position; re-adding it
    made the next resync emit a second PositionClosed("resync")."""
    b = book()
    _open_then_close_locally(b, close_ms=5000)
    r = b.apply_rest_positions([ExchangePosition(GOLD, D(2), D(10))], 5100, requested_ms=4900)
    assert b.position(GOLD) is None and r.closed == [] and r.stale_skipped == [GOLD]
    assert b.needs_resync  # the next (newer) answer settles it
    r = b.apply_rest_positions([], 6000, requested_ms=5900)
    assert r.closed == [] and b.position(GOLD) is None and not b.needs_resync  # exactly one close in all


def test_resync_requested_after_the_close_is_the_exchange_truth() -> None:
    """The other order: requested after the local close, a listed position is real (re-added)."""
    b = book()
    _open_then_close_locally(b, close_ms=5000)
    r = b.apply_rest_positions([ExchangePosition(GOLD, D(2), D(10))], 5200, requested_ms=5100)
    p = b.position(GOLD)
    assert p is not None and p.size == D(2) and r.stale_skipped == [] and not b.needs_resync


def test_rest_row_without_entry_price_is_unknown_this_round() -> None:
    """Finding 6: entryPx null/0 became entry 0 (PnL = the whole notional on close). Such a coin is
    neither added nor removed, and a resync is asked for."""
    b = book()
    r = b.apply_rest_positions([ExchangePosition(GOLD, D(2), D(0))], 100)
    assert b.position(GOLD) is None and r.unknown == [GOLD] and b.needs_resync
    b.on_user_fill(ufill("1", cloid=None, coin=SILVER, time_ms=50), 60)
    r = b.apply_rest_positions([ExchangePosition(SILVER, D(1), D(0)), ExchangePosition(GOLD, D(2), D(10))], 200,
                               requested_ms=150)
    held = b.position(SILVER)
    assert held is not None and held.entry_px == D(10) and r.closed == []  # not removed, not re-priced at 0
    assert b.needs_resync
    r = b.apply_rest_positions([ExchangePosition(SILVER, D(1), D(10)), ExchangePosition(GOLD, D(2), D(10))], 300)
    assert r.unknown == [] and not b.needs_resync


def test_first_sync_with_an_unknown_row_stays_unsynced() -> None:
    b = PositionBook({c: s.asset for c, s in SPECS.items()})
    b.apply_rest_positions([ExchangePosition(GOLD, D(2), D(0))], 0)
    assert not b.synced and not b.snapshot().synced  # never trade on a book missing a position
    b.apply_rest_positions([ExchangePosition(GOLD, D(2), D(10))], 10)
    assert b.synced and b.position(GOLD) is not None

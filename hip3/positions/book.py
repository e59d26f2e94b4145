"""The position book: the source of truth for positions, open orders, realised PnL and fees.

Guards against:

* Fill de-duplication by cloid only lost partial fills (in the Rust original). Here a post-response total
  (``OrderFilled``) is authoritative for its cloid and stream fills dedupe on ``(cloid, tid)``: whatever
  the order of arrival, exactly the post total is applied (stream partials first, then the remainder at
  the price that makes the order's VWAP equal the post's ``avgPx``; stream fills after the total add only
  their fee). Fills without cloid (manual) dedupe on ``tid``.
* ``is_snapshot`` userFills never touch positions (replaying them resurrected closed positions at start).
* A closing fill (reduce-only, or ``closedPnl`` ≠ 0 from an unknown order) for a market the book
  does not hold never creates a phantom opposite position: it is logged and ``needs_resync`` is set.
* Exactly one ``PositionClosed`` per close (a close seen on one racy path only skipped its loss limits),
  whichever path (post response, userFills, resync) closed it, with the exit reason of the closing order
  (``FlattenIntent.reason`` via the ``OrderSubmitted`` of its cloid), "flip" for an entry that flips,
  "external" if unknown. The closing fill can reach the tracker on the user stream before the executor's
  ``OrderSubmitted`` of its cloid (two publishers, no order between them): a close by one of hip3's cloids
  (``is_hip3_cloid``) whose ``OrderSubmitted`` has not arrived is returned in ``BookResult.held``, not
  ``closed``, and the tracker holds it (``HeldCloses``, bounded) until that ``OrderSubmitted`` names its
  reason.
* The REST resync of the same book (never clearing first, suspect empty answers, the balance) is
  ``book_resync.RestResync``.

PnL is gross (``realized_pnl_usd``); fees are separate (``fees_usd``). Fees only arrive on userFills, so a
``PositionClosed`` emitted from a post response carries the fees known at that moment.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal

import msgspec

from hip3.hyperliquid.wire import is_hip3_cloid
from hip3.messages import (
    Fill,
    OpenOrder,
    OrderAcked,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdate,
    Position,
    PositionSnapshot,
    UserFill,
)
from hip3.positions.book_resync import RestResync
from hip3.positions.records import ZERO, BookPosition, BookResult, closed_record, exit_reason_of

__all__ = ["PositionBook"]

log = logging.getLogger("hip3.positions")
_MEMORY = 20_000
_LIVE = ("open", "triggered")


class _OrderInfo(msgspec.Struct):
    coin: str
    asset: int
    is_buy: bool
    px: Decimal
    sz: Decimal
    reduce_only: bool
    kind: str
    reason: str
    edge_bps: float


class _CloidFills(msgspec.Struct):
    post_total: Decimal | None = None
    applied_sz: Decimal = ZERO
    applied_notional: Decimal = ZERO
    tids: set[int] = msgspec.field(default_factory=set)


class PositionBook(RestResync):
    """Single-threaded; ``now_ms`` (epoch) is always passed in. Every mutation bumps ``version``."""

    def __init__(
        self, assets: Mapping[str, int] | None = None, observer: Callable[[], None] | None = None
    ) -> None:
        self.assets = dict(assets or {})
        self._observer = observer
        self._pos: dict[str, BookPosition] = {}
        self._orders: dict[int, OpenOrder] = {}
        self._info: OrderedDict[str, _OrderInfo] = OrderedDict()
        self._fills: OrderedDict[str, _CloidFills] = OrderedDict()
        self._plain_tids: OrderedDict[int, None] = OrderedDict()
        self._flatten_cloids: dict[str, str] = {}  # cloid -> coin, reduce-only in flight
        self.version = 0
        self.synced = False
        self.needs_resync = False
        self.realized_pnl_usd = ZERO
        self.fees_usd = ZERO
        self.balance_usd: Decimal | None = None
        self._empty_streak = 0
        self._zero_balance_streak = 0
        self._closed_ms: dict[str, int] = {}  # coin -> when its last position was closed locally (epoch ms)

    # ------------------------------------------------------------------ views

    def _bump(self) -> None:
        self.version += 1
        if self._observer is not None:
            self._observer()

    def position(self, coin: str) -> Position | None:
        p = self._pos.get(coin)
        return None if p is None else self._public(p)

    @staticmethod
    def _public(p: BookPosition) -> Position:
        return Position(
            coin=p.coin,
            asset=p.asset,
            is_long=p.is_long,
            size=p.size,
            entry_px=p.entry_px,
            opened_ms=p.opened_ms,
            entry_edge_bps=p.entry_edge_bps,
            entry_cloid=p.entry_cloid,
        )

    def snapshot(self, feed_conn_id: int = 0) -> PositionSnapshot:
        """The published book; ``feed_conn_id``: see ``PositionSnapshot`` (the actor knows it)."""
        return PositionSnapshot(
            version=self.version,
            synced=self.synced,
            positions=tuple(self._public(self._pos[c]) for c in sorted(self._pos)),
            open_orders=tuple(self._orders[o] for o in sorted(self._orders)),
            realized_pnl_usd=self.realized_pnl_usd,
            fees_usd=self.fees_usd,
            pending_flatten=tuple(sorted(set(self._flatten_cloids.values()))),
            feed_conn_id=feed_conn_id,
        )

    # ------------------------------------------------------------------ executor events

    def on_order_submitted(self, msg: OrderSubmitted, edge_bps: float = 0.0) -> None:
        """Remember what each cloid is (exit reason, reduce-only, entry edge)."""
        self._info[msg.cloid] = _OrderInfo(
            coin=msg.coin,
            asset=msg.asset,
            is_buy=msg.is_buy,
            px=msg.px,
            sz=msg.sz,
            reduce_only=msg.reduce_only,
            kind=msg.kind,
            reason=msg.reason,
            edge_bps=edge_bps,
        )
        self.assets.setdefault(msg.coin, msg.asset)
        pos = self._pos.get(msg.coin)
        if pos is not None and pos.entry_cloid == msg.cloid and not pos.entry_edge_bps and edge_bps:
            pos.entry_edge_bps = edge_bps  # its fill came first (two publishers): the edge arrives now
            self._bump()
        while len(self._info) > _MEMORY:
            self._info.popitem(last=False)
        if msg.reduce_only:
            self._flatten_cloids[msg.cloid] = msg.coin
            self._bump()

    def _order_done(self, cloid: str) -> bool:
        if self._flatten_cloids.pop(cloid, None) is not None:
            self._bump()
            return True
        return False

    def on_order_acked(self, msg: OrderAcked) -> bool:
        info = self._info.get(msg.cloid)
        if info is None or msg.oid in self._orders:
            return False
        self._orders[msg.oid] = OpenOrder(
            coin=msg.coin,
            asset=info.asset,
            oid=msg.oid,
            cloid=msg.cloid,
            is_buy=info.is_buy,
            limit_px=info.px,
            sz=info.sz,
            reduce_only=info.reduce_only,
        )
        self._bump()
        return True

    def on_order_rejected(self, msg: OrderRejected) -> bool:
        return self._order_done(msg.cloid)

    def on_order_cancelled(self, msg: OrderCancelled) -> bool:
        removed = self._orders.pop(msg.oid, None) is not None
        if removed:
            self._bump()
        return self._order_done(msg.cloid) or removed

    def on_order_update(self, upd: OrderUpdate) -> bool:
        """Open orders from orderUpdates (all of the account's, with or without cloid)."""
        if upd.cloid is not None and upd.status not in _LIVE:
            self._order_done(upd.cloid)
        if upd.status in _LIVE:
            info = self._info.get(upd.cloid) if upd.cloid else None
            self._orders[upd.oid] = OpenOrder(
                coin=upd.coin,
                asset=self.assets.get(upd.coin, info.asset if info else 0),
                oid=upd.oid,
                cloid=upd.cloid,
                is_buy=upd.is_buy,
                limit_px=upd.limit_px,
                sz=upd.sz,
                reduce_only=info.reduce_only if info else False,
            )
        elif self._orders.pop(upd.oid, None) is None:
            return False
        self._bump()
        return True

    # ------------------------------------------------------------------ fills

    def on_order_filled(self, msg: OrderFilled, now_ms: int) -> BookResult:
        """The post response's total for ``msg.cloid``: authoritative, applied exactly once in total."""
        res = BookResult()
        self._order_done(msg.cloid)
        rec = self._fill_rec(msg.cloid)
        if rec.post_total is not None:
            return res  # the same post total reported twice
        rec.post_total = msg.total_sz
        remaining = msg.total_sz - rec.applied_sz
        if remaining < 0:
            log.warning(
                "stream fills for %s exceed the post total %s (applied %s)",
                msg.cloid,
                msg.total_sz,
                rec.applied_sz,
            )
            self.needs_resync = True
            return res
        if remaining == 0:
            return res
        notional = msg.total_sz * msg.avg_px - rec.applied_notional
        if notional <= 0:
            notional = remaining * msg.avg_px
        px = notional / remaining
        rec.applied_sz += remaining
        rec.applied_notional += notional
        self._apply(
            res,
            notional=notional,
            coin=msg.coin,
            is_buy=msg.is_buy,
            sz=remaining,
            px=px,
            fee=ZERO,
            cloid=msg.cloid,
            oid=msg.oid,
            tid=0,
            source="post",
            time_ms=now_ms,
            recv_ns=msg.recv_ns,
            closing_hint=msg.reduce_only,
            local_ms=now_ms,
        )
        return res

    def on_user_fill(self, f: UserFill, now_ms: int) -> BookResult:
        """One streaming userFill. Snapshot fills are ignored (they are history); duplicates dedupe on
        (cloid, tid)."""
        res = BookResult()
        if f.is_snapshot:
            return res
        closing_hint = f.closed_pnl != 0
        apply_sz = f.sz
        if f.cloid is not None:
            rec = self._fill_rec(f.cloid)
            if f.tid in rec.tids:
                return res
            rec.tids.add(f.tid)
            if rec.post_total is not None:
                apply_sz = max(ZERO, min(f.sz, rec.post_total - rec.applied_sz))
            rec.applied_sz += apply_sz
            rec.applied_notional += apply_sz * f.px
            info = self._info.get(f.cloid)
            if info is not None:
                closing_hint = info.reduce_only
        else:
            if f.tid in self._plain_tids:
                return res
            self._plain_tids[f.tid] = None
            while len(self._plain_tids) > _MEMORY:
                self._plain_tids.popitem(last=False)
        self.fees_usd += f.fee
        if apply_sz <= 0:
            p = self._pos.get(f.coin)
            if p is not None:
                p.fees_usd += f.fee
            if f.fee:
                res.changed = True
                self._bump()
            return res
        self._apply(
            res,
            coin=f.coin,
            is_buy=f.is_buy,
            sz=apply_sz,
            px=f.px,
            fee=f.fee,
            cloid=f.cloid,
            oid=f.oid,
            tid=f.tid,
            source="stream",
            time_ms=f.time_ms or now_ms,
            recv_ns=f.recv_ns,
            closing_hint=closing_hint,
            fee_booked=True,
            local_ms=now_ms,
        )
        return res

    def _fill_rec(self, cloid: str) -> _CloidFills:
        rec = self._fills.get(cloid)
        if rec is None:
            rec = self._fills[cloid] = _CloidFills()
            while len(self._fills) > _MEMORY:
                self._fills.popitem(last=False)
        return rec

    def _exit_reason(self, cloid: str | None) -> str:
        info = self._info.get(cloid) if cloid else None
        return "external" if info is None else exit_reason_of(info.kind, info.reason)

    def _apply(
        self,
        res: BookResult,
        *,
        coin: str,
        is_buy: bool,
        sz: Decimal,
        px: Decimal,
        fee: Decimal,
        cloid: str | None,
        oid: int,
        tid: int,
        source: str,
        time_ms: int,
        recv_ns: int,
        closing_hint: bool,
        fee_booked: bool = False,
        notional: Decimal | None = None,
        local_ms: int = 0,
    ) -> None:
        ntl = px * sz if notional is None else notional
        if not fee_booked:
            self.fees_usd += fee
        res.fills.append(
            Fill(
                coin=coin,
                cloid=cloid,
                oid=oid,
                tid=tid,
                is_buy=is_buy,
                px=px,
                sz=sz,
                fee=fee,
                source=source,
                time_ms=time_ms,
                recv_ns=recv_ns,
            )
        )
        res.changed = True
        p = self._pos.get(coin)
        if p is None:
            if closing_hint:
                log.warning(
                    "closing fill %s %s@%s for %s which the book does not hold: ignored, resync needed",
                    "buy" if is_buy else "sell",
                    sz,
                    px,
                    coin,
                )
                self.needs_resync = True
                self._bump()
                return
            self._open(coin, is_buy, sz, ntl, fee, cloid, time_ms)
            self._bump()
            return
        p.last_fill_ms = time_ms
        if p.is_long == is_buy:
            p.cost += ntl
            p.size += sz
            p.entry_px = p.cost / p.size
            p.fees_usd += fee
            self._bump()
            return
        close_sz = min(sz, p.size)
        close_ntl = ntl if close_sz == sz else ntl * close_sz / sz
        removed_cost = p.cost if close_sz == p.size else p.cost * close_sz / p.size
        pnl = close_ntl - removed_cost if p.is_long else removed_cost - close_ntl
        p.cost -= removed_cost
        close_fee = fee * close_sz / sz
        self.realized_pnl_usd += pnl
        p.realized_usd += pnl
        p.fees_usd += close_fee
        p.closed_sz += close_sz
        p.closed_notional += close_ntl
        p.size -= close_sz
        rest = sz - close_sz
        if p.size == 0:
            del self._pos[coin]
            self._closed_ms[coin] = max(time_ms, local_ms)
            closed = closed_record(p, self._exit_reason(cloid), time_ms)
            if cloid is not None and cloid not in self._info and is_hip3_cloid(cloid):
                res.held.append((cloid, closed))  # its OrderSubmitted is still on its way
            else:
                res.closed.append(closed)
            if rest > 0:
                if closing_hint:
                    log.warning(
                        "reduce-only fill on %s exceeds the position by %s: not flipping, resync", coin, rest
                    )
                    self.needs_resync = True
                else:
                    self._open(coin, is_buy, rest, ntl - close_ntl, fee - close_fee, cloid, time_ms)
        self._bump()

    def _open(
        self,
        coin: str,
        is_long: bool,
        sz: Decimal,
        cost: Decimal,
        fee: Decimal,
        cloid: str | None,
        time_ms: int,
    ) -> None:
        info = self._info.get(cloid) if cloid else None
        self._pos[coin] = BookPosition(
            coin=coin,
            asset=self.assets.get(coin, info.asset if info else 0),
            is_long=is_long,
            size=sz,
            entry_px=cost / sz,
            cost=cost,
            opened_ms=time_ms,
            entry_edge_bps=info.edge_bps if info else 0.0,
            entry_cloid=cloid,
            fees_usd=fee,
            last_fill_ms=time_ms,
        )

"""The executor's order state: cloid ↔ intent ↔ post id ↔ oid, and the post-response handling.

Guards against:

* The post response is authoritative (waiting for an orderUpdate that never came froze the Rust bot).
  ``filled`` is terminal and reports the fill total at once (``OrderFilled``); ``error`` is terminal;
  ``resting`` records the oid; the bare string ``"success"`` (what ALO orders get) means accepted, oid
  later. orderUpdates are used too, but never relied on alone.
* Pre-validation: a status list SHORTER than the batch (one error for the whole batch) rejects every
  order that got no status of its own, with that error as the reason.
* A whole-request error (``{"status":"err"}`` or ``type:"error"``) is reported to the caller,
  who cleans up the whole batch exactly like a send failure — nothing stays "pending".
* orderUpdates statuses ``*Rejected``, ``*Canceled``, ``scheduledCancel`` and any unknown status are
  terminal (unmapped statuses leaked pending orders); an update without cloid is resolved through the oid
  map.
* Every rejection carries ``benign`` from ``is_benign_rejection``, so routine IOC misses never count.
* A post response or update that matches nothing is counted and ignored, never an exception.

Rejection reasons use a prefix so consumers can tell the source: ``exchange: <text>``, ``timeout``,
``send_failed: <why>``, ``requeue_exhausted``, ``dropped: <why>``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from decimal import Decimal

import msgspec

from hip3.execution.batch import Batch, QueuedOrder
from hip3.hyperliquid.errors import is_benign_rejection, order_status_kind
from hip3.hyperliquid.frames import PostResponse
from hip3.hyperliquid.responses import ExchangeResponse, OrderStatus
from hip3.messages import (
    Msg,
    OrderAcked,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdate,
)

__all__ = ["ManagedOrder", "OrderTracker", "post_answer"]

log = logging.getLogger(__name__)

_DONE_MEMORY = 20_000
_ZERO = Decimal(0)


class ManagedOrder(msgspec.Struct, kw_only=True):
    order: QueuedOrder
    oid: int = 0
    acked: bool = False


def post_answer(resp: PostResponse) -> ExchangeResponse | None:
    """The exchange's answer to an action post, as the WS client parsed it (``ExchangeResponse``), or None if
    its outcome is unknown (``timeout``, ``disconnected``, an answer the client could not parse): the
    scheduler's expiry resolves those. An ``error`` answer (the string mirroring the HTTP error) or any
    other type is a whole-request failure."""
    if resp.type == "action" and resp.exchange is not None:
        return resp.exchange
    if resp.type in ("timeout", "disconnected", "unknown"):
        return None
    return ExchangeResponse(False, error=resp.error or f"post answered with type {resp.type!r}")


class OrderTracker:
    """Live orders by cloid. ``on_terminal(order, filled_sz)`` is called exactly once per order that ends;
    ``filled_sz`` is what is known to have filled (the post total, or ``origSz − sz`` of the terminal
    orderUpdate), 0 if nothing is known to have filled."""

    def __init__(self, on_terminal: Callable[[QueuedOrder, Decimal], None] | None = None) -> None:
        self._live: dict[str, ManagedOrder] = {}
        self._by_intent: dict[str, str] = {}
        self._by_oid: dict[int, str] = {}
        self._done: OrderedDict[str, str] = OrderedDict()  # cloid -> terminal state (bounded)
        self._on_terminal = on_terminal
        self.unmatched = 0  # post statuses that matched no live order (reported in the executor's stats)

    # ------------------------------------------------------------------ registry

    def add(self, order: QueuedOrder) -> None:
        self._live[order.cloid] = ManagedOrder(order=order)
        self._by_intent[order.intent_id] = order.cloid

    def has_intent(self, intent_id: str) -> bool:
        return intent_id in self._by_intent

    def __len__(self) -> int:
        return len(self._live)

    def flatten_in_flight(self) -> set[str]:
        """Coins with a live reduce-only order (gate 6; flattens are registered too)."""
        return {m.order.coin for m in self._live.values() if m.order.reduce_only}

    def _finish(self, cloid: str, state: str, filled_sz: Decimal = _ZERO) -> ManagedOrder | None:
        m = self._live.pop(cloid, None)
        if m is None:
            return None
        self._by_intent.pop(m.order.intent_id, None)
        if m.oid:
            self._by_oid.pop(m.oid, None)
        self._done[cloid] = state
        while len(self._done) > _DONE_MEMORY:
            self._done.popitem(last=False)
        if self._on_terminal is not None:
            self._on_terminal(m.order, filled_sz)
        return m

    # ------------------------------------------------------------------ sending

    def sent(self, batch: Batch, post_id: int, nonce: int, sent_ns: int) -> list[OrderSubmitted]:
        """The batch's frame was written: one ``OrderSubmitted`` per order."""
        out: list[OrderSubmitted] = []
        for o in batch.orders:
            if o.cloid not in self._live:
                continue
            out.append(
                OrderSubmitted(
                    cloid=o.cloid,
                    intent_id=o.intent_id,
                    coin=o.coin,
                    asset=o.asset,
                    is_buy=o.is_buy,
                    px=o.px,
                    sz=o.sz,
                    reduce_only=o.reduce_only,
                    tif=o.tif,
                    kind=o.kind,
                    reason=o.reason,
                    nonce=nonce,
                    post_id=post_id,
                    origin_recv_ns=o.origin_recv_ns,
                    sent_ns=sent_ns,
                    edge_bps=o.edge_bps,
                    assumed_fee_bps=o.fee_bps,
                    fee_source=o.fee_source,
                )
            )
        return out

    def fail(
        self, orders: Iterable[QueuedOrder], reason: str, recv_ns: int, *, benign: bool
    ) -> list[OrderRejected]:
        """Terminal rejection without an exchange status (send failure, timeout, drop, requeue exhausted).
        Orders that already ended are skipped silently (not counted as unmatched)."""
        out: list[OrderRejected] = []
        for o in orders:
            rej = self._reject(o, reason, benign, recv_ns, count_unmatched=False)
            if rej is not None:
                out.append(rej)
        return out

    # ------------------------------------------------------------------ post responses

    def apply_post_response(
        self, batch: Batch, response: ExchangeResponse, recv_ns: int
    ) -> tuple[list[Msg], str | None]:
        """Apply the exchange's answer to its batch. Returns (events, whole_request_error); on a
        whole-request error nothing is changed here: the caller cleans up the batch like a send failure."""
        if not response.ok:
            return [], response.error or "request failed"
        statuses = response.statuses
        if batch.kind == "cancel":
            for c, st in zip(batch.cancels, statuses, strict=False):
                if st.kind == "error":
                    log.info("cancel of oid %s refused: %s", c.oid, st.text)
            return [], None
        events: list[Msg] = []
        first_error = next((st.text or "" for st in statuses if st.kind == "error"), None)
        for i, o in enumerate(batch.orders):
            if i < len(statuses):
                events.extend(self._apply_status(o, statuses[i], recv_ns))
            else:
                text = first_error or "no status for this order"
                events.extend(self._rejected(o, f"exchange: {text}", is_benign_rejection(text), recv_ns))
        return events, None

    def _reject(
        self,
        o: QueuedOrder,
        reason: str,
        benign: bool,
        recv_ns: int,
        *,
        count_unmatched: bool = True,
        filled_sz: Decimal = _ZERO,
    ) -> OrderRejected | None:
        """The one ``OrderRejected`` builder: ends ``o`` (once) and reports it; None if it had ended."""
        if self._finish(o.cloid, "rejected", filled_sz) is None:
            if count_unmatched:
                self.unmatched += 1
            return None
        return OrderRejected(
            cloid=o.cloid,
            coin=o.coin,
            reason=reason,
            benign=benign,
            reduce_only=o.reduce_only,
            recv_ns=recv_ns,
            intent_id=o.intent_id,
        )

    def _rejected(
        self, o: QueuedOrder, reason: str, benign: bool, recv_ns: int, *, filled_sz: Decimal = _ZERO
    ) -> list[Msg]:
        rej = self._reject(o, reason, benign, recv_ns, filled_sz=filled_sz)
        return [] if rej is None else [rej]

    @staticmethod
    def _filled_event(o: QueuedOrder, st: OrderStatus, recv_ns: int) -> list[Msg]:
        total, avg = st.total_sz, st.avg_px
        if total is None or avg is None or total <= 0 or avg <= 0:
            return []
        return [
            OrderFilled(
                cloid=o.cloid,
                oid=st.oid or 0,
                coin=o.coin,
                is_buy=o.is_buy,
                total_sz=total,
                avg_px=avg,
                reduce_only=o.reduce_only,
                recv_ns=recv_ns,
            )
        ]

    def _apply_status(self, o: QueuedOrder, st: OrderStatus, recv_ns: int) -> list[Msg]:
        m = self._live.get(o.cloid)
        kind = st.kind
        if m is None:
            if o.cloid in self._done and kind == "filled":
                # orderUpdates already ended it (IOC "canceled"/"filled" can beat the post response);
                # the post total is still the authoritative fill for the books.
                return self._filled_event(o, st, recv_ns)
            self.unmatched += 1
            log.warning("post status for unknown/finished order %s ignored: %r", o.cloid, st)
            return []
        if kind == "string":
            # "success" (ALO accepted), "waitingForFill", ...: accepted, the oid comes later.
            return []
        if kind == "filled":
            events = self._filled_event(o, st, recv_ns)
            if not events:
                return self._rejected(o, f"exchange: malformed fill {st!r}"[:200], False, recv_ns)
            fill = events[0]
            self._finish(o.cloid, "filled", fill.total_sz if isinstance(fill, OrderFilled) else _ZERO)
            return events
        if kind == "resting" and st.oid is not None:
            oid = st.oid
            m.oid = oid
            self._by_oid[oid] = o.cloid
            if m.acked:
                return []
            m.acked = True
            return [OrderAcked(cloid=o.cloid, oid=oid, coin=o.coin, recv_ns=recv_ns)]
        if kind == "error":
            text = st.text or ""
            return self._rejected(o, f"exchange: {text}", is_benign_rejection(text), recv_ns)
        return self._rejected(o, f"exchange: unparseable status {st.text or st!r}"[:200], False, recv_ns)

    # ------------------------------------------------------------------ orderUpdates

    def on_order_update(self, upd: OrderUpdate) -> list[Msg]:
        """Apply one orderUpdates element to our own orders (others' are the position tracker's business)."""
        cloid = upd.cloid if upd.cloid in self._live else self._by_oid.get(upd.oid)
        if cloid is None:
            return []  # not ours, or already terminal via the post response
        m = self._live[cloid]
        o = m.order
        kind = order_status_kind(upd.status)
        if kind == "open":
            if not m.oid:
                m.oid = upd.oid
                self._by_oid[upd.oid] = cloid
            if m.acked:
                return []
            m.acked = True
            return [OrderAcked(cloid=cloid, oid=upd.oid, coin=o.coin, recv_ns=upd.recv_ns)]
        # What filled before the order ended (``sz`` is the remaining size: an IOC can fill partly and
        # cancel the rest).
        filled = upd.orig_sz - upd.sz if upd.orig_sz > upd.sz else _ZERO
        if kind == "filled":
            # Terminal. The size reaches the books through userFills (and the post response, if any).
            self._finish(cloid, "filled", filled if filled > 0 else o.sz)
            return []
        if kind == "rejected":
            # a rejected order never traded: its remaining size says nothing about fills
            return self._rejected(o, f"exchange: {upd.status}", is_benign_rejection(upd.status), upd.recv_ns)
        self._finish(cloid, "cancelled", filled)
        return [OrderCancelled(cloid=cloid, oid=upd.oid, coin=o.coin, reason=upd.status, recv_ns=upd.recv_ns)]

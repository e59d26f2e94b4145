"""Three-tier batch scheduler: cancels > reduce-only > new orders.

Behaviour:

* A batch is all cancels or all orders (one action type per post), at most ``max_batch_size`` (50).
* Reduce-only orders are accepted even at the in-flight limit; new orders are refused (``InflightFull``).
  A reduce-only order for a market that already has one queued is a no-op reported as success (one
  flatten per market in flight).
* New orders are held while the hard stop is latched or in-flight ≥ the high watermark (the watermark
  is below the limit, so this degraded mode is reachable).
* In-flight = posts sent and not answered: +1 per post, −1 on its response or its timeout (5 s).
* Timeout (outcome unknown): new and reduce-only orders released, never re-sent (their cloids must not
  reach the exchange twice); cancels requeued. Send failure / not ready /
  rate-limited: the same (not ready / rate-limited / not connected requeue without spending the
  requeue budget: waiting is not a failure). A whole-request error is handled like a send failure
  by the caller. Requeues are bounded (``max_requeues``) so a deterministic failure cannot loop forever.

hip3's twist on timing: **send at once when idle, batch only under load**. When nothing is in flight,
``next_batch`` returns whatever is queued immediately (no 20 ms tick on the idle path). While posts are in
flight, it coalesces: it waits until ``batch_interval_ms`` passed since the last send or a full batch is
queued. ``next_wakeup_ns`` tells the actor when to call again. Nothing here reads a clock.

How many of each kind the next post may carry is the caller's admission (``BatchLimits``: the exchange's
request budget, the pacing of entry posts; ``hip3.execution.admission``); without limits, everything
queued may go.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Literal, NamedTuple

import msgspec

from hip3.execution.params import ExecutorParams

__all__ = ["UNLIMITED", "Batch", "BatchLimits", "BatchScheduler", "EnqueueResult", "QueuedCancel", "QueuedOrder",
           "TimedOutPost"]

UNLIMITED = 1 << 40


class BatchLimits(NamedTuple):
    """How many of each kind the next post may carry. ``new`` counts for a batch without reduce-only orders:
    each reduce-only order taken lowers it by one (they spend the same request budget, and the entries'
    share is what is left above the flattens' reserve)."""

    cancels: int = UNLIMITED
    reduce_only: int = UNLIMITED
    new: int = UNLIMITED


NO_LIMITS = BatchLimits()


class QueuedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One order as the executor sends it (IOC). ``kind``: "entry" | "flatten" | "hardstop"."""

    cloid: str
    intent_id: str
    coin: str
    asset: int
    is_buy: bool
    px: Decimal
    sz: Decimal
    reduce_only: bool
    kind: str
    reason: str = ""
    tif: str = "Ioc"
    origin_recv_ns: int = 0
    requeues: int = 0
    edge_bps: float = 0.0  # entry: the signal's raw edge (OrderSubmitted; the slippage trigger); 0 for flattens
    # entry: the intent's validity (monotonic ns); a new order still queued after it is dropped, never sent
    # late at a stale price (e.g. while the exchange's message budget is used up). 0: no limit.
    valid_until_ns: int = 0
    # entry: the detector's assumed per-leg taker fee (bps) and its source (OrderSubmitted, the journal)
    fee_bps: float = 0.0
    fee_source: str = ""


class QueuedCancel(msgspec.Struct, frozen=True, kw_only=True):
    coin: str
    asset: int
    oid: int
    cloid: str | None = None
    requeues: int = 0


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """One post: all cancels or all orders."""

    kind: Literal["cancel", "order"]
    orders: tuple[QueuedOrder, ...] = ()
    cancels: tuple[QueuedCancel, ...] = ()

    def __len__(self) -> int:
        return len(self.orders) + len(self.cancels)


class EnqueueResult(msgspec.Struct, frozen=True):
    ok: bool
    reason: str  # "Queued" | "DuplicateNoop" | "QueueFull" | "InflightFull" | "HardStop"


class TimedOutPost(msgspec.Struct, frozen=True):
    post_id: int
    batch: Batch
    dropped_new: tuple[QueuedOrder, ...]  # released: the caller emits OrderRejected("timeout")
    given_up: tuple[QueuedOrder | QueuedCancel, ...]  # requeue budget exhausted
    # Reduce-only orders of the timed-out post: released, never sent again (outcome unknown, see expire).
    released_reduce_only: tuple[QueuedOrder, ...] = ()


class _InFlight(msgspec.Struct):
    batch: Batch
    sent_ns: int


class BatchScheduler:
    """Queues and in-flight accounting. The actor: ``enqueue_*``; ``next_batch``; then ``mark_sent`` or
    ``on_send_failure``; ``on_response`` per answered post; ``expire`` on every loop turn."""

    def __init__(self, params: ExecutorParams) -> None:
        self.params = params
        self._cancels: deque[QueuedCancel] = deque()
        self._reduce: deque[QueuedOrder] = deque()
        self._new: deque[QueuedOrder] = deque()
        self._expired: list[QueuedOrder] = []  # new orders found past their validity by next_batch
        self._reduce_coins: set[str] = set()
        self._inflight: dict[int, _InFlight] = {}
        self._hard_stop = False
        self._last_send_ns: int | None = None
        self._timeout_ns = params.post_timeout_ms * 1_000_000
        self._interval_ns = params.batch_interval_ms * 1_000_000

    # ------------------------------------------------------------------ state

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def queued(self) -> tuple[int, int, int]:
        """(cancels, reduce-only, new) queue lengths."""
        return len(self._cancels), len(self._reduce), len(self._new)

    def set_hard_stop(self, latched: bool) -> list[QueuedOrder]:
        """Latch/unlatch; on latch, every queued new order is dropped and returned (release their marks)."""
        self._hard_stop = latched
        if not latched:
            return []
        dropped = list(self._new)
        self._new.clear()
        return dropped

    def drop_expired_new(self, now_ns: int) -> list[QueuedOrder]:
        """Remove and return the queued new orders past their validity, and those ``next_batch`` skipped
        for it (the caller releases them). Reduce-only orders and cancels never expire here."""
        dropped, self._expired = self._expired, []
        if any(0 < o.valid_until_ns < now_ns for o in self._new):
            keep: deque[QueuedOrder] = deque()
            for o in self._new:
                (dropped if 0 < o.valid_until_ns < now_ns else keep).append(o)
            self._new = keep
        return dropped

    def drop_new(self) -> list[QueuedOrder]:
        """Drop and return every queued new order (the caller releases them)."""
        dropped = list(self._new)
        self._new.clear()
        return dropped

    # ------------------------------------------------------------------ enqueue

    def enqueue_cancel(self, cancel: QueuedCancel) -> EnqueueResult:
        if any(c.oid == cancel.oid for c in self._cancels):
            return EnqueueResult(True, "DuplicateNoop")
        if len(self._cancels) >= self.params.cancel_queue_capacity:
            return EnqueueResult(False, "QueueFull")
        self._cancels.append(cancel)
        return EnqueueResult(True, "Queued")

    def enqueue_reduce_only(self, order: QueuedOrder) -> EnqueueResult:
        """Accepted even at the in-flight limit; one per market (a second is a no-op success)."""
        if order.coin in self._reduce_coins:
            return EnqueueResult(True, "DuplicateNoop")
        if len(self._reduce) >= self.params.reduce_only_queue_capacity:
            return EnqueueResult(False, "QueueFull")
        self._reduce.append(order)
        self._reduce_coins.add(order.coin)
        return EnqueueResult(True, "Queued")

    def enqueue_new(self, order: QueuedOrder) -> EnqueueResult:
        if self._hard_stop:
            return EnqueueResult(False, "HardStop")
        if len(self._inflight) >= self.params.inflight_limit:
            return EnqueueResult(False, "InflightFull")
        if len(self._new) >= self.params.new_queue_capacity:
            return EnqueueResult(False, "QueueFull")
        self._new.append(order)
        return EnqueueResult(True, "Queued")

    # ------------------------------------------------------------------ taking batches

    def _new_allowed(self) -> bool:
        return not self._hard_stop and len(self._inflight) < self.params.inflight_high_watermark

    def _sendable(self, limits: BatchLimits) -> int:
        if self._cancels and limits.cancels > 0:
            return min(len(self._cancels), limits.cancels)
        reduce_n = min(len(self._reduce), limits.reduce_only)
        new_n = min(len(self._new), max(0, limits.new - reduce_n)) if self._new_allowed() else 0
        return reduce_n + new_n

    def new_queued(self) -> int:
        """New orders queued (whether or not they may go now)."""
        return len(self._new)

    def next_wakeup_ns(self, now_ns: int, limits: BatchLimits = NO_LIMITS) -> int | None:
        """When ``next_batch`` could next return something (``now_ns`` if at once), or None if nothing
        is queued. Posts in flight are also due for ``expire`` at their timeout."""
        deadlines = [f.sent_ns + self._timeout_ns for f in self._inflight.values()]
        if self._sendable(limits) and len(self._inflight) < self.params.inflight_limit:
            if not self._inflight or self._last_send_ns is None:
                deadlines.append(now_ns)
            else:
                deadlines.append(max(now_ns, self._last_send_ns + self._interval_ns))
        return min(deadlines) if deadlines else None

    def next_batch(self, now_ns: int, limits: BatchLimits = NO_LIMITS) -> Batch | None:
        """Pop the next batch to send within ``limits``, or None (nothing sendable, in-flight limit, or
        coalescing)."""
        if len(self._inflight) >= self.params.inflight_limit:
            return None
        sendable = self._sendable(limits)
        if not sendable:
            return None
        cap = self.params.max_batch_size
        last = self._last_send_ns
        if self._inflight and last is not None and now_ns - last < self._interval_ns and sendable < cap:
            return None  # coalesce while posts are in flight
        if self._cancels and limits.cancels > 0:
            cancels = [self._cancels.popleft() for _ in range(min(cap, len(self._cancels), limits.cancels))]
            return Batch(kind="cancel", cancels=tuple(cancels))
        orders: list[QueuedOrder] = []
        reduce_cap = min(cap, limits.reduce_only)
        while self._reduce and len(orders) < reduce_cap:
            o = self._reduce.popleft()
            self._reduce_coins.discard(o.coin)
            orders.append(o)
        if self._new_allowed():
            new_cap = min(cap, max(len(orders), limits.new))  # each reduce-only order lowers ``new`` by one
            while self._new and len(orders) < new_cap:
                o = self._new.popleft()
                if 0 < o.valid_until_ns < now_ns:
                    self._expired.append(o)  # never sent late; ``drop_expired_new`` hands it back
                    continue
                orders.append(o)
        if not orders:
            return None
        return Batch(kind="order", orders=tuple(orders))

    def mark_sent(self, batch: Batch, post_id: int, now_ns: int) -> None:
        """The frame for ``batch`` was written: in-flight +1."""
        self._inflight[post_id] = _InFlight(batch=batch, sent_ns=now_ns)
        self._last_send_ns = now_ns

    def on_response(self, post_id: int) -> Batch | None:
        """A response arrived: in-flight −1. Returns the batch, or None for an unknown/expired post id."""
        f = self._inflight.pop(post_id, None)
        return f.batch if f is not None else None

    # ------------------------------------------------------------------ failures

    def on_send_failure(
        self, batch: Batch, *, spend_requeue: bool = True
    ) -> tuple[list[QueuedOrder], list[QueuedOrder | QueuedCancel]]:
        """Not ready / rate-limited / send failed / whole-request error: drop new orders (returned: release
        them), requeue reduce-only orders and cancels at the back. Also returns what exhausted its
        requeue budget (terminal: the caller reports it).

        ``spend_requeue=False`` (the transport refused the post before anything left the process:
        disconnected or over its budget) requeues without spending the requeue budget: waiting for a
        connection or for budget is not a failure of the order, and must not give a flatten up."""
        dropped: list[QueuedOrder] = []
        given_up: list[QueuedOrder | QueuedCancel] = []
        step = 1 if spend_requeue else 0
        for o in batch.orders:
            if not o.reduce_only:
                dropped.append(o)
            elif spend_requeue and o.requeues >= self.params.max_requeues:
                given_up.append(o)
            else:
                res = self.enqueue_reduce_only(msgspec.structs.replace(o, requeues=o.requeues + step))
                if not res.ok:
                    given_up.append(o)
        for c in batch.cancels:
            if spend_requeue and c.requeues >= self.params.max_requeues:
                given_up.append(c)
            else:
                res = self.enqueue_cancel(msgspec.structs.replace(c, requeues=c.requeues + step))
                if not res.ok:
                    given_up.append(c)
        return dropped, given_up

    def expire(self, now_ns: int) -> list[TimedOutPost]:
        """Posts unanswered for ``post_timeout_ms`` count as complete (in-flight −1): new orders released,
        cancels requeued (a cancel by oid is idempotent).

        Reduce-only orders are released too, NOT requeued: the outcome of a timed-out post is unknown (a
        slow answer, a cut connection: the order may well have executed), and sending it again would send
        its cloid twice: a second execution the fill dedup by cloid then drops (found by the fault tests:
        responses delayed past the timeout doubled every flatten). The exit watcher retries from the
        tracker's view with a new intent; the hard-stop flattener re-steps on its own."""
        out: list[TimedOutPost] = []
        for pid in [p for p, f in self._inflight.items() if now_ns - f.sent_ns >= self._timeout_ns]:
            f = self._inflight.pop(pid)
            reduce_only = tuple(o for o in f.batch.orders if o.reduce_only)
            rest = Batch(kind=f.batch.kind, orders=tuple(o for o in f.batch.orders if not o.reduce_only),
                         cancels=f.batch.cancels)
            dropped, given_up = self.on_send_failure(rest)
            out.append(
                TimedOutPost(post_id=pid, batch=f.batch, dropped_new=tuple(dropped), given_up=tuple(given_up),
                             released_reduce_only=reduce_only)
            )
        return out

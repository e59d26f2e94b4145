"""The hard-stop flatten sequence as a pure state machine.

On latch the executor drops queued entries (``BatchScheduler.set_hard_stop``), then this machine, on every
``step``: cancels every open order by oid and flattens every position with a reduce-only IOC at
mark ∓ slippage, repeating until positions AND open orders are both zero *at the exchange* — per the latest
position-tracker view (fed by REST resyncs and the user streams) — with no post of ours in flight.

Guards against:

* the seed giving up after 3 attempts 1 s apart: here the first ``flatten_fast_attempts`` are
  ``flatten_fast_interval_ms`` apart, then it keeps retrying every ``flatten_slow_interval_ms`` forever,
  with ``alert`` set on its progress so a human is called;
* stalling silently: with no synced position view nothing can be flattened; after
  ``flatten_unsynced_alert_ms`` of waiting a progress with ``alert`` goes out (and it keeps waiting);
* declaring victory on a stale view: "done" needs a zero view, nothing in flight, and that quiet state to
  have lasted ``flatten_fast_interval_ms`` since the last attempt or non-zero observation; and "done"
  reverts if a position or order shows up again (a late fill).
* spinning on dust: a position whose close the exchange refused as below its minimum order value
  (``DustBook``) is not retried while its size is unchanged; the sequence ends "done" with it listed in
  ``HardStopProgress.dust`` and ``alert`` set (a person must close it), a defined end instead of a loop.

Output per step: cancels and flatten orders to enqueue, plus a ``HardStopProgress`` when there is news.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal

import msgspec

from hip3.execution.batch import QueuedCancel, QueuedOrder
from hip3.execution.dust import DustBook
from hip3.execution.gates import MarketSpec
from hip3.execution.params import RiskParams
from hip3.hyperliquid.wire import floor_size, new_cloid, round_price
from hip3.messages import HardStopProgress, PositionSnapshot

__all__ = ["HardStopFlattener", "HardStopStep"]


class HardStopStep(msgspec.Struct, frozen=True):
    cancels: tuple[QueuedCancel, ...] = ()
    orders: tuple[QueuedOrder, ...] = ()
    progress: HardStopProgress | None = None
    problems: tuple[str, ...] = ()  # positions that could not be priced (no mark / no spec): alert


class HardStopFlattener:
    def __init__(
        self,
        params: RiskParams,
        specs: Mapping[str, MarketSpec],
        make_cloid: Callable[[], str] = new_cloid,
        dust: DustBook | None = None,
    ) -> None:
        self.params = params
        self.specs = dict(specs)
        self.dust = dust if dust is not None else DustBook()
        self._make_cloid = make_cloid
        self.epoch = 0
        self.active = False
        self.done = False
        self.attempts = 0
        self._next_attempt_ns = 0
        self._quiet_since_ns = 0
        self._slip = Decimal(str(params.flatten_slippage_bps)) / Decimal(10_000)
        self._fast_ns = params.flatten_fast_interval_ms * 1_000_000
        self._slow_ns = params.flatten_slow_interval_ms * 1_000_000
        self._unsynced_alert_ns = params.flatten_unsynced_alert_ms * 1_000_000
        self._unsynced_since_ns: int | None = None  # waiting for a synced view since
        self._unsynced_alert_at_ns = 0  # next unsynced alert due

    def start(self, epoch: int, now_ns: int) -> None:
        """Latch seen (a higher epoch restarts the sequence; the same epoch is a no-op)."""
        if self.active and epoch <= self.epoch:
            return
        self.epoch, self.active, self.done, self.attempts = epoch, True, False, 0
        self._next_attempt_ns = now_ns
        self._quiet_since_ns = now_ns
        self._unsynced_since_ns = None

    def reset(self) -> None:
        """Operator reset of the latch."""
        self.active = False
        self.done = False
        self._unsynced_since_ns = None

    def _progress(self, n_pos: int, n_oo: int, dust: tuple[str, ...] = ()) -> HardStopProgress:
        return HardStopProgress(
            epoch=self.epoch,
            positions=n_pos,
            open_orders=n_oo,
            attempts=self.attempts,
            done=self.done,
            alert=bool(dust) or (not self.done and self.attempts >= self.params.flatten_fast_attempts),
            dust=dust,
        )

    def _wait_for_sync(self, snapshot: PositionSnapshot | None, now_ns: int) -> HardStopStep:
        """No synced view: nothing can be decided, keep waiting; after ``flatten_unsynced_alert_ms`` call a
        human (and again every ``flatten_slow_interval_ms`` while it lasts) instead of stalling silently."""
        if self._unsynced_since_ns is None:
            self._unsynced_since_ns = now_ns
            self._unsynced_alert_at_ns = now_ns + self._unsynced_alert_ns
        if now_ns < self._unsynced_alert_at_ns:
            return HardStopStep()
        self._unsynced_alert_at_ns = now_ns + self._slow_ns
        waited_s = (now_ns - self._unsynced_since_ns) / 1e9
        n_pos = len(snapshot.positions) if snapshot is not None else 0
        n_oo = len(snapshot.open_orders) if snapshot is not None else 0
        progress = HardStopProgress(
            epoch=self.epoch, positions=n_pos, open_orders=n_oo, attempts=self.attempts, done=False, alert=True
        )
        what = "no position snapshot" if snapshot is None else "the position view is not synced"
        return HardStopStep(
            progress=progress, problems=(f"{what} after {waited_s:.0f} s: cannot flatten, still waiting",)
        )

    def step(
        self,
        *,
        snapshot: PositionSnapshot | None,
        marks: Mapping[str, Decimal],
        inflight_posts: int,
        now_ns: int,
    ) -> HardStopStep:
        """Advance the sequence. ``marks``: latest mark per coin; ``inflight_posts``: the executor's."""
        if not self.active:
            return HardStopStep()
        if snapshot is None or not snapshot.synced:
            return self._wait_for_sync(snapshot, now_ns)
        self._unsynced_since_ns = None
        positions = [p for p in snapshot.positions if not self.dust.is_stuck(p.coin)]
        n_pos, n_oo = len(positions), len(snapshot.open_orders)
        if n_pos or n_oo or inflight_posts:
            self._quiet_since_ns = max(self._quiet_since_ns, now_ns)
            if self.done:  # something reappeared (a late fill): resume
                self.done = False
                self._next_attempt_ns = now_ns
        elif not self.done:
            if now_ns - self._quiet_since_ns >= self._fast_ns or self.attempts == 0:
                self.done = True
                dust = self.dust.describe() if len(positions) < len(snapshot.positions) else ()
                return HardStopStep(progress=self._progress(0, 0, dust))
            return HardStopStep()
        else:
            return HardStopStep()
        if now_ns < self._next_attempt_ns or not (n_pos or n_oo):
            return HardStopStep()
        cancels = tuple(
            QueuedCancel(coin=o.coin, asset=o.asset, oid=o.oid, cloid=o.cloid) for o in snapshot.open_orders
        )
        orders: list[QueuedOrder] = []
        problems: list[str] = []
        self.attempts += 1
        for p in positions:
            spec, mark = self.specs.get(p.coin), marks.get(p.coin)
            if spec is None or mark is None or mark <= 0:
                problems.append(
                    f"{p.coin}: {'no spec' if spec is None else 'no mark'}; cannot price the flatten"
                )
                continue
            is_buy = not p.is_long
            raw = mark * (1 + self._slip) if is_buy else mark * (1 - self._slip)
            try:
                px = round_price(raw, spec.sz_decimals, is_buy)
            except ValueError:
                problems.append(f"{p.coin}: no valid price near {raw}")
                continue
            sz = floor_size(p.size, spec.sz_decimals)
            if sz <= 0:
                problems.append(f"{p.coin}: size {p.size} below one lot")
                continue
            orders.append(
                QueuedOrder(
                    cloid=self._make_cloid(),
                    intent_id=f"hs-{self.epoch}-{self.attempts}-{p.coin}",
                    coin=p.coin,
                    asset=spec.asset,
                    is_buy=is_buy,
                    px=px,
                    sz=sz,
                    reduce_only=True,
                    kind="hardstop",
                    reason="hard_stop",
                )
            )
        interval = self._fast_ns if self.attempts < self.params.flatten_fast_attempts else self._slow_ns
        self._next_attempt_ns = now_ns + interval
        self._quiet_since_ns = now_ns
        return HardStopStep(
            cancels=cancels,
            orders=tuple(orders),
            progress=self._progress(n_pos, n_oo),
            problems=tuple(problems),
        )

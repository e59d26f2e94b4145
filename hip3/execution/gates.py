"""Executor gates: every entry intent passes them in strict order, and the first failure wins.

The order (``ExecutorGates.evaluate``): input validation; hard stop; the soft gates (hourly drawdown,
correlation cooldown, burst, tilt guard, same-market re-entry delay, market health); positions synced
(the actor checks READY itself); a position hip3 does not own; per-market capacity; total exposure;
concurrency; a flatten in progress; no pyramiding; one pending entry per market; the action budget.
Flattens skip the entry gates (``check_flatten``) but not input validation.

What it guards against, each an incident of an earlier bot running this strategy:

* notional gates that passed when a mark price was missing: any missing mark (the order's market, a
  position's or a pending order's) rejects with ``MarketDataUnavailable`` (fail closed);
* caps enforced only in the detector's sizing, or silently clamped to the detector's own limit: every
  cap is enforced here, from ``ExecutorParams``, whatever size the detector chose; an order too big for
  the remaining capacity is shrunk to fit, and rejected if it would fall below the smallest shrunk
  notional worth sending or the exchange's $10 minimum (which the exchange refuses as
  ``minTradeNtlRejected``);
* a position far over its cap because a resync cleared the position caches before refilling them, so
  the gates saw no position and kept buying: the gates read positions from a ``PositionSnapshot``, and
  the book never publishes a cleared state mid-resync (see ``hip3.positions``);
* a filled entry whose position the snapshot does not show yet, one bus round trip later:
  ``FilledAwaitingSnapshot`` (``hip3.execution.entry_marks``) counts it in the per-market and total
  exposure and in the concurrency count, and the no-pyramiding gate treats it as a position;
* a burst gate that counted signals other gates then rejected: it is checked read-only, and the signal
  is recorded only after every gate passed;
* hundreds of signals and no trade, with no way to see why: every verdict carries a reason code and a
  one-line text meant for an INFO log line;
* bad input (unknown market, zero/negative size, a price or size off the tick rules, an expired intent)
  is refused with a clear reason, never an exception.

Pending notional is valued at the current mark and excludes reduce-only orders.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

import msgspec

from hip3.execution.entry_marks import FilledAwaitingSnapshot, PendingMarks
from hip3.execution.params import ExecutorParams
from hip3.execution.soft_gates import SoftGates
from hip3.hyperliquid.wire import floor_size, is_valid_price, is_valid_size
from hip3.messages import EntryIntent, FlattenIntent, PositionSnapshot
from hip3.positions.ownership import blocking_position

__all__ = ["ExecutorGates", "MarketSpec", "Verdict", "check_flatten", "check_order_input"]

Outcome = Literal["accepted", "rejected", "skipped"]


class MarketSpec(msgspec.Struct, frozen=True):
    """What the executor must know to trade a market, from ``meta(dex)`` and only from it.

    The asset id is the market's index in ``meta(dex).universe`` (an id taken from another list sent
    one market's orders to another), and ``sz_decimals`` comes from the same answer
    (``metaAndAssetCtxs`` leaves HIP-3 markets out, and a default rounded sizes to zero). A market
    without a spec is never traded.
    """

    coin: str
    asset: int
    sz_decimals: int


class Verdict(msgspec.Struct, frozen=True):
    """The outcome of the gates for one intent. ``sz`` is the (possibly shrunk) size to send."""

    outcome: Outcome
    reason: str  # a short code: "Queued", "HardStop", "MaxPositionPerMarket", ...
    detail: str
    intent_id: str
    coin: str
    sz: Decimal

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"

    def log_line(self) -> str:
        """One INFO line per verdict, so an operator sees why signals did or did not trade."""
        return (
            f"verdict {self.outcome} reason={self.reason} coin={self.coin} intent={self.intent_id} "
            f"sz={self.sz} {self.detail}".rstrip()
        )


def _verdict(
    outcome: Outcome, reason: str, intent_id: str, coin: str, sz: Decimal, detail: str = ""
) -> Verdict:
    return Verdict(outcome=outcome, reason=reason, detail=detail, intent_id=intent_id, coin=coin, sz=sz)


# No real order comes near this size or price; anything beyond is hostile or corrupt input (a fuzzed
# 1E+999999 raised decimal.Overflow in the caps' arithmetic and crashed the executor).
_MAX_INPUT = Decimal("1e15")


def check_order_input(
    *,
    intent_id: str,
    coin: str,
    asset: int,
    px: Decimal,
    sz: Decimal,
    valid_until_ns: int,
    specs: Mapping[str, MarketSpec],
    now_ns: int,
) -> Verdict | None:
    """Input validation shared by entries and flattens; a rejection verdict or None if the input is fine."""
    spec = specs.get(coin)
    if spec is None:
        return _verdict("rejected", "UnknownMarket", intent_id, coin, sz, f"no spec for {coin!r}")
    if asset != spec.asset:
        return _verdict("rejected", "AssetMismatch", intent_id, coin, sz, f"asset {asset} != {spec.asset}")
    if not isinstance(sz, Decimal) or not sz.is_finite() or sz <= 0:
        return _verdict("rejected", "InvalidSize", intent_id, coin, Decimal(0), f"size {sz!r} must be > 0")
    if sz > _MAX_INPUT:  # e.g. 1E+999999 passes the lot rule, then overflows the notional arithmetic
        return _verdict("rejected", "InvalidSize", intent_id, coin, Decimal(0), f"size {sz!r} out of range")
    if isinstance(px, Decimal) and px.is_finite() and abs(px) > _MAX_INPUT:
        return _verdict("rejected", "InvalidPrice", intent_id, coin, sz, f"price {px!r} out of range")
    if not is_valid_size(sz, spec.sz_decimals):
        return _verdict(
            "rejected",
            "InvalidSize",
            intent_id,
            coin,
            sz,
            f"size {sz} off the lot (szDecimals {spec.sz_decimals})",
        )
    if not isinstance(px, Decimal) or not is_valid_price(px, spec.sz_decimals):
        return _verdict("rejected", "InvalidPrice", intent_id, coin, sz, f"price {px!r} off the tick rules")
    if valid_until_ns < now_ns:
        return _verdict(
            "rejected",
            "Expired",
            intent_id,
            coin,
            sz,
            f"expired {(now_ns - valid_until_ns) // 1_000_000} ms ago",
        )
    return None


def check_flatten(intent: FlattenIntent, specs: Mapping[str, MarketSpec], now_ns: int) -> Verdict:
    """Flatten intents skip the entry gates (reduce-only orders keep flowing even under a latched hard
    stop) but not input validation."""
    bad = check_order_input(
        intent_id=intent.intent_id,
        coin=intent.coin,
        asset=intent.asset,
        px=intent.px,
        sz=intent.sz,
        valid_until_ns=intent.valid_until_ns,
        specs=specs,
        now_ns=now_ns,
    )
    if bad is not None:
        return bad
    if not intent.reduce_only:
        return _verdict(
            "rejected",
            "NotReduceOnly",
            intent.intent_id,
            intent.coin,
            intent.sz,
            "flatten must be reduce-only",
        )
    return _verdict(
        "accepted", "Queued", intent.intent_id, intent.coin, intent.sz, f"flatten reason={intent.reason}"
    )


class ExecutorGates:
    """The entry gate chain. Holds marks, pending marks and the action budget; positions come in per call."""

    def __init__(
        self,
        params: ExecutorParams,
        soft: SoftGates,
        specs: Mapping[str, MarketSpec],
        pending: PendingMarks | None = None,
    ) -> None:
        self.params = params
        self.soft = soft
        self.specs = dict(specs)
        self.pending = pending if pending is not None else PendingMarks()
        self.filled = FilledAwaitingSnapshot()
        self._marks: dict[str, Decimal] = {}
        self._budget_ns: deque[int] = deque()
        self._max_market = Decimal(str(params.max_notional_per_market_usd))
        self._max_total = Decimal(str(params.max_total_notional_usd))
        self._min_shrunk = Decimal(str(params.min_shrunk_notional_usd))
        self._min_exchange = Decimal(str(params.exchange_min_notional_usd))
        self._risk_frac = Decimal(str(params.risk_per_market_fraction))

    def set_mark(self, coin: str, mark_px: float | Decimal) -> None:
        """Latest mark price (from ``AssetCtx.mark_px``); 0 or negative means missing."""
        px = mark_px if isinstance(mark_px, Decimal) else Decimal(repr(mark_px))
        if px.is_finite() and px > 0:
            self._marks[coin] = px
        else:
            self._marks.pop(coin, None)

    def mark(self, coin: str) -> Decimal | None:
        return self._marks.get(coin)

    @property
    def marks(self) -> Mapping[str, Decimal]:
        """Every known mark (read-only view; the hard-stop flattener prices with the same marks)."""
        return MappingProxyType(self._marks)

    def market_cap_usd(self, balance_usd: Decimal | None) -> Decimal:
        """Per-market cap: static, or min(static, balance × fraction) with dynamic sizing and a balance."""
        cap = self._max_market
        if self.params.dynamic_sizing and balance_usd is not None and balance_usd > 0:
            cap = min(cap, balance_usd * self._risk_frac)
        return cap

    def evaluate(
        self,
        intent: EntryIntent,
        *,
        snapshot: PositionSnapshot | None,
        hard_stop_latched: bool,
        now_ns: int,
        now_ms: int,
        balance_usd: Decimal | None = None,
        flatten_in_flight: Collection[str] = (),
    ) -> Verdict:
        """Run every gate in the module's order. An accepted verdict has marked the market pending and
        consumed budget; the caller must ``release`` it if the order does not get enqueued."""
        intent_id, coin = intent.intent_id, intent.coin
        bad = check_order_input(
            intent_id=intent_id,
            coin=coin,
            asset=intent.asset,
            px=intent.px,
            sz=intent.sz,
            valid_until_ns=intent.valid_until_ns,
            specs=self.specs,
            now_ns=now_ns,
        )
        if bad is not None:
            return bad
        if intent.reduce_only:
            return _verdict(
                "rejected", "InvalidIntent", intent_id, coin, intent.sz, "entry intent must not be reduce-only"
            )
        sz = intent.sz
        # Hard stop.
        if hard_stop_latched:
            return _verdict("rejected", "HardStop", intent_id, coin, sz)
        # Soft gates: drawdown, correlation cooldown, burst, tilt, re-entry delay, market health.
        soft_reason = self.soft.check(coin, intent.edge_bps, now_ms)
        if soft_reason is not None:
            code, _, detail = soft_reason.partition(": ")
            return _verdict("rejected", code, intent_id, coin, sz, detail)
        # READY is the caller's; positions must at least be synced: trading on an empty book after a
        # failed start-up sync would see no position anywhere.
        if snapshot is None or not snapshot.synced:
            return _verdict("rejected", "PositionsNotSynced", intent_id, coin, sz)
        # hip3.positions.ownership: a position hip3 leaves alone blocks its market (and is not in the caps below)
        if (manual := blocking_position(snapshot, coin)) is not None:
            return _verdict("skipped", "ManualPositionOpen", intent_id, coin, sz, f"{manual.size} held outside hip3")
        self.filled.observe(snapshot)
        positions = {position.coin: position for position in snapshot.positions}
        # Filled entries the snapshot does not show yet count as positions (caps, concurrency, no
        # pyramiding).
        unseen = [(filled_coin, filled) for filled_coin, filled in self.filled.items() if filled_coin not in positions]
        # Per-market capacity.
        mark = self._marks.get(coin)
        if mark is None:
            return _verdict("rejected", "MarketDataUnavailable", intent_id, coin, sz, f"no mark for {coin}")
        spec = self.specs[coin]
        pos = positions.get(coin)
        awaiting = self.filled.get(coin) if pos is None else None
        pos_ntl = pos.size * mark if pos is not None else Decimal(0)
        if awaiting is not None:
            pos_ntl = awaiting.sz * mark
        pending_ntl = sum((pending_sz * mark for pending_coin, pending_sz in self.pending.items()
                           if pending_coin == coin), Decimal(0))
        cap = self.market_cap_usd(balance_usd)
        available = cap - pos_ntl - pending_ntl
        if available <= 0:
            return _verdict("rejected", "MaxPositionPerMarket", intent_id, coin, sz, f"available ${available:.2f}")
        if sz * mark > available:
            sz = floor_size(available / mark, spec.sz_decimals)
            if sz * mark < self._min_shrunk:
                return _verdict(
                    "rejected",
                    "MaxPositionPerMarket",
                    intent_id,
                    coin,
                    sz,
                    f"shrunk notional ${sz * mark:.2f} < ${self._min_shrunk}",
                )
        if sz * intent.px < self._min_exchange or sz * mark < self._min_exchange:
            return _verdict(
                "rejected",
                "BelowMinNotional",
                intent_id,
                coin,
                sz,
                f"notional ${sz * intent.px:.2f} < exchange minimum ${self._min_exchange}",
            )
        # Total exposure (every mark required).
        total = sz * mark
        for position in snapshot.positions:
            other_mark = self._marks.get(position.coin)
            if other_mark is None:
                return _verdict(
                    "rejected", "MarketDataUnavailable", intent_id, coin, sz, f"no mark for position {position.coin}"
                )
            total += position.size * other_mark
        for filled_coin, filled in unseen:
            other_mark = self._marks.get(filled_coin)
            if other_mark is None:
                return _verdict(
                    "rejected", "MarketDataUnavailable", intent_id, coin, sz, f"no mark for filled {filled_coin}"
                )
            total += filled.sz * other_mark
        for pending_coin, pending_sz in self.pending.items():
            other_mark = self._marks.get(pending_coin)
            if other_mark is None:
                return _verdict(
                    "rejected", "MarketDataUnavailable", intent_id, coin, sz, f"no mark for pending {pending_coin}"
                )
            total += pending_sz * other_mark
        if total >= self._max_total:
            return _verdict(
                "rejected", "MaxPositionTotal", intent_id, coin, sz, f"total ${total:.2f} >= ${self._max_total}"
            )
        # Concurrency (plain or correlation-weighted).
        if self.soft.params.correlation_concurrency.enabled:
            held = [(position.coin, position.is_long) for position in snapshot.positions] + [
                (filled_coin, filled.is_long) for filled_coin, filled in unseen
            ]
            reason = self.soft.check_concurrency(coin, intent.is_buy, held)
            if reason is not None:
                code, _, detail = reason.partition(": ")
                return _verdict("rejected", code, intent_id, coin, sz, detail)
        elif len(snapshot.positions) + len(unseen) >= self.params.max_concurrent_positions:
            return _verdict(
                "rejected",
                "MaxConcurrentPositions",
                intent_id,
                coin,
                sz,
                f"{len(snapshot.positions) + len(unseen)} open",
            )
        # A flatten in progress.
        if coin in snapshot.pending_flatten or coin in flatten_in_flight:
            return _verdict("skipped", "FlattenInProgress", intent_id, coin, sz)
        # No pyramiding (a fill the snapshot does not show yet is a position too).
        if pos is not None:
            return _verdict("skipped", "AlreadyHasPosition", intent_id, coin, sz)
        if awaiting is not None:
            return _verdict("skipped", "AlreadyHasPosition", intent_id, coin, sz, "filled, awaiting snapshot")
        # One pending entry per market (atomic here: single-threaded).
        if not self.pending.try_mark(coin, intent_id, sz):
            return _verdict("skipped", "PendingOrderExists", intent_id, coin, sz)
        # Action budget.
        window_ns = self.params.action_budget_window_ms * 1_000_000
        while self._budget_ns and self._budget_ns[0] <= now_ns - window_ns:
            self._budget_ns.popleft()
        if len(self._budget_ns) >= self.params.action_budget_orders:
            self.pending.release(intent_id)
            return _verdict("skipped", "BudgetExhausted", intent_id, coin, sz)
        self._budget_ns.append(now_ns)
        # Record the burst signal, only now that every gate passed.
        self.soft.record_executed(coin, now_ms)
        detail = f"shrunk from {intent.sz}" if sz != intent.sz else ""
        return _verdict("accepted", "Queued", intent_id, coin, sz, detail)

    def release(self, intent_id: str) -> bool:
        """Release the pending mark of an entry order (terminal state, drop, queue full); idempotent."""
        return self.pending.release(intent_id)

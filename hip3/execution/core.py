"""The executor's decisions in one object, so the actor is a thin loop: gates → queues → journal → send →
responses/updates/timeouts → bus events, with the hard-stop triggers fed from the same events.

Invariants held here (each tested in ``tests/execution/test_core.py``):

* An intent is never sent twice: an intent id already live or in the durable ``SentIntentJournal`` is
  dropped (``DuplicateIntent``), and ``prepare_send`` journals (written to the kernel) before the frame
  is written; the fsync follows (``journal.sync()``) unless ``journal_fsync_before_send``.
* Pending marks are released exactly once per entry order, on its terminal state, whichever path ends it
  (post response, orderUpdate, send failure, timeout, hard-stop drop, queue full, a whole-request
  error): counted twice, a market stayed "pending" for good.
* Flatten failures, non-benign rejections and entry slippage reach the ``RiskMonitor``, each
  failure counted once; an operator reset of the hard stop re-arms it (``RiskMonitor.reset``).
* A post the transport refused before anything left the process (not connected, over its budget) is
  not a failure: reduce-only orders and cancels are requeued without spending their requeue budget.
* A filled entry keeps its market blocked until the position snapshot shows the fill
  (``FilledAwaitingSnapshot``), so a second entry cannot slip in during the bus round trip.
* No entry without the exchange's market terms (fees and open-interest caps, ``TermsView``): unknown or
  too old terms, and a market at its open-interest cap, refuse the entry before signing with their own
  reason (``MarketTermsUnknown``, ``MarketTermsStale``, ``OpenInterestCap``). An exchange refusal for the
  cap blocks entries in that market for a while and never counts toward the hard stop. Exits are never
  refused for the cap; while a market is at its cap they are priced no more aggressively than the oracle
  (the exchange refuses more aggressive ones there; ``hip3.account.market_terms.UNVERIFIED``).
* What leaves, and when, is admitted by ``Admission`` (``hip3.execution.admission``): the address request
  budget with a reserve for flattens and cancels, the pacing of entry posts within the WebSocket message
  budget, the backoff after a refused action; ``shed_entry`` refuses an entry at intake before the gates.
* A reduce-only order refused as below the exchange's minimum value marks its position as dust
  (``dust``, ``hip3.execution.dust``): the hard-stop flattener stops retrying it until it changes.

The actor's loop, roughly::

    if core.shed_entry(intent, now_ns): count it; return   # cheap refusals first, no log line each
    verdict, events = core.submit_entry(intent, snapshot=..., now_ns=..., now_ms=..., balance_usd=...)
    log.info(verdict.log_line()); publish(events)
    while (batch := core.next_batch(now_ns)) is not None:
        if not ready: publish(core.on_send_failure(batch, "not ready", now_ns)); break
        core.prepare_send(batch, now_ms, sync=False)  # journal line written BEFORE the frame
        post_id, nonce = sign_and_write(batch)         # the transport's business (refused: transient=True)
        publish(core.on_sent(batch, post_id, nonce, now_ns))
    core.journal.sync()                                # fsync once, after the frames
    publish(core.on_post_response(post_id, post_answer(response), recv_ns, now_ms))
    publish(core.expire(now_ns, now_ms)); reason = core.take_hardstop_request()
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

import msgspec

from hip3.account.market_terms import UNVERIFIED, MarketTermsParams, TermsView, clamp_to_oracle
from hip3.execution.admission import Admission
from hip3.execution.batch import Batch, BatchScheduler, QueuedOrder
from hip3.execution.dust import DustBook
from hip3.execution.gates import ExecutorGates, MarketSpec, Verdict, check_flatten
from hip3.execution.hardstop import HardStopStep
from hip3.execution.journal import SentIntentJournal, valid_id
from hip3.execution.orders import OrderTracker
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.execution.risk import RiskMonitor
from hip3.execution.soft_gates import SoftGates
from hip3.hyperliquid.errors import is_oi_cap_rejection, is_rate_limit_error
from hip3.hyperliquid.responses import ExchangeResponse
from hip3.hyperliquid.wire import new_cloid
from hip3.messages import (
    EntryIntent,
    FlattenIntent,
    Msg,
    OrderFilled,
    OrderRejected,
    OrderUpdate,
    PositionClosed,
    PositionSnapshot,
    RequestBudgetReading,
)
from hip3.positions.ownership import HIP3

__all__ = ["ExecutionCore"]

log = logging.getLogger(__name__)


class ExecutionCore:
    def __init__(
        self,
        params: ExecutorParams,
        risk_params: RiskParams,
        soft_params: SoftGateParams,
        specs: Mapping[str, MarketSpec],
        journal: SentIntentJournal,
        make_cloid: Callable[[], str] = new_cloid,
        terms: TermsView | None = None,
    ) -> None:
        self.params = params
        self.specs = dict(specs)
        self.soft = SoftGates(soft_params)
        self.gates = ExecutorGates(params, self.soft, self.specs)
        self.scheduler = BatchScheduler(params)
        self.admission = Admission(params)
        self.tracker = OrderTracker(on_terminal=self._on_terminal)
        self.risk = RiskMonitor(risk_params)
        self.journal = journal
        self._make_cloid = make_cloid
        self.hard_stop_latched = False
        self._hardstop_request: str | None = None
        self._recent: OrderedDict[str, QueuedOrder] = OrderedDict()  # terminal orders, for risk feeding
        self.dropped_unmatched = 0
        self._snapshot: PositionSnapshot | None = None
        self.oracles: dict[str, float] = {}  # coin -> latest oracle price (the slippage trigger)
        # The exchange's fees and open-interest caps; none known (the default) refuses every entry.
        self.terms = terms if terms is not None else TermsView(MarketTermsParams(), self.specs)
        self.dust = DustBook()

    def on_snapshot(self, snapshot: PositionSnapshot) -> None:
        """Every position snapshot the executor receives (clears "filled, awaiting snapshot" blocks)."""
        self.gates.filled.observe(snapshot)
        self._snapshot = snapshot
        if snapshot.synced:
            self.dust.observe_all((p.coin, p.size) for p in snapshot.positions)

    # ------------------------------------------------------------------ intake

    def shed_entry(self, intent: EntryIntent, now_ns: int) -> str:
        """Why an entry intent is refused at intake, before the gates ("" if it goes on to them): the
        exchange backoff, the request budget (unknown, or down to the flattens' reserve), an expired
        intent, a market that already has an entry pending, or a full queue (overload). Each check is a
        few dictionary or integer operations: under a flood the gates and the verdict's log line (about
        70 µs an intent) are never reached. Counted in ``admission.shed``."""
        reason = self.admission.entry_refusal(now_ns, self.scheduler.new_queued())
        if not reason:
            if intent.valid_until_ns < now_ns:
                reason = "Expired"
            elif self.gates.pending.is_pending(intent.coin):
                reason = "PendingOrderExists"
            else:
                return ""
        self.admission.count_shed(reason)
        return reason

    def on_budget_reading(self, reading: RequestBudgetReading) -> bool:
        """The exchange's reading of the address request budget (the position tracker's); False if stale."""
        return self.admission.on_reading(reading)

    def _duplicate(self, intent_id: str) -> bool:
        return intent_id in self.journal or self.tracker.has_intent(intent_id)

    def submit_entry(
        self,
        intent: EntryIntent,
        *,
        snapshot: PositionSnapshot | None,
        now_ns: int,
        now_ms: int,
        balance_usd: Decimal | None = None,
    ) -> tuple[Verdict, list[Msg]]:
        """Gate an entry intent and queue its IOC. Returns the verdict (log it at INFO) and events."""
        if not valid_id(intent.intent_id):
            return Verdict("rejected", "InvalidIntentId", "", intent.intent_id, intent.coin, intent.sz), []
        if self._duplicate(intent.intent_id):
            return Verdict("rejected", "DuplicateIntent", "", intent.intent_id, intent.coin, intent.sz), []
        if not self.hard_stop_latched:  # (the gates name the hard stop first)
            # The day's loss reached its cap, or the saved loss limits were unusable; then the market terms
            # (fees unknown or stale, open interest at its cap).
            block = self.risk.entry_block(now_ms) or self.terms.entry_block(intent.coin, now_ms)
            if block is not None:
                return Verdict("rejected", block[0], block[1], intent.intent_id, intent.coin, intent.sz), []
        verdict = self.gates.evaluate(
            intent,
            snapshot=snapshot,
            hard_stop_latched=self.hard_stop_latched,
            now_ns=now_ns,
            now_ms=now_ms,
            balance_usd=balance_usd,
            flatten_in_flight=self.tracker.flatten_in_flight(),
        )
        if not verdict.accepted:
            return verdict, []
        order = QueuedOrder(
            cloid=self._make_cloid(),
            intent_id=intent.intent_id,
            coin=intent.coin,
            asset=intent.asset,
            is_buy=intent.is_buy,
            px=intent.px,
            sz=verdict.sz,
            reduce_only=False,
            kind="entry",
            origin_recv_ns=intent.origin_recv_ns,
            edge_bps=intent.edge_bps,
            valid_until_ns=intent.valid_until_ns,
            fee_bps=intent.taker_fee_bps,
            fee_source=intent.fee_source,
        )
        res = self.scheduler.enqueue_new(order)
        if not res.ok:
            self.gates.release(intent.intent_id)
            return Verdict("rejected", res.reason, "", intent.intent_id, intent.coin, verdict.sz), []
        self.tracker.add(order)
        return verdict, []

    def exit_px(self, coin: str, is_buy: bool, px: Decimal, now_ms: int | None) -> Decimal:
        """A reduce-only order's price: as given, or no more aggressive than the oracle while the market is
        at its open-interest cap (the exchange refuses more aggressive orders there)."""
        spec = self.specs.get(coin)
        if (spec is None or not UNVERIFIED["too_aggressive_applies_to_reduce_only"]
                or self.terms.at_cap_reason(coin, now_ms) is None):
            return px
        return clamp_to_oracle(px, is_buy, self.oracles.get(coin, 0.0), spec.sz_decimals)

    def submit_flatten(self, intent: FlattenIntent, *, now_ns: int, now_ms: int | None = None) -> Verdict:
        """Validate and queue a reduce-only flatten (flows while the hard stop is latched)."""
        if not valid_id(intent.intent_id):
            return Verdict("rejected", "InvalidIntentId", "", intent.intent_id, intent.coin, intent.sz)
        if self._duplicate(intent.intent_id):
            return Verdict("rejected", "DuplicateIntent", "", intent.intent_id, intent.coin, intent.sz)
        verdict = check_flatten(intent, self.specs, now_ns)
        if not verdict.accepted:
            return verdict
        order = QueuedOrder(
            cloid=self._make_cloid(),
            intent_id=intent.intent_id,
            coin=intent.coin,
            asset=intent.asset,
            is_buy=intent.is_buy,
            px=self.exit_px(intent.coin, intent.is_buy, intent.px, now_ms),
            sz=intent.sz,
            reduce_only=True,
            kind="flatten",
            reason=intent.reason,
            origin_recv_ns=intent.origin_recv_ns,
        )
        if intent.coin in self.tracker.flatten_in_flight():
            return Verdict("skipped", "FlattenInProgress", "", intent.intent_id, intent.coin, intent.sz)
        res = self.scheduler.enqueue_reduce_only(order)
        if not res.ok:
            return Verdict("rejected", res.reason, "", intent.intent_id, intent.coin, intent.sz)
        if res.reason == "DuplicateNoop":
            return Verdict("skipped", "DuplicateNoop", "", intent.intent_id, intent.coin, intent.sz)
        self.tracker.add(order)
        return verdict

    def submit_hardstop(self, step: HardStopStep, now_ms: int | None = None) -> None:
        """Queue a hard-stop step's cancels and reduce-only orders."""
        for c in step.cancels:
            self.scheduler.enqueue_cancel(c)
        for o in step.orders:
            if o.coin in self.tracker.flatten_in_flight():
                continue  # one reduce-only per market in flight (a second is refused as "would increase")
            px = self.exit_px(o.coin, o.is_buy, o.px, now_ms)
            if px != o.px:
                o = msgspec.structs.replace(o, px=px)
            if self.scheduler.enqueue_reduce_only(o).reason == "Queued":
                self.tracker.add(o)

    def drop_expired_entries(self, now_ns: int) -> list[Msg]:
        """Queued entries past their intent's validity (the transport could not send them in time):
        dropped, released, reported benign ("expired before sending"). Never sent late."""
        dropped = self.scheduler.drop_expired_new(now_ns)
        if not dropped:
            return []
        return list(self.tracker.fail(dropped, "expired before sending", now_ns, benign=True))

    def drop_queued_entries(self, why: str, now_ns: int) -> list[Msg]:
        """Drop every queued new order (released, reported benign), e.g. when the actor stops sending for
        a while: an entry queued now would leave late, at a stale price."""
        return list(self.tracker.fail(self.scheduler.drop_new(), why, now_ns, benign=True))

    def set_hard_stop(self, latched: bool, now_ns: int) -> list[Msg]:
        """Apply the latch: queued new orders are dropped (released) and reported. Unlatching (the
        operator's reset) re-arms every hard-stop trigger (``RiskMonitor.reset``)."""
        self.hard_stop_latched = latched
        if not latched:
            self.risk.reset()
        dropped = self.scheduler.set_hard_stop(latched)
        return list(self.tracker.fail(dropped, "dropped: hard stop", now_ns, benign=True))

    # ------------------------------------------------------------------ sending

    def next_batch(self, now_ns: int) -> Batch | None:
        """The next post, within what admission allows now."""
        return self.scheduler.next_batch(now_ns, self.admission.limits(now_ns))

    def next_wakeup_ns(self, now_ns: int) -> int | None:
        """When to pump again: the scheduler's next batch, or when admission lets a queued one go."""
        limits = self.admission.limits(now_ns)
        wake = self.scheduler.next_wakeup_ns(now_ns, limits)
        if sum(self.scheduler.queued()):
            later = self.admission.next_change_ns(now_ns)
            if later is not None and (wake is None or later < wake):
                wake = later
        return wake

    def prepare_send(self, batch: Batch, now_ms: int, *, sync: bool = True, required: bool = True) -> None:
        """Journal the batch's intents; call right BEFORE writing the signed frame.

        ``sync=False`` writes the lines to the kernel (which survives the executor's death, the case the
        journal exists for) and leaves the fsync to ``journal.sync()`` after the frame is written, off
        the tick-to-trade path (see ``ExecutorParams.journal_fsync_before_send``). ``required`` (a batch
        with an entry): a line the disk refuses raises ``JournalWriteError`` and the batch must not be
        sent; otherwise (reduce-only orders) the batch leaves all the same (``SentIntentJournal``)."""
        self.journal.record(((o.intent_id, o.cloid) for o in batch.orders), now_ms, sync=sync, required=required)

    def on_sent(self, batch: Batch, post_id: int, nonce: int, now_ns: int) -> list[Msg]:
        self.scheduler.mark_sent(batch, post_id, now_ns)
        self.admission.on_sent(len(batch), cancels=batch.kind == "cancel",
                               entries=any(not o.reduce_only for o in batch.orders), now_ns=now_ns)
        return list(self.tracker.sent(batch, post_id, nonce, now_ns))

    def on_send_failure(
        self, batch: Batch, why: str, now_ns: int, now_ms: int = 0, *, transient: bool = False
    ) -> list[Msg]:
        """Not ready / rate-limited / send failed: drop new orders, requeue reduce-only and cancels.

        ``transient``: the transport refused the post before anything left the process (not connected,
        over its message or in-flight budget). Reduce-only orders and cancels are requeued WITHOUT
        spending their requeue budget, so nothing is given up and no flatten failure is counted (a
        disconnect is not a hard-stop trigger); the caller stops sending until its next tick or reconnect.
        """
        return self._cleanup(batch, f"send_failed: {why}", now_ns, now_ms, benign=True, spend=not transient)

    def _cleanup(
        self, batch: Batch, reason: str, now_ns: int, now_ms: int, *, benign: bool, spend: bool = True
    ) -> list[Msg]:
        dropped, given_up = self.scheduler.on_send_failure(batch, spend_requeue=spend)
        events: list[Msg] = list(self.tracker.fail(dropped, reason, now_ns, benign=benign))
        for item in given_up:
            if isinstance(item, QueuedOrder):
                events.extend(self.tracker.fail([item], "requeue_exhausted", now_ns, benign=False))
            else:
                log.warning("cancel of oid %s given up after %d requeues", item.oid, item.requeues)
        self._feed_risk(events, now_ms)
        return events

    # ------------------------------------------------------------------ answers

    def on_post_response(self, post_id: int, response: ExchangeResponse, recv_ns: int, now_ms: int) -> list[Msg]:
        """The exchange's answer to a post, parsed once by the transport (``orders.post_answer``). Unknown
        post ids are counted, not raised."""
        batch = self.scheduler.on_response(post_id)
        if batch is None:
            self.dropped_unmatched += 1
            log.warning("post response for unknown or timed-out post id %s dropped", post_id)
            return []
        self.admission.budget.resolve(len(batch), now_ms)  # the exchange's count now holds it (or refused it)
        events, whole_error = self.tracker.apply_post_response(batch, response, recv_ns)
        if whole_error is not None:
            log.warning("whole-request error for post %s: %s", post_id, whole_error)
            if is_rate_limit_error(whole_error):
                self.admission.budget.on_rate_limit_error(whole_error, len(batch), recv_ns)  # where it stands
                # The account's request budget, not the orders: nothing executed, no rejection or flatten
                # failure is counted and reduce-only orders keep their requeue budget (the actor backs off).
                return self._cleanup(batch, f"exchange: {whole_error}", recv_ns, now_ms, benign=True, spend=False)
            return self._cleanup(batch, f"exchange: {whole_error}", recv_ns, now_ms, benign=False)
        self._note_entry_fills(events)
        self._feed_risk(events, now_ms)
        return events

    def on_order_update(self, upd: OrderUpdate, now_ms: int) -> list[Msg]:
        events = self.tracker.on_order_update(upd)
        self._feed_risk(events, now_ms)
        return events

    def expire(self, now_ns: int, now_ms: int) -> list[Msg]:
        """Post timeouts: new orders released (``OrderRejected`` "timeout"); reduce-only orders released as
        outcome unknown (benign ``OrderRejected``, so the exit's claim is freed; never re-sent with the same
        cloid, see ``BatchScheduler.expire``), each counted once as a flatten failure if the latest snapshot
        still holds its position; cancels requeued."""
        events: list[Msg] = []
        for t in self.scheduler.expire(now_ns):
            self.admission.budget.resolve(len(t.batch), now_ms)  # past its expiresAfter: counted or never
            events.extend(self.tracker.fail(t.dropped_new, "timeout", now_ns, benign=False))
            for o in t.released_reduce_only:
                # A flatten whose position is gone did its job, however late its answer (a slow exchange
                # must not latch the stop through closed positions); an open or unknown one failed.
                if not self._position_open(o.coin):
                    continue
                reason = self.risk.on_flatten_failed("timeout")
                if reason is not None:
                    self._hardstop_request = self._hardstop_request or reason
            events.extend(self.tracker.fail(t.released_reduce_only, "timeout: outcome unknown", now_ns, benign=True))
            for item in t.given_up:
                if isinstance(item, QueuedOrder):
                    events.extend(self.tracker.fail([item], "requeue_exhausted", now_ns, benign=False))
        self._feed_risk(events, now_ms)
        return events

    def on_position_closed(self, closed: PositionClosed, now_ms: int) -> None:
        self.gates.filled.on_position_closed(closed.coin)
        if closed.owner != HIP3:  # an operator's trade (hip3.positions.ownership): not hip3's losses or cooldowns
            return
        if not self.risk.first_count(closed):
            return  # counted already (read back from the recorder's journal at start, see risk_catchup)
        self.soft.on_position_closed(closed, now_ms)
        reason = self.risk.on_position_closed(closed, now_ms)
        if reason is not None:
            self._hardstop_request = self._hardstop_request or reason

    def take_hardstop_request(self) -> str | None:
        """A hard-stop reason to send to the supervisor (once), or None."""
        reason, self._hardstop_request = self._hardstop_request, None
        return reason

    # ------------------------------------------------------------------ internals

    def _position_size(self, coin: str) -> Decimal | None:
        snap = self._snapshot
        return None if snap is None else next((p.size for p in snap.positions if p.coin == coin), None)

    def _position_open(self, coin: str) -> bool:
        """Does the latest snapshot hold a position in ``coin``? (No snapshot yet: assume it does.)"""
        snap = self._snapshot
        return snap is None or any(p.coin == coin for p in snap.positions)

    def _on_terminal(self, order: QueuedOrder, filled_sz: Decimal) -> None:
        if not order.reduce_only:
            self.gates.release(order.intent_id)
            if filled_sz > 0:  # the market stays blocked until the snapshot shows the position
                self.gates.filled.on_entry_filled(order.coin, order.is_buy, filled_sz)
        self._recent[order.cloid] = order
        while len(self._recent) > 10_000:
            self._recent.popitem(last=False)

    def _note_entry_fills(self, events: Iterable[Msg]) -> None:
        """A post total for an entry that orderUpdates had already ended (the IOC's "canceled" can beat
        the post response): the fill still blocks the market until the snapshot shows it."""
        for ev in events:
            if isinstance(ev, OrderFilled) and not ev.reduce_only:
                self.gates.filled.on_entry_filled(ev.coin, ev.is_buy, ev.total_sz)

    def _feed_risk(self, events: Iterable[Msg], now_ms: int) -> None:
        for ev in events:
            reason = None
            if isinstance(ev, OrderRejected):
                o = self._recent.get(ev.cloid)
                is_flatten = o is not None and o.kind in ("flatten", "hardstop")
                if ev.reason.startswith("exchange:") and is_oi_cap_rejection(ev.reason):
                    self.terms.on_cap_refusal(ev.coin, now_ms)  # before the next poll says so
                if ev.reduce_only:
                    self.dust.on_rejected(ev.coin, self._position_size(ev.coin), ev.reason)
                reason = self.risk.on_order_rejected(ev, now_ms, is_flatten=is_flatten)
            elif isinstance(ev, OrderFilled) and not ev.reduce_only:
                o = self._recent.get(ev.cloid)
                if o is not None and o.kind == "entry":
                    reason = self.risk.on_entry_filled(o.edge_bps, ev.avg_px, ev.is_buy,
                                                       self.oracles.get(ev.coin, 0.0))
            if reason is not None and self._hardstop_request is None:
                self._hardstop_request = reason

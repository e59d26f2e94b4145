"""What the executor takes in, without sockets: intents (gated, then sent at once through ``SendPath``),
the state it keeps from the bus (marks, the exchange's clock, positions, order updates, closes, market
terms, the request budget), and the hard stop's flatten sequence that this state drives.

* Intents are read in batches and the batch's flattens handled before its entries: a flood of entries never
  holds a flatten back for more than one batch.
* An entry is refused at once while not READY or on an entry condition (dex collateral, clock skew); else
  shed at intake by admission (``ExecutionCore.shed_entry``: counted by reason, summarised once a second,
  never a line each) before the gates.
* Every verdict is logged at INFO (with verdicts at DEBUG, hundreds of signals and no trade could not be
  explained) at the end of the loop turn, after the frame (a JSON line before the send cost about 65 µs of
  the idle path), at most ``verdict_log_lines_per_s``; the rest are counted and summarised.
* A refused flatten (expired, bad input, queue full) is answered with a benign ``OrderRejected`` so the exit
  watcher's claim is released now, not after its expiry; "skipped" means a flatten is already in flight.
* Hard stop (``hardstop_step``, on every snapshot and answer and on the actor's short timer while the
  flattener is active): cancel every open order by oid, flatten every position reduce-only IOC at mark +-
  slippage, until the tracker's view shows no position and no open order; progress to the supervisor and
  an alert when it cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hip3 import clock
from hip3.execution.admission import LogBudget
from hip3.execution.gates import Verdict
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.send_path import SendPath, now_ms
from hip3.messages import (
    AssetCtx,
    EntryIntent,
    ExchangeClock,
    FlattenIntent,
    MarketTerms,
    Message,
    OrderRejected,
    OrderUpdate,
    PositionClosed,
    PositionSnapshot,
    RequestBudgetReading,
)

__all__ = ["Intake"]

_RECV_MEMORY = 20_000  # intent receipt times kept for the latency samples (halved when full)


class Intake:
    def __init__(self, send: SendPath, flattener: HardStopFlattener,
                 defer: Callable[[Callable[[], None]], None]) -> None:
        self.send = send
        self.core = send.core
        self.host = send.host
        self.flattener = flattener
        self.defer = defer  # run at the end of the loop turn (the verdict lines)
        self.verdict_log = LogBudget(send.params.verdict_log_lines_per_s)
        send.step_hardstop = self.hardstop_step

    # ------------------------------------------------------------------ intents

    def on_intents(self, msgs: Iterable[Message]) -> None:
        """A batch of intents: its flattens first, then its entries."""
        batch = list(msgs)
        for m in batch:
            if isinstance(m, FlattenIntent):
                self.on_intent(m)
        for m in batch:
            if not isinstance(m, FlattenIntent):
                self.on_intent(m)

    def on_intent(self, msg: Message) -> None:
        """Gate the intent and, if accepted, send it at once (when the scheduler allows); the verdict's
        line, the counters and the events come AFTER the frame is written."""
        recv_ns = clock.monotonic_ns()
        send, core, host = self.send, self.core, self.host
        if isinstance(msg, EntryIntent):
            conditions = send.conditions
            problem = conditions.problem() if conditions is not None else ""
            if not host.ready or problem:
                why = ("NotReady", host.ready_detail) if not host.ready else ("EntryConditions", problem)
                host.count("entry_intents")
                host.count("entry_rejected_not_ready" if not host.ready else "entry_rejected_conditions")
                if self.verdict_log.allow(why[0], recv_ns):
                    host.log.info("verdict", line=f"verdict rejected reason={why[0]} coin={msg.coin} "
                                  f"intent={msg.intent_id} sz={msg.sz} {why[1]}")
                return
            shed = core.shed_entry(msg, recv_ns)
            if shed:  # counted by reason, summarised once a second (the actor's stats)
                host.count("entry_intents")
                host.count(f"entry_shed:{shed}")
                return
            verdict, events = core.submit_entry(
                msg, snapshot=send.snapshot, now_ns=recv_ns, now_ms=now_ms(), balance_usd=None
            )
            if verdict.accepted:
                send.stages.add("stage_gates", clock.monotonic_ns() - recv_ns)
                send.recv_ns[msg.intent_id] = (recv_ns, msg.created_ns)
                send.pump()
            self.log_verdict(verdict)
            host.count("entry_intents")
            host.count(f"entry_{verdict.outcome}")
            host.count(f"entry_{verdict.outcome}:{verdict.reason}")
            host.publish_events(events)
        elif isinstance(msg, FlattenIntent):
            verdict = core.submit_flatten(msg, now_ns=recv_ns, now_ms=now_ms())
            if verdict.accepted:
                send.stages.add("stage_flatten_checks", clock.monotonic_ns() - recv_ns)
                send.recv_ns[msg.intent_id] = (recv_ns, msg.created_ns)
                send.pump()
            elif verdict.outcome == "rejected" and verdict.reason != "DuplicateIntent":
                host.publish_events([OrderRejected(
                    cloid=msg.intent_id, coin=msg.coin, reason=f"refused: {verdict.reason}", benign=True,
                    reduce_only=True, recv_ns=recv_ns, intent_id=msg.intent_id)])
            self.log_verdict(verdict)
            host.count("flatten_intents")
            host.count(f"flatten_{verdict.outcome}")
        else:
            host.count("unexpected_intent_messages")
        recv = send.recv_ns
        if len(recv) > _RECV_MEMORY:
            for k in list(recv)[:_RECV_MEMORY // 2]:
                del recv[k]

    def log_verdict(self, verdict: Verdict) -> None:
        """At the end of the loop turn: the next intent of the same burst (a second exit) is gated and sent
        first. At most ``verdict_log_lines_per_s``; the rest summarised."""
        if self.verdict_log.allow(verdict.reason, clock.monotonic_ns()):
            log = self.host.log
            self.defer(lambda: log.info("verdict", line=verdict.log_line()))

    # ------------------------------------------------------------------ state from the bus

    def on_message(self, msg: Message) -> None:
        send, core, host = self.send, self.core, self.host
        if isinstance(msg, AssetCtx):
            if msg.oracle_px > 0 and msg.coin in core.specs:
                core.oracles[msg.coin] = msg.oracle_px  # the slippage trigger's reference
                core.terms.on_ctx(msg.coin, msg.open_interest, msg.mark_px)  # live open interest
            if msg.mark_px > 0 and msg.coin in core.specs:
                gates = core.gates
                first = gates.mark(msg.coin) is None
                gates.set_mark(msg.coin, msg.mark_px)
                if first:  # a level for status and tests: an entry in a market without a mark is refused
                    host.stats["marks_known_n"] = len(gates.marks)
        elif isinstance(msg, ExchangeClock) and send.conditions is not None:
            send.conditions.on_clock(msg)
            send.follow_exchange_clock()
        elif isinstance(msg, PositionSnapshot):
            send.snapshot = msg
            if send.conditions is not None:
                send.conditions.on_snapshot(msg)
            core.on_snapshot(msg)
            send.update_ready()
            send.step_hardstop()
        elif isinstance(msg, OrderUpdate):
            host.publish_events(core.on_order_update(msg, now_ms()))
            send.check_hardstop_request()
            send.pump()
        elif isinstance(msg, PositionClosed):
            core.on_position_closed(msg, now_ms())
            send.check_hardstop_request()
        elif isinstance(msg, MarketTerms):
            core.terms.update(msg)
        elif isinstance(msg, RequestBudgetReading) and core.on_budget_reading(msg):
            send.note(send.switch.on_volume(msg.cum_vlm_usd))
            send.pump()

    # ------------------------------------------------------------------ hard stop

    def hardstop_step(self) -> None:
        if not self.flattener.active:
            return
        core, host = self.core, self.host
        step = self.flattener.step(snapshot=self.send.snapshot, marks=core.gates.marks,
                                   inflight_posts=core.scheduler.inflight, now_ns=clock.monotonic_ns())
        if step.cancels or step.orders:
            core.submit_hardstop(step, now_ms())
            host.count("hardstop_attempts")
        for problem in step.problems:
            host.alert("critical", f"hard stop: {problem}")
        prog = step.progress
        if prog is not None:
            host.report_progress(prog)
            host.log.warning("hardstop_progress", epoch=prog.epoch, positions=prog.positions,
                             open_orders=prog.open_orders, attempts=prog.attempts, done=prog.done)
            if prog.alert:
                host.alert("critical", f"hard stop cannot flatten: {prog.positions} positions, "
                           f"{prog.open_orders} open orders after {prog.attempts} attempts")
        self.send.pump()

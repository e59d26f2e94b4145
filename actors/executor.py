"""The executor actor process. The only process that holds the key and makes nonces: gates,
batches, signs and posts orders.

A thin loop over ``hip3.execution.core.ExecutionCore`` (decisions) and ``HardStopFlattener``:

* sockets: PULL ``intents`` (binds), SUB ``md`` (``AssetCtx`` marks), ``positions``
  (``PositionSnapshot``, ``PositionClosed``) and ``user`` (``OrderUpdate``); XPUB ``exec`` (order events,
  ``HardStopProgress``); its own order-entry ``WsClient`` whose fd sits in the actor's poller, with its
  own reconnect backoff (``[executor] reconnect_*``: 150 ms doubling to 3 s with jitter by default, not
  the feed's 1 s -> 60 s: nothing, flatten included, leaves while it is down).
* READY = the order-entry WebSocket is connected AND a synced position snapshot arrived. No new order
  leaves while not READY or while the hard stop is latched; reduce-only orders and cancels wait in their
  queues until the connection is up (they are never popped while disconnected).
* sending: every intake/response/timer calls ``_pump``: ``next_batch`` → sign (``expiresAfter`` = now +
  ``expires_after_ms``) → ``prepare_send`` (journal line written before the frame) → ``ws.post`` →
  ``on_sent`` → publish ``OrderSubmitted`` (``sent_ns`` = monotonic right after the frame was written).
  Idle → the batch leaves at once; under load the scheduler coalesces (``batch_interval_ms``). The journal
  is fsynced 5 ms after a frame, by a timer (every line was written before its frame). If the transport refuses a
  post (not connected, over its budget) the batch is requeued without spending the requeue budget (new
  orders are dropped) and the pump stops until the next tick or a reconnect: no requeue storm.
* admission (``hip3.execution.admission``, through the core): what each post may carry (the address
  request budget with a reserve for flattens and cancels, entry posts paced within the WebSocket's
  2,000 messages a minute); entries shed at intake before the gates (summarised once a second, not logged
  one by one); intents are read in batches and the batch's flattens handled before its entries.
* exchange refusals: after a whole action refused (rate limit or any whole-request error) nothing is
  posted for 0.5 s, doubling to 10 s until an action is accepted; queued entries are dropped and entry
  intents refused meanwhile (``_back_off``).
* loss limits: their state is saved at the end of every turn that changed it (``RiskKeeper``), so a
  restarted executor continues every limit, the daily loss cap included, where the last one stopped.
* dead man's switch (``hip3.execution.deadman``): ``scheduleCancel(now + schedule_cancel_after_ms)`` when
  READY and every ``schedule_cancel_rearm_ms`` while READY, unless the exchange refused it (lifetime
  volume too low, or its daily trigger limit): then once at WARNING and in the stats, not re-armed.
* nonces, ``expiresAfter`` and ``scheduleCancel`` are signed in the exchange's time (the feed's
  ``ExchangeClock``); entries are refused on ``hip3.entry_conditions`` (dex collateral, clock skew).
* hard stop: latched → ``set_hard_stop`` (queued entries dropped), ``HardStopFlattener.start``, then a
  ``step`` on every snapshot/response and on a short timer: cancel every open order by oid, flatten every
  position reduce-only IOC at mark ± slippage, until the tracker's view shows no position and no open
  order; ``HardStopProgress`` goes to the supervisor (inbox) and on ``exec``; an alert when it cannot.

Run alone for debugging: `python -m actors.executor --config configs/default.toml`.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

import msgspec

from hip3 import clock
from hip3.config import exchange_urls
from hip3.entry_conditions import EntryConditions
from hip3.execution.admission import LogBudget
from hip3.execution.batch import Batch
from hip3.execution.core import ExecutionCore
from hip3.execution.deadman import DeadMansSwitch, Note
from hip3.execution.gates import MarketSpec, Verdict
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.journal import JournalWriteError, SentIntentJournal
from hip3.execution.latency import LatencySamples, latency_stats
from hip3.execution.orders import post_answer
from hip3.execution.risk_state import RiskKeeper, RiskStateStore
from hip3.hyperliquid.frames import PostResponse
from hip3.hyperliquid.nonce import NonceError, NonceManager, NonceStorageError
from hip3.hyperliquid.signing import Signer
from hip3.hyperliquid.wire import cancel_action, order_action, order_wire, schedule_cancel_action
from hip3.hyperliquid.ws import ConnState, WsBudgetError, WsClient, WsNotConnected
from hip3.journal_db import JOURNAL_FILE
from hip3.market_terms import TermsView
from hip3.messages import (
    AssetCtx,
    EntryIntent,
    ExchangeClock,
    FlattenIntent,
    HardStopState,
    MarketTerms,
    Message,
    Msg,
    OrderRejected,
    OrderSubmitted,
    OrderUpdate,
    PositionClosed,
    PositionSnapshot,
    RequestBudgetReading,
)
from hip3.runtime.actor import Actor, ActorStartError, Timer
from hip3.runtime.markets import load_registry
from hip3.runtime.runner import standalone_main
from hip3.secrets import check_signer, executor_key

__all__ = ["Executor", "ExecutorStartError"]

_HARDSTOP_TICK_MS = 100
_WS_TICK_MS = 100
_LATENCY_SAMPLES = 4096
_INTAKE_BATCH = 256  # intents read per loop turn (its flattens are handled before its entries)
_STAGE_SAMPLES = 1024
# Signing nonces spent by a send are replaced this long after it (off the send path, after its events
# and log lines), a few per turn (each ~40 µs of this loop) until the pool is full again.
_SIGN_POOL_REFILL_DELAY_NS = 2_000_000
_SIGN_POOL_REFILL_PER_TURN = 2
# The sent-intent journal's fsync runs this long after a frame (its line was written before the frame):
# not in the same loop turn, where it made the next order of the same burst (two positions exiting on
# one oracle move) wait 0.3-1 ms for the disk. The fsync is for a host crash only (see
# ``ExecutorParams.journal_fsync_before_send``), which loses the intent queues too.
_JOURNAL_SYNC_DELAY_NS = 5_000_000


class ExecutorStartError(ActorStartError):
    """The executor cannot start safely (no key, bad signer, unusable nonce state)."""


def _now_ms() -> int:
    return clock.time_ns() // 1_000_000


class Executor(Actor):
    name = "executor"
    _down_since_ns = 0  # the order-entry connection is down since (monotonic ns; 0: up)
    _nonce_problem: str | None = None  # why no nonce can be signed now (the READY detail), or None
    _storage_problem: str | None = None  # why entries are stopped: the disk refuses the nonce ceiling or journal
    conditions: EntryConditions | None = None  # dex collateral and the exchange's clock (set in setup)

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        cfg = self.cfg
        self.params = cfg.executor
        key = executor_key()
        if key is None:
            raise ExecutorStartError(
                f"the executor has no signing key in {cfg.mode} mode: set HIP3_PRIVATE_KEY or "
                "HIP3_KEYSTORE (+ password) for the supervisor, which hands it to the executor only"
            )
        check_signer(key, cfg.exchange.signer_address)
        self._signer = Signer(key.reveal(), pool_size=self.params.sign_nonce_pool)
        del key
        self._signer.refill()  # the whole nonce pool now, before READY (about 40 µs a nonce)
        self._vault: str | None = cfg.exchange.vault_address.lower() or None
        self._is_mainnet = cfg.exchange.network == "mainnet"  # sim/testnet sign with source "b"
        try:
            self._nonces = NonceManager(self.run_dir / "nonce", clock_ms=_now_ms)
        except NonceError as e:
            raise ExecutorStartError(str(e)) from None
        if (ahead := self._nonces.problem(_now_ms())) is not None:  # every signature would be refused
            self._nonces.close()
            raise ExecutorStartError(ahead)

        registry = load_registry(cfg, self.log)
        specs = {
            m.coin: MarketSpec(coin=s.coin, asset=s.asset, sz_decimals=s.sz_decimals)
            for m in cfg.markets
            for s in (registry.by_coin(m.coin),)
        }
        self.specs = {s.coin: s for s in specs.values()}
        risk_store = RiskStateStore(self.run_dir)  # before the journal exists: has an executor run here?
        journal = SentIntentJournal(self.run_dir, now_ms=_now_ms(), retention_ms=self.params.sent_journal_retention_ms)
        self.core = ExecutionCore(self.params, cfg.risk, cfg.soft_gates, self.specs, journal,
                                  terms=TermsView(cfg.market_terms, self.specs))
        self.flattener = HardStopFlattener(cfg.risk, self.specs, dust=self.core.dust)
        # The loss limits continue where the last executor stopped (saved at the end of every turn that
        # changed them, off the send path); an unusable saved state refuses entries and asks for the stop.
        self.risk_keeper = RiskKeeper(risk_store, self.core.risk, self.core.soft, self.flattener,
                                      schedule=lambda: self.defer(self._save_risk))
        restore_problem = self.risk_keeper.restore(self.hardstop, _now_ms())
        (self.log.warning if risk_store.note else self.log.info)("risk_state_restored", **self.risk_keeper.summary())
        self.snapshot: PositionSnapshot | None = None
        self.conditions = EntryConditions(cfg.collateral, cfg.clock, refuse_unknown=False)
        self.latencies_ns: deque[int] = deque(maxlen=_LATENCY_SAMPLES)
        # Per-stage send-path timings (gates, wire, sign, journal, write), reported with the stats.
        self.stages = LatencySamples(_STAGE_SAMPLES)
        # intent id -> (receipt time, creation time): latency samples and tick-to-trade stages
        self._recv_ns: dict[str, tuple[int, int]] = {}
        self.switch = DeadMansSwitch(self.params.schedule_cancel_after_ms)
        self._verdict_log = LogBudget(self.params.verdict_log_lines_per_s)
        # Set when the transport refused a post (not connected / over budget): no sending until the next
        # tick or a reconnect, instead of taking the requeued batch straight back.
        self._pump_paused = False

        self.exec = self.publisher("exec")
        self._intents = self.bus.puller("intents")
        self.on_batch(self._intents, self._on_intents)
        # From market data only the marks (AssetCtx): filtered at the feed, so the executor is not woken
        # by every bbo (on two vCPUs each extra wake-up delays the order path).
        self.subscriber(["md"], self.on_message, only=(AssetCtx, ExchangeClock))
        self.subscriber(["positions", "user"], self.on_message)
        missed, problem = self.risk_keeper.catch_up(self.run_dir / JOURNAL_FILE, self.core.on_position_closed)
        if missed or problem:  # closes published while no executor ran, from the recorder's journal
            self.log.warning("risk_state_catch_up", missed_closes=missed, problem=problem or "")

        _, ws_url = exchange_urls(cfg)
        # The WS-level post timeout is a backstop: the scheduler's expiry (post_timeout_ms) decides first.
        # Its own reconnect schedule (``[executor] reconnect_*``), far shorter than the feed's: nothing, not
        # even a flatten, can leave while this connection is down.
        p = self.params
        self.ws = WsClient(ws_url, post_timeout_s=p.post_timeout_ms / 1000 + 2.0, stall_timeout_s=None,
                           reconnect_base_s=p.reconnect_base_ms / 1000, reconnect_max_s=p.reconnect_max_ms / 1000,
                           healthy_after_s=p.reconnect_healthy_after_ms / 1000, on_state=self._on_ws_state)
        self._ws_fd = -1
        self._tick_timer: Timer = self.every(_WS_TICK_MS, self._on_tick)
        self.every(_HARDSTOP_TICK_MS, self._hardstop_step)
        self.every(self.params.schedule_cancel_rearm_ms, self._rearm_schedule_cancel)
        self.every(1000, self._publish_stats)
        # The pump's own timer: a long period, pulled in (``wake_by``) to the scheduler's next wake-up.
        self._pump_timer: Timer = self.every(60_000, self._pump)
        self._refill_timer: Timer = self.every(1000, self._refill_sign_pool)
        self._journal_timer: Timer = self.every(1000, self._sync_journal)
        self._risk_timer: Timer = self.every(1000, lambda: self._save_risk(sync=True))
        self._setup_done = True
        if restore_problem is not None:
            self.raise_hardstop(restore_problem)
        self._check_hardstop_request()  # a limit tripped by a close it missed
        self.log.info("executor_configured", signer=self._signer.address, vault=self._vault or "",
                      mainnet=self._is_mainnet, markets=sorted(self.specs), ws_url=ws_url)
        if self.hardstop.latched:
            self._apply_latch(self.hardstop)
        self.ws.connect()
        self._update_ready()

    def teardown(self) -> None:
        if not getattr(self, "_setup_done", False):
            return
        try:
            self.ws.close()
        finally:
            self.core.journal.sync()
            self.core.journal.close()
            self.risk_keeper.close(_now_ms())
            self._nonces.close()

    # ------------------------------------------------------------------ connection / READY

    def _on_ws_state(self, state: ConnState) -> None:
        fd = self.ws.fileno()
        if self._ws_fd >= 0 and self._ws_fd != fd:
            self.remove_reader(self._ws_fd)
            self._ws_fd = -1
        if state == "connected" and fd >= 0 and self._ws_fd != fd:
            self.add_reader(fd, self._on_ws_readable)
            self._ws_fd = fd
        if state != "connected":
            self.switch.on_disconnected()
        else:
            self._pump_paused = False
        if state == "disconnected":
            self._wake_for_reconnect()
            if not self._down_since_ns:
                self._down_since_ns = clock.monotonic_ns()
        elif state == "connected" and self._down_since_ns:
            down_ms = (clock.monotonic_ns() - self._down_since_ns) // 1_000_000
            self._down_since_ns = 0
            self.log.info("order_entry_reconnected", down_ms=down_ms, conn=self.ws.conn_id)
        self.count(f"ws_{state}")
        self._update_ready()

    def _wake_for_reconnect(self) -> None:
        """Run the WS tick when the reconnect is due, not up to ``_WS_TICK_MS`` later (the backoff starts
        at ``reconnect_base_ms``, about one tick). Called with the reconnect already scheduled."""
        at = self.ws.reconnect_at
        timer = getattr(self, "_tick_timer", None)  # None while ``setup`` builds the client
        if at is not None and timer is not None:
            timer.wake_by(int(at * 1e9) + 1_000_000)  # +1 ms: never early (float seconds -> ns)

    def _on_ws_readable(self) -> None:
        self.ws.poll_read()  # post callbacks run inside; the order-entry socket carries no data frames
        self._pump()

    def _update_ready(self) -> None:
        connected = self.ws.state == "connected"
        synced = self.snapshot is not None and self.snapshot.synced
        was = self.ready
        nonce_problem = self._nonces.problem(_now_ms())
        if nonce_problem is not None and self._nonce_problem is None:
            self.alert("critical", nonce_problem)
        self._nonce_problem = nonce_problem
        storage = self._nonces.storage_problem or self.core.journal.problem
        if storage is not None and self._storage_problem is None:
            self.alert("critical", f"entries stopped: {storage}; flattens, cancels and the hard stop go on")
        elif storage is None and self._storage_problem is not None:
            self.log.info("storage_recovered", was=self._storage_problem)
        self._storage_problem = storage
        if nonce_problem is not None:  # every signature would be refused: never READY (and say so)
            self.set_ready(False, nonce_problem)
        elif storage is not None:  # entries need their nonce and journal line on disk; exits do not
            self.set_ready(False, f"entries stopped: {storage}")
        elif connected and synced:
            self.set_ready(True, "order entry connected, positions synced")
        elif not connected:
            self.set_ready(False, f"order entry {self.ws.state}")
        else:
            self.set_ready(False, "waiting for a synced position snapshot")
        if self.ready and not was:
            self._rearm_schedule_cancel()
            self._pump()

    def _on_tick(self) -> None:
        self.ws.tick()
        now_ns = clock.monotonic_ns()
        self._publish(self.core.expire(now_ns, _now_ms()))
        # Entries that could not leave in time (the exchange's message budget, the in-flight limit).
        self._publish(self.core.drop_expired_entries(now_ns))
        self._check_hardstop_request()
        self._follow_exchange_clock()
        self._pump_paused = False
        self._pump()
        # Keep the nonce ceiling's fsync off the send path (hip3.hyperliquid.nonce); while the disk refused
        # a write, this and the journal's retry find out when it takes writes again.
        if not self._nonces.reserve_ahead(_now_ms()) and self._nonces.storage_problem is not None:
            self.count("nonce_reserve_failed")
        if self.core.journal.problem is not None:
            self.core.journal.retry()
        self._check_storage()
        if (self._nonces.problem(_now_ms()) is None) != (self._nonce_problem is None):
            self._update_ready()  # the clock moved past (or back behind) the nonce state

    # ------------------------------------------------------------------ intake

    def _on_intents(self) -> None:
        """A batch of intents: its flattens first, then its entries (a flood of entries never holds a
        flatten back for more than one batch)."""
        msgs = list(self._intents.drain(_INTAKE_BATCH))
        for m in msgs:
            if isinstance(m, FlattenIntent):
                self.on_intent(m)
        for m in msgs:
            if not isinstance(m, FlattenIntent):
                self.on_intent(m)

    def on_intent(self, msg: Message) -> None:
        """Gate the intent and, if accepted, send it at once (when the scheduler allows); the verdict's
        INFO line, the counters and the events come AFTER the frame is written (issue 6: a JSON log line
        before the send cost about 65 µs of the idle path)."""
        recv_ns = clock.monotonic_ns()
        if isinstance(msg, EntryIntent):
            problem = self.conditions.problem() if self.conditions is not None else ""
            if not self.ready or problem:
                why = ("NotReady", self.ready_detail) if not self.ready else ("EntryConditions", problem)
                self.count("entry_intents")
                self.count("entry_rejected_not_ready" if not self.ready else "entry_rejected_conditions")
                if self._verdict_log.allow(why[0], recv_ns):
                    self.log.info("verdict", line=f"verdict rejected reason={why[0]} coin={msg.coin} "
                                  f"intent={msg.intent_id} sz={msg.sz} {why[1]}")
                return
            shed = self.core.shed_entry(msg, recv_ns)
            if shed:  # counted by reason, summarised once a second (``_publish_stats``)
                self.count("entry_intents")
                self.count(f"entry_shed:{shed}")
                return
            verdict, events = self.core.submit_entry(
                msg, snapshot=self.snapshot, now_ns=recv_ns, now_ms=_now_ms(), balance_usd=None
            )
            if verdict.accepted:
                self.stages.add("stage_gates", clock.monotonic_ns() - recv_ns)
                self._recv_ns[msg.intent_id] = (recv_ns, msg.created_ns)
                self._pump()
            self._log_verdict(verdict)
            self.count("entry_intents")
            self.count(f"entry_{verdict.outcome}")
            self.count(f"entry_{verdict.outcome}:{verdict.reason}")
            self._publish(events)
        elif isinstance(msg, FlattenIntent):
            verdict = self.core.submit_flatten(msg, now_ns=recv_ns, now_ms=_now_ms())
            if verdict.accepted:
                self.stages.add("stage_flatten_checks", clock.monotonic_ns() - recv_ns)
                self._recv_ns[msg.intent_id] = (recv_ns, msg.created_ns)
                self._pump()
            elif verdict.outcome == "rejected" and verdict.reason != "DuplicateIntent":
                # Refused (expired, bad input, queue full): tell the exit watcher so its flatten claim is
                # released now, not after claim_expiry_ms. "skipped" means a flatten is already in flight.
                self._publish([OrderRejected(
                    cloid=msg.intent_id, coin=msg.coin, reason=f"refused: {verdict.reason}", benign=True,
                    reduce_only=True, recv_ns=recv_ns, intent_id=msg.intent_id)])
            self._log_verdict(verdict)
            self.count("flatten_intents")
            self.count(f"flatten_{verdict.outcome}")
        else:
            self.count("unexpected_intent_messages")
        self._trim_recv()

    def _log_verdict(self, verdict: Verdict) -> None:
        """INFO (lesson B38), at the end of the loop turn: the next intent of the same burst (a second
        exit) is gated and sent first. At most ``verdict_log_lines_per_s``; the rest summarised."""
        if self._verdict_log.allow(verdict.reason, clock.monotonic_ns()):
            self.defer(lambda: self.log.info("verdict", line=verdict.log_line()))

    def _trim_recv(self) -> None:
        if len(self._recv_ns) > 20_000:
            for k in list(self._recv_ns)[:10_000]:
                del self._recv_ns[k]

    def on_message(self, msg: Message) -> None:
        if isinstance(msg, AssetCtx):
            if msg.oracle_px > 0 and msg.coin in self.specs:
                self.core.oracles[msg.coin] = msg.oracle_px  # the slippage trigger's reference
                self.core.terms.on_ctx(msg.coin, msg.open_interest, msg.mark_px)  # live open interest
            if msg.mark_px > 0 and msg.coin in self.specs:
                gates = self.core.gates
                first = gates.mark(msg.coin) is None
                gates.set_mark(msg.coin, msg.mark_px)
                if first:  # a level for status and tests: an entry in a market without a mark is refused
                    self.stats["marks_known_n"] = len(gates.marks)
        elif isinstance(msg, ExchangeClock) and self.conditions is not None:
            self.conditions.on_clock(msg)
            self._follow_exchange_clock()
        elif isinstance(msg, PositionSnapshot):
            self.snapshot = msg
            if self.conditions is not None:
                self.conditions.on_snapshot(msg)
            self.core.on_snapshot(msg)
            self._update_ready()
            if self.flattener.active:
                self._hardstop_step()
        elif isinstance(msg, OrderUpdate):
            self._publish(self.core.on_order_update(msg, _now_ms()))
            self._check_hardstop_request()
            self._pump()
        elif isinstance(msg, PositionClosed):
            self.core.on_position_closed(msg, _now_ms())
            self._check_hardstop_request()
        elif isinstance(msg, MarketTerms):
            self.core.terms.update(msg)
        elif isinstance(msg, RequestBudgetReading) and self.core.on_budget_reading(msg):
            self._note(self.switch.on_volume(msg.cum_vlm_usd))
            self._pump()

    # ------------------------------------------------------------------ sending

    def _pump(self) -> None:
        """Send every batch the scheduler releases now; re-arm the pump timer for the next one."""
        if not self._can_send():
            return  # reduce-only orders and cancels stay queued until the connection (or budget) is back
        core = self.core
        while self._can_send():  # re-checked every turn: a send can drop the connection
            now_ns = clock.monotonic_ns()
            batch = core.next_batch(now_ns)
            if batch is None:
                break
            if batch.kind == "order" and not self.ready and any(not o.reduce_only for o in batch.orders):
                # New orders dropped (marks released); reduce-only requeued, budget untouched: not ready is
                # not a failure of the flatten, which goes out on the next turn without the entries.
                self._publish(core.on_send_failure(batch, "not ready", now_ns, _now_ms(), transient=True))
                continue
            if not self._send(batch):
                break
        self._publish(core.drop_expired_entries(clock.monotonic_ns()))  # those next_batch skipped
        if not self._can_send():
            return
        wake = core.next_wakeup_ns(clock.monotonic_ns())
        if wake is not None:
            self._pump_timer.wake_by(max(wake, clock.monotonic_ns() + 100_000))

    def _refill_sign_pool(self) -> None:
        signer = self._signer
        signer.refill(max_new=_SIGN_POOL_REFILL_PER_TURN)
        if signer.pooled < signer.pool_size:
            self._refill_timer.wake_by(clock.monotonic_ns() + _SIGN_POOL_REFILL_DELAY_NS)

    def _can_send(self) -> bool:
        # Checked before a batch is taken and signed: no nonce is spent and nothing is requeued while
        # the connection is down or the outbound budget (2000/min, 100 in flight) is used up.
        return (not self._pump_paused and self.ws.can_post()
                and not self.core.admission.backoff.blocked(clock.monotonic_ns()))

    def _follow_exchange_clock(self) -> None:
        """The nonce manager's server offset is the measured skew, evaluated now (a step of the host's wall
        clock is followed at the next tick); ``_sign_payload`` adds it to ``expiresAfter`` too."""
        c = self.conditions
        skew = c.time.skew_ms(clock.monotonic_ns(), clock.time_ns()) if c is not None else None
        if skew is not None and skew != self._nonces.server_offset_ms:
            self._nonces.set_server_offset(skew)
            self.stats["signing_offset_ms"] = skew

    def _check_storage(self) -> None:
        """READY follows whether the disk takes the nonce ceiling and the journal's lines."""
        if (self._nonces.storage_problem is None and self.core.journal.problem is None) != (
                self._storage_problem is None):
            self._update_ready()

    def _sign_payload(self, action: dict[str, object], now_ms: int, durable: bool = True) -> dict[str, Any]:
        nonce = self._nonces.next(now_ms, durable=durable)
        # The exchange refuses an action once its own time passes expiresAfter: its time, not ours.
        expires = now_ms + self._nonces.server_offset_ms + self.params.expires_after_ms
        sig = self._signer.sign_action(action, self._vault, nonce, self._is_mainnet, expires)
        payload: dict[str, Any] = {"action": action, "nonce": nonce, "signature": sig, "expiresAfter": expires}
        if self._vault is not None:
            payload["vaultAddress"] = self._vault
        return payload

    def _send(self, batch: Batch) -> bool:
        """Wire → sign → journal (written before the frame) → frame written; everything else after.
        False if the transport refused the post (the caller stops pumping until the next tick)."""
        core = self.core
        t0 = clock.monotonic_ns()
        now_ms = _now_ms()
        # An entry needs its nonce ceiling and journal line on disk (a restarted executor must neither reuse
        # the nonce nor send the intent again); reduce-only orders and cancels leave without (see nonce.py,
        # journal.py): a full disk must never stop a flatten.
        entries = batch.kind == "order" and any(not o.reduce_only for o in batch.orders)
        try:
            if batch.kind == "order":
                action = order_action([
                    order_wire(o.asset, o.is_buy, o.px, o.sz, o.reduce_only, o.tif, o.cloid) for o in batch.orders
                ])
            else:
                action = cancel_action([(c.asset, c.oid) for c in batch.cancels])
            t1 = clock.monotonic_ns()
            payload = self._sign_payload(action, now_ms, durable=entries)
        except NonceStorageError as e:
            return self._storage_refused(batch, str(e), now_ms)
        except (ValueError, NonceError) as e:
            self.log.error("sign_failed", error=str(e), kind=batch.kind, n=len(batch))
            self.count("sign_failed")
            self._publish(core.on_send_failure(batch, f"sign failed: {e}", clock.monotonic_ns(), now_ms))
            return True
        t2 = clock.monotonic_ns()
        try:
            core.prepare_send(batch, now_ms, sync=self.params.journal_fsync_before_send, required=entries)
        except JournalWriteError as e:
            return self._storage_refused(batch, str(e), now_ms)
        t3 = clock.monotonic_ns()
        try:
            post_id = self.ws.post("action", payload, self._on_order_response)
        except (WsNotConnected, WsBudgetError) as e:
            # Nothing left the process: requeue without spending the requeue budget, count no failure,
            # and stop until the next tick / reconnect (taking the batch straight back would spin).
            self.count("send_failed")
            self.log.warning("send_failed", error=str(e), kind=batch.kind, n=len(batch))
            self._pump_paused = True
            self._publish(core.on_send_failure(batch, str(e), clock.monotonic_ns(), now_ms, transient=True))
            return False
        sent_ns = clock.monotonic_ns()
        stages = self.stages
        stages.add("stage_wire", t1 - t0)
        stages.add("stage_sign", t2 - t1)
        stages.add("stage_journal", t3 - t2)
        stages.add("stage_write", sent_ns - t3)
        events = core.on_sent(batch, post_id, int(payload["nonce"]), sent_ns)
        self.count("posts")
        self.count(f"{batch.kind}s_sent", len(batch))
        for i, ev in enumerate(events):
            if isinstance(ev, OrderSubmitted):
                recv_ns, created_ns = self._recv_ns.pop(ev.intent_id, (0, 0))
                if recv_ns:
                    self.latencies_ns.append(sent_ns - recv_ns)
                    events[i] = msgspec.structs.replace(ev, intent_recv_ns=recv_ns, intent_created_ns=created_ns)
        self._publish(events)
        self._refill_timer.wake_by(sent_ns + _SIGN_POOL_REFILL_DELAY_NS)
        self._journal_timer.wake_by(sent_ns + _JOURNAL_SYNC_DELAY_NS)
        if self._storage_problem is None and (self._nonces.storage_problem or core.journal.problem):
            self._update_ready()  # a flatten left past a write the disk refused: entries stop now
        return True

    def _storage_refused(self, batch: Batch, why: str, now_ms: int) -> bool:
        """The disk refused an entry's nonce ceiling or journal line: its entries dropped (released, benign),
        its reduce-only orders requeued without spending their budget (they leave on the next turn)."""
        self.count("entries_refused_storage")
        self._publish(self.core.on_send_failure(batch, f"entries stopped: {why}", clock.monotonic_ns(), now_ms,
                                                transient=True))
        self._check_storage()
        return True

    def _sync_journal(self) -> None:
        self.core.journal.sync()  # no-op unless a line was written since the last one
        self._check_storage()

    def _save_risk(self, sync: bool = False) -> None:
        """The loss limits' state to the kernel at the end of the turn that changed it; its fsync 5 ms later
        from the timer (``sync``), which also retries a failed write every second."""
        problem = self.risk_keeper.save(_now_ms()) or (self.risk_keeper.sync() if sync else None)
        self.stats["risk_state_saves"] = self.risk_keeper.saves
        if problem is not None:
            self.raise_hardstop(problem)
        if not sync:
            self._risk_timer.wake_by(clock.monotonic_ns() + _JOURNAL_SYNC_DELAY_NS)

    def _on_order_response(self, resp: PostResponse) -> None:
        answer = post_answer(resp)
        if answer is None:
            # Outcome unknown: the scheduler's expiry (post_timeout_ms >= expires_after_ms) resolves it.
            self.count(f"post_{resp.type}")
            return
        events = self.core.on_post_response(resp.id, answer, clock.monotonic_ns(), _now_ms())
        ex = resp.exchange
        if resp.type == "action" and ex is not None and ex.ok:
            self.core.admission.on_accepted()
        elif resp.type in ("action", "error"):
            # Before anything below pumps the requeued orders again.
            self._back_off((ex.error if ex is not None else resp.error) or f"post answered {resp.type}")
        self._publish(events)
        self._check_hardstop_request()
        if self.flattener.active:
            self._hardstop_step()

    def _back_off(self, error: str) -> None:
        """The exchange refused a whole action (its rate limit, or any whole-request error): send nothing
        for a while (0.5 s doubling to 10 s; the next accepted action resets it) and drop the queued
        entries (they would leave late, at stale prices); reduce-only orders and cancels wait in their
        queues. Found by the fault tests: a rate-limited or refusing exchange got about 60 posts a second,
        each refusal answered by an immediate retry, and the flattens' requeue budget was gone in
        milliseconds (flatten failures, hard stop)."""
        now_ns = clock.monotonic_ns()
        backoff = self.core.admission.backoff
        delay_ms = backoff.on_refused(now_ns)
        self._publish(self.core.drop_queued_entries("dropped: exchange backoff", now_ns))
        self.count("exchange_backoffs")
        self.log.warning("exchange_backoff", error=error[:200], delay_ms=delay_ms, refusals=backoff.refusals)
        self._pump_timer.wake_by(backoff.until_ns)

    # ------------------------------------------------------------------ dead man's switch

    def _rearm_schedule_cancel(self) -> None:
        if not self.ready or self.ws.state != "connected":
            return
        now_ms = _now_ms()
        until = self.switch.want(now_ms + self._nonces.server_offset_ms)  # the exchange's time
        if until is None or not self.core.admission.may_send_other(clock.monotonic_ns()):
            return
        self.switch.on_sent()
        try:
            payload = self._sign_payload(schedule_cancel_action(until), now_ms, durable=False)
            self.ws.post("action", payload, lambda r: self._on_schedule_cancel_response(r, until))
        except (WsNotConnected, WsBudgetError, NonceError, ValueError) as e:
            self.switch.on_not_sent()
            self.count("schedule_cancel_failed")
            self.log.warning("schedule_cancel_failed", error=str(e))
            return
        self.core.admission.on_other_sent(clock.monotonic_ns())

    def _on_schedule_cancel_response(self, resp: PostResponse, until_ms: int) -> None:
        """Never a hard-stop matter: a refused switch is reported (once), not counted as a rejection."""
        ex = resp.exchange
        ok = resp.type == "action" and ex is not None and ex.ok
        error = "" if ok else (ex.error if ex is not None else resp.error) or f"post answered {resp.type}"
        budget = self.core.admission.budget
        budget.resolve(1, _now_ms())
        if not ok:
            budget.on_rate_limit_error(error, 1, clock.monotonic_ns())
        self.count("schedule_cancel_armed" if ok else "schedule_cancel_failed")
        self._note(self.switch.on_answer(ok, error, until_ms, _now_ms() + self._nonces.server_offset_ms))

    def _note(self, note: Note | None) -> None:
        if note is not None:
            (self.log.warning if note.warning else self.log.info)(note.event, detail=note.detail)

    # ------------------------------------------------------------------ hard stop

    def on_hardstop(self, state: HardStopState) -> None:
        if getattr(self, "_setup_done", False):
            self._apply_latch(state)

    def _apply_latch(self, state: HardStopState) -> None:
        now_ns = clock.monotonic_ns()
        if state.latched:
            self._publish(self.core.set_hard_stop(True, now_ns))
            self.flattener.start(state.epoch, now_ns)
            self.risk_keeper.note_hardstop(state, _now_ms())  # a restarted flatten keeps its attempts
            self.log.critical("hardstop_flatten_started", epoch=state.epoch, reason=state.reason or "")
            self._hardstop_step()
        else:
            self.core.set_hard_stop(False, now_ns)
            self.flattener.reset()
            self.risk_keeper.note_hardstop(state, _now_ms())
            self.log.warning("hardstop_reset_applied", epoch=state.epoch)

    def _hardstop_step(self) -> None:
        if not self.flattener.active:
            return
        step = self.flattener.step(snapshot=self.snapshot, marks=self.core.gates.marks,
                                   inflight_posts=self.core.scheduler.inflight, now_ns=clock.monotonic_ns())
        if step.cancels or step.orders:
            self.core.submit_hardstop(step, _now_ms())
            self.count("hardstop_attempts")
        for problem in step.problems:
            self.alert("critical", f"hard stop: {problem}")
        prog = step.progress
        if prog is not None:
            self.inbox.send(prog)
            self.exec.publish(prog)
            self.log.warning("hardstop_progress", epoch=prog.epoch, positions=prog.positions,
                             open_orders=prog.open_orders, attempts=prog.attempts, done=prog.done)
            if prog.alert:
                self.alert("critical", f"hard stop cannot flatten: {prog.positions} positions, "
                           f"{prog.open_orders} open orders after {prog.attempts} attempts")
        self._pump()

    def _check_hardstop_request(self) -> None:
        reason = self.core.take_hardstop_request()
        if reason is not None:
            self.raise_hardstop(reason)

    # ------------------------------------------------------------------ helpers

    def _publish(self, events: list[Msg]) -> None:
        pub = self.exec.publish
        for ev in events:
            pub(ev)
        if self.core.dust.new:  # a close refused below the exchange's minimum: said once, not retried
            for line in self.core.dust.take_new():
                self.alert("warning", f"dust: {line}")

    def _publish_stats(self) -> None:
        self.stats.update(latency_stats("added_latency", self.latencies_ns))
        self.stats.update(self.stages.summary())
        self.stats["inflight_posts"] = self.core.scheduler.inflight
        self.stats["sign_nonces_pooled"] = self._signer.pooled
        self.stats["dropped_unmatched"] = self.core.dropped_unmatched
        self.stats["statuses_unmatched"] = self.core.tracker.unmatched
        self.stats.update(self.core.terms.summary(_now_ms()))
        self.stats.update(self.switch.stats())
        self.stats.update(self.core.admission.stats(_now_ms()))
        # Once a second: entries shed and verdict lines held back, counted by reason; a change in whether
        # the request budget lets entries through (one line per change, never one per intent).
        for note in self.core.admission.take_notes():
            self._note(note)
        held = self._verdict_log.take_suppressed()
        if held:
            self.log.info("verdicts_not_logged", counts=held)
        self.stats["dust_positions"] = len(self.core.dust.stuck())


if __name__ == "__main__":
    sys.exit(standalone_main("executor"))

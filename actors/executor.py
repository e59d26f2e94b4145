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
* exchange refusals: after a whole action refused (rate limit or any whole-request error) nothing is
  posted for 0.5 s, doubling to 10 s until an action is accepted; queued entries are dropped and entry
  intents refused meanwhile (``_back_off``).
* loss limits: their state is saved at the end of every turn that changed it (``RiskKeeper``), so a
  restarted executor continues every limit, the daily loss cap included, where the last one stopped.
* dead man's switch: ``scheduleCancel(now + schedule_cancel_after_ms)`` when READY and every
  ``schedule_cancel_rearm_ms`` while READY.
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
from hip3.execution.batch import Batch
from hip3.execution.core import ExecutionCore
from hip3.execution.gates import MarketSpec, Verdict
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.journal import SentIntentJournal
from hip3.execution.latency import LatencySamples
from hip3.execution.risk_state import RiskKeeper, RiskStateStore
from hip3.hyperliquid.frames import PostResponse
from hip3.hyperliquid.nonce import NonceError, NonceManager
from hip3.hyperliquid.responses import ExchangeResponse, OrderStatus
from hip3.hyperliquid.signing import Signer
from hip3.hyperliquid.wire import cancel_action, order_action, order_wire, schedule_cancel_action
from hip3.hyperliquid.ws import ConnState, WsBudgetError, WsClient, WsNotConnected
from hip3.journal_db import JOURNAL_FILE
from hip3.market_terms import TermsView
from hip3.messages import (
    AssetCtx,
    EntryIntent,
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
)
from hip3.runtime.actor import Actor, ActorStartError, Timer
from hip3.runtime.markets import load_registry
from hip3.runtime.runner import standalone_main
from hip3.secrets import check_signer, executor_key

__all__ = ["Executor", "ExecutorStartError", "post_response_body"]

_HARDSTOP_TICK_MS = 100
_WS_TICK_MS = 100
_LATENCY_SAMPLES = 4096
# After a whole action refused by the exchange (rate limit or any whole-request error): no post for
# this long, doubling per refusal in a row up to the maximum; the next accepted action resets it.
_BACKOFF_BASE_MS = 500
_BACKOFF_MAX_MS = 10_000
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


def _status_dict(st: OrderStatus) -> object:
    if st.kind == "filled":
        return {"filled": {"totalSz": str(st.total_sz), "avgPx": str(st.avg_px), "oid": st.oid}}
    if st.kind == "resting":
        return {"resting": {"oid": st.oid}}
    if st.kind == "error":
        return {"error": st.text or ""}
    if st.kind == "string":
        return st.text or ""
    return {"unknown": st.text}


def post_response_body(resp: PostResponse) -> object:
    """The WS ``data.response`` object the core parses, rebuilt from the client's typed ``PostResponse``."""
    if resp.type == "action" and resp.exchange is not None:
        ex: ExchangeResponse = resp.exchange
        if not ex.ok:
            return {"type": "action", "payload": {"status": "err", "response": ex.error or "request failed"}}
        statuses = [_status_dict(s) for s in ex.statuses]
        inner = {"type": ex.response_type or "order", "data": {"statuses": statuses}}
        return {"type": "action", "payload": {"status": "ok", "response": inner}}
    return {"type": "error", "payload": resp.error or f"post answered with type {resp.type!r}"}


class Executor(Actor):
    name = "executor"
    # Exchange backoff (see _back_off): no post before this monotonic time; refusals in a row. Class
    # defaults, so that an instance built without setup (the pump tests) has them too.
    _refused_until_ns = 0
    _refusals = 0
    _down_since_ns = 0  # the order-entry connection is down since (monotonic ns; 0: up)
    _nonce_problem: str | None = None  # why no nonce can be signed now (the READY detail), or None

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
        self.flattener = HardStopFlattener(cfg.risk, self.specs)
        # The loss limits continue where the last executor stopped (saved at the end of every turn that
        # changed them, off the send path); an unusable saved state refuses entries and asks for the stop.
        self.risk_keeper = RiskKeeper(risk_store, self.core.risk, self.core.soft, self.flattener,
                                      schedule=lambda: self.defer(self._save_risk))
        restore_problem = self.risk_keeper.restore(self.hardstop, _now_ms())
        (self.log.warning if risk_store.note else self.log.info)("risk_state_restored", **self.risk_keeper.summary())
        self.snapshot: PositionSnapshot | None = None
        self.latencies_ns: deque[int] = deque(maxlen=_LATENCY_SAMPLES)
        # Per-stage send-path timings (gates, wire, sign, journal, write), reported with the stats.
        self.stages = LatencySamples(_STAGE_SAMPLES)
        # intent id -> (receipt time, creation time): latency samples and tick-to-trade stages
        self._recv_ns: dict[str, tuple[int, int]] = {}
        self._armed_until_ms = 0
        self._last_rearm_ns = 0
        # Set when the transport refused a post (not connected / over budget): no sending until the next
        # tick or a reconnect, instead of taking the requeued batch straight back.
        self._pump_paused = False

        self.exec = self.publisher("exec")
        self.puller("intents", self.on_intent)
        # From market data only the marks (AssetCtx): filtered at the feed, so the executor is not woken
        # by every bbo (on two vCPUs each extra wake-up delays the order path).
        self.subscriber(["md"], self.on_message, only=(AssetCtx,))
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
            self._armed_until_ms = 0
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
        if nonce_problem is not None:  # every signature would be refused: never READY (and say so)
            self.set_ready(False, nonce_problem)
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
        self._pump_paused = False
        self._pump()
        if (self._nonces.problem(_now_ms()) is None) != (self._nonce_problem is None):
            self._update_ready()  # the clock moved past (or back behind) the nonce state
        try:  # keep the nonce ceiling's fsync off the send path (hip3.hyperliquid.nonce)
            self._nonces.reserve_ahead(_now_ms())
        except OSError as e:
            self.count("nonce_reserve_failed")
            self.log.warning("nonce_reserve_failed", error=str(e))

    # ------------------------------------------------------------------ intake

    def on_intent(self, msg: Message) -> None:
        """Gate the intent and, if accepted, send it at once (when the scheduler allows); the verdict's
        INFO line, the counters and the events come AFTER the frame is written (issue 6: a JSON log line
        before the send cost about 65 µs of the idle path)."""
        recv_ns = clock.monotonic_ns()
        if isinstance(msg, EntryIntent):
            if not self.ready:
                self.count("entry_intents")
                self.count("entry_rejected_not_ready")
                self.log.info("verdict", line=f"verdict rejected reason=NotReady coin={msg.coin} "
                              f"intent={msg.intent_id} sz={msg.sz} {self.ready_detail}")
                return
            if recv_ns < self._refused_until_ns:
                self.count("entry_intents")
                self.count("entry_rejected_exchange_backoff")
                self.log.info("verdict", line=f"verdict rejected reason=ExchangeBackoff coin={msg.coin} "
                              f"intent={msg.intent_id} sz={msg.sz}")
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
        exit) is gated and sent first."""
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
        elif isinstance(msg, PositionSnapshot):
            self.snapshot = msg
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
        return not self._pump_paused and self.ws.can_post() and clock.monotonic_ns() >= self._refused_until_ns

    def _sign_payload(self, action: dict[str, object], now_ms: int) -> dict[str, Any]:
        nonce = self._nonces.next(now_ms)
        expires = now_ms + self.params.expires_after_ms
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
        try:
            if batch.kind == "order":
                action = order_action([
                    order_wire(o.asset, o.is_buy, o.px, o.sz, o.reduce_only, o.tif, o.cloid) for o in batch.orders
                ])
            else:
                action = cancel_action([(c.asset, c.oid) for c in batch.cancels])
            t1 = clock.monotonic_ns()
            payload = self._sign_payload(action, now_ms)
        except (ValueError, NonceError) as e:
            self.log.error("sign_failed", error=str(e), kind=batch.kind, n=len(batch))
            self.count("sign_failed")
            self._publish(core.on_send_failure(batch, f"sign failed: {e}", clock.monotonic_ns(), now_ms))
            return True
        t2 = clock.monotonic_ns()
        core.prepare_send(batch, now_ms, sync=self.params.journal_fsync_before_send)
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
        return True

    def _sync_journal(self) -> None:
        self.core.journal.sync()  # no-op unless a line was written since the last one

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
        if resp.type in ("timeout", "disconnected", "unknown"):
            # Outcome unknown: the scheduler's expiry (post_timeout_ms >= expires_after_ms) resolves it.
            self.count(f"post_{resp.type}")
            return
        events = self.core.on_post_response(resp.id, post_response_body(resp), clock.monotonic_ns(), _now_ms())
        ex = resp.exchange
        if resp.type == "action" and ex is not None and ex.ok:
            self._refusals = 0
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
        self._refusals += 1
        delay_ms = min(_BACKOFF_MAX_MS, _BACKOFF_BASE_MS * 2 ** min(self._refusals - 1, 16))
        now_ns = clock.monotonic_ns()
        self._refused_until_ns = now_ns + delay_ms * 1_000_000
        self._publish(self.core.drop_queued_entries("dropped: exchange backoff", now_ns))
        self.count("exchange_backoffs")
        self.log.warning("exchange_backoff", error=error[:200], delay_ms=delay_ms, refusals=self._refusals)
        self._pump_timer.wake_by(self._refused_until_ns)

    # ------------------------------------------------------------------ dead man's switch

    def _rearm_schedule_cancel(self) -> None:
        if not self.ready or self.ws.state != "connected":
            return
        now_ms = _now_ms()
        until = now_ms + self.params.schedule_cancel_after_ms
        try:
            payload = self._sign_payload(schedule_cancel_action(until), now_ms)
            self.ws.post("action", payload, lambda r: self._on_schedule_cancel_response(r, until))
        except (WsNotConnected, WsBudgetError, NonceError, ValueError) as e:
            self.count("schedule_cancel_failed")
            self.log.warning("schedule_cancel_failed", error=str(e))

    def _on_schedule_cancel_response(self, resp: PostResponse, until_ms: int) -> None:
        ex = resp.exchange
        if resp.type == "action" and ex is not None and ex.ok:
            self._armed_until_ms = until_ms
            self.count("schedule_cancel_armed")
        else:
            self.count("schedule_cancel_failed")
            self.log.warning("schedule_cancel_refused", type=resp.type,
                             error=(ex.error if ex is not None else resp.error) or "")

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

    def _publish_stats(self) -> None:
        lat = sorted(self.latencies_ns)
        if lat:
            self.stats["added_latency_p50_us"] = lat[len(lat) // 2] // 1000
            self.stats["added_latency_p90_us"] = lat[len(lat) * 9 // 10] // 1000
            self.stats["added_latency_p99_us"] = lat[len(lat) * 99 // 100] // 1000
            self.stats["added_latency_max_us"] = lat[-1] // 1000
            self.stats["added_latency_samples"] = len(lat)
        self.stats.update(self.stages.summary())
        self.stats["inflight_posts"] = self.core.scheduler.inflight
        self.stats["sign_nonces_pooled"] = self._signer.pooled
        self.stats["dropped_unmatched"] = self.core.dropped_unmatched
        self.stats["statuses_unmatched"] = self.core.tracker.unmatched
        self.stats["schedule_cancel_armed_until_s"] = self._armed_until_ms // 1000
        self.stats.update(self.core.terms.summary(_now_ms()))


if __name__ == "__main__":
    sys.exit(standalone_main("executor"))

"""The executor actor process. The only process that holds the key and makes nonces: gates, batches,
signs and posts orders. Wiring only; the decisions are in ``hip3.execution``:

* ``core.ExecutionCore``: gates, queues, the order tracker, the loss limits' triggers, admission;
* ``send_path.SendPath``: pump -> sign -> journal -> post, the exchange's answers and backoff, READY, the dead
  man's switch, the files on a full disk; ``intake.Intake``: intents and the state taken from the bus;
* ``hardstop.HardStopFlattener`` and ``risk_keeper.RiskKeeper``: the hard-stop sequence and the loss limits'
  state across restarts.

Sockets: PULL ``intents`` (binds), SUB ``md`` (``AssetCtx`` marks and ``ExchangeClock`` only, filtered at
the feed: on two vCPUs each extra wake-up delays the order path), ``positions`` and ``user``; XPUB ``exec``
(order events, ``HardStopProgress``); its own order-entry ``WsClient`` whose fd sits in the actor's poller,
with its own reconnect backoff (``[executor] reconnect_*``: 150 ms doubling to 3 s with jitter, not the
feed's 1 s -> 60 s: nothing, flatten included, leaves while it is down).

READY = the order-entry WebSocket is connected AND a synced position snapshot arrived AND the nonces and the
disk can take an entry (``SendPath.update_ready``). No new order leaves while not READY or while the hard
stop is latched; reduce-only orders and cancels wait in their queues until the connection is up.

Hard stop: latched -> ``set_hard_stop`` (queued entries dropped), ``HardStopFlattener.start``, then a
``step`` on every snapshot/answer and on a short timer: cancel every open order by oid, flatten every
position reduce-only IOC at mark +- slippage, until the tracker's view shows no position and no open order;
``HardStopProgress`` goes to the supervisor (inbox) and on ``exec``; an alert when it cannot.

Loss limits: saved at the end of every turn that changed them (``RiskKeeper``), fsynced 5 ms later, so a
restarted executor continues every limit where the last one stopped.

Run alone for debugging: `python -m actors.executor --config configs/default.toml`.
"""

from __future__ import annotations

import sys

from hip3 import clock
from hip3.account.entry_conditions import EntryConditions
from hip3.account.market_terms import TermsView
from hip3.config import exchange_urls
from hip3.execution.core import ExecutionCore
from hip3.execution.gates import MarketSpec
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.intake import Intake
from hip3.execution.journal import SentIntentJournal
from hip3.execution.latency import latency_stats
from hip3.execution.risk_keeper import RiskKeeper
from hip3.execution.risk_state import RiskStateStore
from hip3.execution.send_path import JOURNAL_SYNC_DELAY_NS, SendPath, now_ms
from hip3.hyperliquid.nonce import NonceError, NonceManager
from hip3.hyperliquid.signing import Signer
from hip3.hyperliquid.ws import ConnState, WsClient
from hip3.journal.schema import JOURNAL_FILE
from hip3.messages import AssetCtx, ExchangeClock, HardStopProgress, HardStopState, Msg
from hip3.runtime.actor import Actor, ActorStartError, Timer
from hip3.runtime.markets import load_registry
from hip3.runtime.runner import standalone_main
from hip3.runtime.secrets import check_signer, executor_key

__all__ = ["Executor", "ExecutorStartError"]

_HARDSTOP_TICK_MS = 100
_WS_TICK_MS = 100
_INTAKE_BATCH = 256  # intents read per loop turn (its flattens are handled before its entries)


class ExecutorStartError(ActorStartError):
    """The executor cannot start safely (no key, bad signer, unusable nonce state)."""


class Executor(Actor):
    name = "executor"
    _down_since_ns = 0  # the order-entry connection is down since (monotonic ns; 0: up)

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        cfg = self.cfg
        self.params = p = cfg.executor
        key = executor_key()
        if key is None:
            raise ExecutorStartError(
                f"the executor has no signing key in {cfg.mode} mode: set HIP3_PRIVATE_KEY or "
                "HIP3_KEYSTORE (+ password) for the supervisor, which hands it to the executor only"
            )
        check_signer(key, cfg.exchange.signer_address)
        signer = Signer(key.reveal(), pool_size=p.sign_nonce_pool)
        del key
        signer.refill()  # the whole nonce pool now, before READY (about 40 µs a nonce)
        vault: str | None = cfg.exchange.vault_address.lower() or None
        try:
            nonces = NonceManager(self.run_dir / "nonce", clock_ms=now_ms)
        except NonceError as e:
            raise ExecutorStartError(str(e)) from None
        if (ahead := nonces.problem(now_ms())) is not None:  # every signature would be refused
            nonces.close()
            raise ExecutorStartError(ahead)

        registry = load_registry(cfg, self.log)
        self.specs = {
            s.coin: MarketSpec(coin=s.coin, asset=s.asset, sz_decimals=s.sz_decimals)
            for m in cfg.markets
            for s in (registry.by_coin(m.coin),)
        }
        risk_store = RiskStateStore(self.run_dir)  # before the journal exists: has an executor run here?
        journal = SentIntentJournal(self.run_dir, now_ms=now_ms(), retention_ms=p.sent_journal_retention_ms)
        self.core = ExecutionCore(p, cfg.risk, cfg.soft_gates, self.specs, journal,
                                  terms=TermsView(cfg.market_terms, self.specs))
        self.flattener = HardStopFlattener(cfg.risk, self.specs, dust=self.core.dust)
        # The loss limits continue where the last executor stopped (saved at the end of every turn that
        # changed them, off the send path); an unusable saved state refuses entries and asks for the stop.
        self.risk_keeper = RiskKeeper(risk_store, self.core.risk, self.core.soft, self.flattener,
                                      schedule=lambda: self.defer(self._save_risk))
        restore_problem = self.risk_keeper.restore(self.hardstop, now_ms())
        (self.log.warning if risk_store.note else self.log.info)("risk_state_restored", **self.risk_keeper.summary())

        _, ws_url = exchange_urls(cfg)
        # The WS-level post timeout is a backstop: the scheduler's expiry (post_timeout_ms) decides first.
        self.ws = WsClient(ws_url, post_timeout_s=p.post_timeout_ms / 1000 + 2.0, stall_timeout_s=None,
                           reconnect_base_s=p.reconnect_base_ms / 1000, reconnect_max_s=p.reconnect_max_ms / 1000,
                           healthy_after_s=p.reconnect_healthy_after_ms / 1000, on_state=self._on_ws_state)
        self._ws_fd = -1
        self.send = SendPath(self.core, self.ws, signer, nonces, p, self, vault=vault,
                             mainnet=cfg.exchange.network == "mainnet",
                             conditions=EntryConditions(cfg.collateral, cfg.clock, refuse_unknown=False))
        self.intake = Intake(self.send, self.flattener, self.defer)

        self.exec = self.publisher("exec")
        self._intents = self.bus.puller("intents")
        self.on_batch(self._intents, lambda: self.intake.on_intents(self._intents.drain(_INTAKE_BATCH)))
        self.subscriber(["md"], self.intake.on_message, only=(AssetCtx, ExchangeClock))
        self.subscriber(["positions", "user"], self.intake.on_message)
        missed, problem = self.risk_keeper.catch_up(self.run_dir / JOURNAL_FILE, self.core.on_position_closed)
        if missed or problem:  # closes published while no executor ran, from the recorder's journal
            self.log.warning("risk_state_catch_up", missed_closes=missed, problem=problem or "")

        send = self.send
        self._tick_timer: Timer = self.every(_WS_TICK_MS, self._on_tick)
        self.every(_HARDSTOP_TICK_MS, self.intake.hardstop_step)
        self.every(p.schedule_cancel_rearm_ms, send.rearm_schedule_cancel)
        self.every(1000, self._publish_stats)
        # Long periods, pulled in (``wake_by``) by the send path: the scheduler's next wake-up, the nonce
        # pool's refill and the journal's fsync after a frame.
        send.pump_timer = self.every(60_000, send.pump)
        send.refill_timer = self.every(1000, send.refill_sign_pool)
        send.journal_timer = self.every(1000, send.sync_journal)
        self._risk_timer: Timer = self.every(1000, lambda: self._save_risk(sync=True))
        self._setup_done = True
        if restore_problem is not None:
            self.raise_hardstop(restore_problem)
        send.check_hardstop_request()  # a limit tripped by a close it missed
        self.log.info("executor_configured", signer=signer.address, vault=vault or "", mainnet=send.mainnet,
                      markets=sorted(self.specs), ws_url=ws_url)
        if self.hardstop.latched:
            self._apply_latch(self.hardstop)
        self.ws.connect()
        send.update_ready()

    def teardown(self) -> None:
        if not getattr(self, "_setup_done", False):
            return
        try:
            self.ws.close()
        finally:
            self.core.journal.sync()
            self.core.journal.close()
            self.risk_keeper.close(now_ms())
            self.send.nonces.close()

    # ------------------------------------------------------------------ the order-entry connection

    def _on_ws_state(self, state: ConnState) -> None:
        fd = self.ws.fileno()
        if self._ws_fd >= 0 and self._ws_fd != fd:
            self.remove_reader(self._ws_fd)
            self._ws_fd = -1
        if state == "connected" and fd >= 0 and self._ws_fd != fd:
            self.add_reader(fd, self._on_ws_readable)
            self._ws_fd = fd
        send = getattr(self, "send", None)  # None while ``setup`` builds the client
        if send is not None:
            send.on_connection(state)
        if state == "disconnected":
            self._wake_for_reconnect()
            if not self._down_since_ns:
                self._down_since_ns = clock.monotonic_ns()
        elif state == "connected" and self._down_since_ns:
            down_ms = (clock.monotonic_ns() - self._down_since_ns) // 1_000_000
            self._down_since_ns = 0
            self.log.info("order_entry_reconnected", down_ms=down_ms, conn=self.ws.conn_id)
        self.count(f"ws_{state}")
        if send is not None:
            send.update_ready()

    def _wake_for_reconnect(self) -> None:
        """Run the WS tick when the reconnect is due, not up to ``_WS_TICK_MS`` later (the backoff starts
        at ``reconnect_base_ms``, about one tick). Called with the reconnect already scheduled."""
        at = self.ws.reconnect_at
        timer = getattr(self, "_tick_timer", None)  # None while ``setup`` builds the client
        if at is not None and timer is not None:
            timer.wake_by(int(at * 1e9) + 1_000_000)  # +1 ms: never early (float seconds -> ns)

    def _on_ws_readable(self) -> None:
        self.ws.poll_read()  # post callbacks run inside; the order-entry socket carries no data frames
        self.send.pump()

    def _on_tick(self) -> None:
        self.ws.tick()
        self.send.on_tick()

    # ------------------------------------------------------------------ loss limits

    def _save_risk(self, sync: bool = False) -> None:
        """The loss limits' state to the kernel at the end of the turn that changed it; its fsync 5 ms later
        from the timer (``sync``), which also retries a failed write every second."""
        problem = self.risk_keeper.save(now_ms()) or (self.risk_keeper.sync() if sync else None)
        self.stats["risk_state_saves"] = self.risk_keeper.saves
        if problem is not None:
            self.raise_hardstop(problem)
        if not sync:
            self._risk_timer.wake_by(clock.monotonic_ns() + JOURNAL_SYNC_DELAY_NS)

    # ------------------------------------------------------------------ hard stop

    def on_hardstop(self, state: HardStopState) -> None:
        if getattr(self, "_setup_done", False):
            self._apply_latch(state)

    def _apply_latch(self, state: HardStopState) -> None:
        now_ns = clock.monotonic_ns()
        if state.latched:
            self.publish_events(self.core.set_hard_stop(True, now_ns))
            self.flattener.start(state.epoch, now_ns)
            self.risk_keeper.note_hardstop(state, now_ms())  # a restarted flatten keeps its attempts
            self.log.critical("hardstop_flatten_started", epoch=state.epoch, reason=state.reason or "")
            self.intake.hardstop_step()
        else:
            self.core.set_hard_stop(False, now_ns)
            self.flattener.reset()
            self.risk_keeper.note_hardstop(state, now_ms())
            self.log.warning("hardstop_reset_applied", epoch=state.epoch)

    # ------------------------------------------------------------------ publishing

    def publish_events(self, events: list[Msg]) -> None:
        pub = self.exec.publish
        for ev in events:
            pub(ev)
        if self.core.dust.new:  # a close refused below the exchange's minimum: said once, not retried
            for line in self.core.dust.take_new():
                self.alert("warning", f"dust: {line}")

    def report_progress(self, progress: HardStopProgress) -> None:
        self.inbox.send(progress)
        self.exec.publish(progress)

    def _publish_stats(self) -> None:
        send, core, stats = self.send, self.core, self.stats
        stats.update(latency_stats("added_latency", send.latencies_ns))
        stats.update(send.stages.summary())
        stats["inflight_posts"] = core.scheduler.inflight
        stats["sign_nonces_pooled"] = send.signer.pooled
        stats["dropped_unmatched"] = core.dropped_unmatched
        stats["statuses_unmatched"] = core.tracker.unmatched
        wall_ms = now_ms()
        stats.update(core.terms.summary(wall_ms))
        stats.update(send.switch.stats())
        core.admission.check_reading_age(wall_ms)
        stats.update(core.admission.stats(wall_ms))
        # Once a second: entries shed and verdict lines held back, counted by reason; a change in whether
        # the request budget lets entries through (one line per change, never one per intent).
        for note in core.admission.take_notes():
            send.note(note)
        held = self.intake.verdict_log.take_suppressed()
        if held:
            self.log.info("verdicts_not_logged", counts=held)
        stats["dust_positions"] = len(core.dust.stuck())


if __name__ == "__main__":
    sys.exit(standalone_main("executor"))

"""The supervisor: starts the actors in dependency order, watches them, restarts them, owns the latch.

* An actor counts as started once it reported READY; the next one starts then (dependency order).
* A crashed actor (its process sentinel fires), a hung one (no heartbeat for ``heartbeat_timeout_ms``)
  or one that never gets READY is (killed and) restarted with exponential backoff and jitter
  (``RestartPolicy``). Past ``max_restarts`` restarts within ``restart_period_s`` the supervisor stops
  restarting it, latches the hard stop and says so loudly.
* The hard-stop latch: persisted atomically before it is broadcast on the control stream, re-broadcast
  every ``hardstop_rebroadcast_ms``, replayed to every joiner (XPUB), reloaded on restart; only
  ``reset-hardstop`` clears it. Actors acknowledge every epoch; the acks are in the status. A latch the
  disk refuses holds in memory (alert, write retried; ``hip3.runtime.hardstop``); no start on an unusable file.
* Its own stalls (GC, swap, SIGSTOP) are not the actors' fault: drain, then judge, on a clock without
  them (``hip3.runtime.liveness``).
* Operator commands arrive on the ``ctl`` ROUTER socket (run directory, mode 0600) as JSON.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from hip3.config import Config
from hip3.messages import (
    Alert,
    DexCollateral,
    HardStopAck,
    HardStopProgress,
    HardStopRequest,
    Heartbeat,
    MarketView,
    Message,
    PositionSnapshot,
    Ready,
    Shutdown,
)
from hip3.ops.alert_rules import open_alerts
from hip3.ops.readiness import Probes
from hip3.runtime.bus import Bus
from hip3.runtime.hardstop import Latch
from hip3.runtime.launchers import Launcher
from hip3.runtime.liveness import LoopWatch, Slot, judge, stall_allowance_ms
from hip3.runtime.logs import Log
from hip3.runtime.metrics import SupervisorMetrics
from hip3.runtime.paper import PaperExchange
from hip3.runtime.restart import RestartPolicy
from hip3.runtime.roster import actor_names, flatten_actors, start_order
from hip3.runtime.supervisor_ctl import handle_command
from hip3.runtime.supervisor_status import status_snapshot
from hip3.runtime.trading import TradingStats
from hip3.ui.board import Board
from hip3.ui.dashboard import open_endpoint


class Supervisor:
    """One supervisor per run directory (the command line holds the lock: ``hip3.ops.ctl``)."""

    def __init__(self, cfg: Config, launcher: Launcher, log: Log,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 rng: random.Random | None = None, exchange: PaperExchange | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        """Raises ``LatchFileError`` (one line) if the latch file cannot be read or written."""
        self.cfg = cfg
        self.exchange = exchange
        self.launcher = launcher
        self.log = log
        self.run_dir = cfg.run_path
        sc = cfg.supervisor
        known = actor_names()
        names = sc.actors or start_order(cfg.mode)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown actors in supervisor.actors: {', '.join(unknown)}")
        unknown = [n for n in sc.realtime_actors if n not in known]
        if unknown:
            raise ValueError(f"unknown actors in supervisor.realtime_actors: {', '.join(unknown)}")
        # Before any socket: a supervisor that cannot keep a hard stop across a restart does not start.
        self.latch = Latch(self.run_dir)
        self.latch.check_writable()
        self._clock_ns = clock_ns
        self.watch = LoopWatch(int(stall_allowance_ms(sc.heartbeat_interval_ms, sc.heartbeat_timeout_ms) * 1e6),
                               clock_ns())
        rng = rng or random.Random()
        self.slots: dict[str, Slot] = {
            n: Slot(n, RestartPolicy(sc.restart_backoff_initial_ms, sc.restart_backoff_max_ms, sc.restart_jitter,
                                     sc.max_restarts, sc.restart_period_s, rng))
            for n in names
        }
        # The HTTP endpoint (off by default): /metrics, the dashboard, the probes; served from loop snapshots.
        self.metrics = SupervisorMetrics() if cfg.metrics.enabled else None
        self.notifier = open_alerts(cfg, log)  # alerts to a person (off by default): hip3.ops.alert_rules
        self.probes = Probes(sc.heartbeat_timeout_ms, clock_ns)
        self.http, self.dashboard = open_endpoint(cfg, log, self.metrics, self.probes)
        self.bus = Bus(cfg, "supervisor", context=context, run_dir=self.run_dir)
        self.control = self.bus.publisher("control")
        self.inbox = self.bus.puller("inbox")
        self.ctl = self.bus.router("ctl")
        # Off the hot path: the trading view for status and the session summary.
        self.trading = TradingStats()
        self.board = Board()  # markets, recent trades, unrealised PnL: the live view and the dashboard
        self.trading_sub = self.bus.subscriber(["positions", "exec"])
        self.poller = zmq.Poller()
        for s in (self.control.sock, self.inbox.sock, self.ctl, self.trading_sub.sock):
            self.poller.register(s, zmq.POLLIN)
        self.stopping = False
        self.stop_request: dict[str, Any] = {}
        self.started_at = time.time()
        self.hardstop_progress: HardStopProgress | None = None
        self.alerts: list[dict[str, Any]] = []
        self.collateral: DexCollateral | None = None  # the traded dex's, from the tracker's snapshots
        self._last_rebroadcast = 0
        self._broadcast_latch()

    def _now(self) -> int:
        """Every clock reading of the loop goes through here: the watch sees the gaps (its stalls)."""
        now = self._clock_ns()
        gap = self.watch.observe(now)
        if gap and gap / 1e6 >= self.cfg.supervisor.heartbeat_timeout_ms / 2:
            self.log.warning("supervisor_stalled", stall_ms=round(gap / 1e6), stalls=self.watch.stalls)
        return now

    # ---------------------------------------------------------------------------------------------
    # The latch
    # ---------------------------------------------------------------------------------------------

    def _broadcast_latch(self) -> None:
        self.control.publish(self.latch.state.to_message(), state_key="hardstop")
        self._last_rebroadcast = self._now()

    def hardstop(self, reason: str, source: str) -> bool:
        """Latch (persisted first when the disk allows, else in memory), then broadcast. False if it was
        already latched."""
        if not self.latch.latch(reason):
            return False
        latch = self.latch
        self.log.critical("hardstop_latched", reason=reason, source=source, epoch=latch.state.epoch,
                          persisted=latch.persisted, persist_error=latch.persist_error)
        if not latch.persisted:  # the disk refused: latched all the same, and said so
            self._alert("critical", "supervisor", f"hard stop latched in memory only: cannot write {latch.path}: "
                        f"{latch.persist_error}; flattening anyway, retrying the write; a restart now would forget it")
        self._broadcast_latch()
        return True

    def _retry_latch(self, now_ns: int) -> None:
        wrote = self.latch.retry(now_ns)
        if wrote:
            self.log.warning("hardstop_persisted", path=str(self.latch.path), epoch=self.latch.state.epoch)
            self._alert("info", "supervisor", f"hard stop now written to {self.latch.path}")
        elif wrote is False:
            self.log.debug("hardstop_write_failed", error=self.latch.persist_error, tries=self.latch.failed_writes)

    def reset_hardstop(self) -> bool:
        """Clear the latch; ``LatchFileError`` (and still latched) if the reset cannot be written."""
        if not self.latch.reset():
            return False
        self.log.warning("hardstop_reset", epoch=self.latch.state.epoch)
        self.hardstop_progress = None
        self._broadcast_latch()
        return True

    # ---------------------------------------------------------------------------------------------
    # Actors
    # ---------------------------------------------------------------------------------------------

    def _launch(self, slot: Slot) -> None:
        slot.handle = self.launcher.launch(slot.name)
        slot.pid = slot.handle.pid
        slot.state = "starting"
        slot.ready = False
        slot.started_ns = self._now()
        slot.started_watch_ns = self.watch.watch_ns(slot.started_ns)
        slot.last_hb_ns = None
        slot.hb_watch_ns = None
        sentinel = slot.handle.sentinel
        if sentinel is not None:
            self.poller.register(sentinel, zmq.POLLIN)
        self.log.info("actor_started", actor=slot.name, pid=slot.pid, restarts=slot.restarts)

    def _forget_handle(self, slot: Slot) -> None:
        if slot.handle is not None and slot.handle.sentinel is not None:
            try:
                self.poller.unregister(slot.handle.sentinel)
            except KeyError:
                pass
        slot.handle = None

    def _failed(self, slot: Slot, why: str) -> None:
        """An actor died, hung or never got READY: schedule a restart, or give up and latch."""
        code = slot.handle.exitcode() if slot.handle else None
        self._forget_handle(slot)
        slot.ready = False
        if self.stopping:
            slot.state = "stopped"
            return
        delay = slot.policy.on_failure(self._now() / 1e9)
        if delay is None:
            reason = (f"restart limit: {slot.name} failed more than {self.cfg.supervisor.max_restarts} times "
                      f"in {self.cfg.supervisor.restart_period_s:g}s ({why})")
            self.log.critical("actor_restart_limit", actor=slot.name, why=why, exitcode=code)
            self._alert("critical", slot.name, reason)
            self.hardstop(reason, "supervisor")
            if slot.name not in flatten_actors():
                slot.state = "failed"
                return
            # The latched stop must still flatten: keep restarting this one, at the slowest cadence.
            delay = self.cfg.supervisor.restart_backoff_max_ms / 1000
        slot.state = "backoff"
        slot.restart_at_ns = self._now() + int(delay * 1e9)
        self.log.error("actor_failed", actor=slot.name, why=why, exitcode=code, restart_in_ms=round(delay * 1000))

    def _check_actors(self, now_ns: int) -> None:
        """Judge every actor. Call with the inbox drained after ``now_ns`` was read (drain, then judge)."""
        sc = self.cfg.supervisor
        watch_now = self.watch.watch_ns(now_ns)
        for slot in self.slots.values():
            if slot.state in ("starting", "running") and slot.handle is not None:
                code = slot.handle.exitcode()
                if code is not None:
                    detail = f": {slot.ready_detail}" if slot.ready_detail.startswith("start refused") else ""
                    self._failed(slot, f"exited with code {code}{detail}")
                    continue
                verdict = judge(slot.state, slot.hb_watch_ns, slot.started_watch_ns, watch_now,
                                sc.heartbeat_timeout_ms, sc.ready_timeout_ms)
                if verdict is None:
                    continue
                kind, age_ms = verdict
                if kind == "hung":
                    self.log.error("actor_hung", actor=slot.name, heartbeat_age_ms=round(age_ms),
                                   supervisor_stalled_ms=round(self.watch.stalled_ns / 1e6))
                else:
                    self.log.error("actor_not_ready", actor=slot.name, timeout_ms=sc.ready_timeout_ms)
                slot.handle.kill()
                slot.handle.join(1.0)
                self._failed(slot, f"no heartbeat for {age_ms:.0f} ms" if kind == "hung" else "not READY in time")
            elif slot.state == "backoff" and now_ns >= slot.restart_at_ns and not self.stopping:
                slot.restarts += 1
                self._launch(slot)
        # Start the next pending actor once every earlier one is up (dependency order).
        if not self.stopping:
            for slot in self.slots.values():
                if slot.state == "pending":
                    self._launch(slot)
                    break
                if slot.state == "starting":
                    break

    def _on_inbox(self, msg: Message) -> None:
        slot = self.slots.get(getattr(msg, "actor", ""))
        if isinstance(msg, Heartbeat):
            if slot is not None and slot.state in ("starting", "running") and msg.pid == slot.pid:
                self._heard(slot)
                slot.stats = msg.stats
                if self.metrics is not None:
                    self.metrics.on_heartbeat(slot.name, msg.pid, msg.stats)
                self._set_ready(slot, msg.ready, slot.ready_detail)
        elif isinstance(msg, Ready):
            if slot is not None and msg.pid == slot.pid and slot.state in ("starting", "running"):
                self._heard(slot)
                self._set_ready(slot, msg.ready, msg.detail)
            elif slot is not None and msg.pid == slot.pid and not msg.ready:
                slot.ready_detail = msg.detail  # the last word of a process already seen exiting (why)
        elif isinstance(msg, HardStopAck):
            if slot is not None and msg.epoch > slot.acked_epoch:
                slot.acked_epoch = msg.epoch
                slot.acked_ns = self._now()
        elif isinstance(msg, HardStopRequest):
            self.hardstop(msg.reason, msg.source)
        elif isinstance(msg, HardStopProgress):
            self.hardstop_progress = msg
            if msg.alert:
                self.log.critical("hardstop_flatten_incomplete", positions=msg.positions,
                                  open_orders=msg.open_orders, attempts=msg.attempts)
        elif isinstance(msg, Alert):
            self._alert(msg.level, msg.actor, msg.text)
            self.log.warning("actor_alert", actor=msg.actor, level=msg.level, text=msg.text)
        elif isinstance(msg, MarketView):
            self.board.on_market_view(msg, self._now())

    def _heard(self, slot: Slot) -> None:
        slot.last_hb_ns = self._now()
        slot.hb_watch_ns = self.watch.watch_ns(slot.last_hb_ns)

    def _alert(self, level: str, actor: str, text: str) -> None:
        """Keep the latest alerts for status (bounded)."""
        self.alerts.append({"level": level, "actor": actor, "text": text})
        del self.alerts[:-50]

    def _set_ready(self, slot: Slot, ready: bool, detail: str) -> None:
        slot.ready_detail = detail
        if ready and not slot.ready:
            slot.ready_ns = self._now()
            self.log.info("actor_ready", actor=slot.name, pid=slot.pid,
                          start_ms=round((slot.ready_ns - slot.started_ns) / 1e6, 1))
        slot.ready = ready
        if ready and slot.state == "starting":
            slot.state = "running"

    # ---------------------------------------------------------------------------------------------
    # Operator commands
    # ---------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return status_snapshot(self, self._now())

    def handle_command(self, req: dict[str, Any]) -> dict[str, Any]:
        return handle_command(self, req)

    def _on_ctl(self) -> None:
        while True:
            try:
                frames = self.ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 3:
                continue
            ident, body = frames[0], frames[-1]
            try:
                req = msgspec.json.decode(body)
                if not isinstance(req, dict):
                    raise ValueError("request must be a JSON object")
                reply = self.handle_command(req)
            except (msgspec.DecodeError, ValueError, RecursionError) as e:  # Recursion: absurd nesting
                reply = {"ok": False, "error": f"bad request: {str(e)[:200]}"}
            self.ctl.send_multipart([ident, b"", msgspec.json.encode(reply)])

    # ---------------------------------------------------------------------------------------------
    # The loop
    # ---------------------------------------------------------------------------------------------

    def all_ready(self) -> bool:
        return all(s.state == "running" and s.ready for s in self.slots.values())

    def step(self, timeout_ms: int = 50) -> None:
        """One turn of the loop: sockets, sentinels, then (inbox drained again) the actors judged, timers."""
        for target, _ in self.poller.poll(timeout_ms):
            if target is self.inbox.sock:
                for msg in self.inbox.drain():
                    self._on_inbox(msg)
            elif target is self.ctl:
                self._on_ctl()
            elif target is self.control.sock:
                self.control.on_subscription()
            elif target is self.trading_sub.sock:
                for msg in self.trading_sub.drain():
                    self.trading.on_message(msg)
                    if isinstance(msg, PositionSnapshot) and msg.collateral is not None:
                        self.collateral = msg.collateral
                    self.board.on_message(msg)
                    if self.metrics is not None:
                        self.metrics.on_message(msg)
            # A sentinel fired: the exit is picked up by _check_actors below.
        if self.exchange is not None and not self.stopping:
            self.exchange.check()
        self._retry_latch(self._now())
        # Drain, then judge: every heartbeat that queued while this turn ran (a slow latch write, a stall)
        # is read after the time is taken and before any actor is judged on it.
        now = self._now()
        for msg in self.inbox.drain():
            self._on_inbox(msg)
        self._check_actors(now)
        if self.notifier is not None:
            self.notifier.observe(self, now)
        if self.metrics is not None:
            self.metrics.refresh(self, now)
        if self.dashboard is not None:
            self.dashboard.refresh(self.status, now)
        self.probes.publish_from(self, self.latch.state, now)
        if (now - self._last_rebroadcast) / 1e6 >= self.cfg.supervisor.hardstop_rebroadcast_ms:
            self._broadcast_latch()

    def shutdown(self) -> None:
        """Stop every actor: Shutdown broadcast, SIGTERM, then SIGKILL of the group after the timeout."""
        self.stopping = True
        self.log.info("shutdown")
        self.control.publish(Shutdown(reason="supervisor stopping"))
        live = [s for s in reversed(list(self.slots.values())) if s.handle is not None]
        for s in live:
            assert s.handle is not None
            s.handle.terminate()
        deadline = time.monotonic() + self.cfg.supervisor.stop_timeout_ms / 1000
        for s in live:
            assert s.handle is not None
            s.handle.join(max(0.0, deadline - time.monotonic()))
            if s.handle.exitcode() is None:
                self.log.error("actor_kill", actor=s.name, pid=s.pid)
                s.handle.kill()
                s.handle.join(2.0)
            self._forget_handle(s)
            s.state = "stopped"
            s.ready = False
        self.launcher.close()
        if self.exchange is not None:
            self.exchange.stop()
        if not self.latch.write_now():  # a last try; the summary says so if it fails again
            self.log.critical("hardstop_lost_at_stop", path=str(self.latch.path), error=self.latch.persist_error)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close(self)
        if self.http is not None:
            self.http.close()
        self.bus.close()

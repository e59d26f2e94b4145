"""The supervisor: starts the actors in dependency order, watches them, restarts them, owns the latch.

* An actor counts as started once it reported READY; the next one starts then (dependency order).
* A crashed actor (its process sentinel fires), a hung one (no heartbeat for ``heartbeat_timeout_ms``)
  or one that never gets READY is (killed and) restarted with exponential backoff and jitter
  (``RestartPolicy``). Past ``max_restarts`` restarts within ``restart_period_s`` the supervisor stops
  restarting it, latches the hard stop and says so loudly.
* The hard-stop latch: persisted atomically before it is broadcast on the control stream, re-broadcast
  every ``hardstop_rebroadcast_ms``, replayed to every joiner (XPUB), reloaded on restart; only
  ``reset-hardstop`` clears it. Actors acknowledge every epoch; the acks are in the status.
* Operator commands arrive on the ``ctl`` ROUTER socket (run directory, mode 0600) as JSON.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import zmq

from hip3.bus import Bus
from hip3.config import Config
from hip3.hardstop import Latch
from hip3.logs import Log
from hip3.messages import (
    Alert,
    HardStopAck,
    HardStopProgress,
    HardStopRequest,
    Heartbeat,
    MarketView,
    Message,
    Ready,
    Shutdown,
)
from hip3.metrics import SupervisorMetrics
from hip3.runtime.launchers import Handle, Launcher
from hip3.runtime.paper import PaperExchange
from hip3.runtime.restart import RestartPolicy
from hip3.runtime.runner import ACTORS
from hip3.runtime.trading import TradingStats
from hip3.ui.board import Board
from hip3.ui.dashboard import open_endpoint

DEFAULT_ORDER: dict[str, tuple[str, ...]] = {
    "observe": ("feed", "detector", "recorder"),
    "paper": ("feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder"),
    "live": ("feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder"),
}

# The hard stop's flatten runs in the executor, from the position tracker's synced view and the feed's
# marks. Past the restart limit these are not given up (that would latch the stop and leave the
# positions open at the exchange for good): the stop latches and they keep being restarted, every
# ``restart_backoff_max_ms``. The others stop being restarted (Erlang/OTP's intensity limit).
FLATTEN_ACTORS = frozenset({"feed", "position_tracker", "executor"})


@dataclass
class Slot:
    """What the supervisor knows about one actor."""

    name: str
    policy: RestartPolicy
    handle: Handle | None = None
    state: str = "pending"  # pending | starting | running | backoff | failed | stopped
    restarts: int = 0
    ready: bool = False
    ready_detail: str = ""
    pid: int | None = None
    started_ns: int = 0
    ready_ns: int = 0
    last_hb_ns: int | None = None
    restart_at_ns: int = 0
    acked_epoch: int = -1
    acked_ns: int = 0
    stats: dict[str, int] = field(default_factory=dict)


class Supervisor:
    """One supervisor per run directory (the CLI holds the lock; see ``supervisor.py``)."""

    def __init__(self, cfg: Config, launcher: Launcher, log: Log,
                 context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 rng: random.Random | None = None, exchange: PaperExchange | None = None) -> None:
        self.cfg = cfg
        self.exchange = exchange
        self.launcher = launcher
        self.log = log
        self.run_dir = cfg.run_path
        sc = cfg.supervisor
        names = sc.actors or DEFAULT_ORDER[cfg.mode]
        unknown = [n for n in names if n not in ACTORS]
        if unknown:
            raise ValueError(f"unknown actors in supervisor.actors: {', '.join(unknown)}")
        unknown = [n for n in sc.realtime_actors if n not in ACTORS]
        if unknown:
            raise ValueError(f"unknown actors in supervisor.realtime_actors: {', '.join(unknown)}")
        rng = rng or random.Random()
        self.slots: dict[str, Slot] = {
            n: Slot(n, RestartPolicy(sc.restart_backoff_initial_ms, sc.restart_backoff_max_ms, sc.restart_jitter,
                                     sc.max_restarts, sc.restart_period_s, rng))
            for n in names
        }
        # The HTTP endpoint (off by default): /metrics and the dashboard, served from daemon threads that
        # read snapshots this loop publishes.
        self.metrics = SupervisorMetrics() if cfg.metrics.enabled else None
        self.http, self.dashboard = open_endpoint(cfg, log, self.metrics)
        self.latch = Latch(self.run_dir)
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
        self._last_rebroadcast = 0
        self._broadcast_latch()

    # ---------------------------------------------------------------------------------------------
    # The latch
    # ---------------------------------------------------------------------------------------------

    def _broadcast_latch(self) -> None:
        self.control.publish(self.latch.state.to_message(), state_key="hardstop")
        self._last_rebroadcast = time.monotonic_ns()

    def hardstop(self, reason: str, source: str) -> bool:
        """Latch (persisted first), then broadcast. False if it was already latched."""
        if not self.latch.latch(reason):
            return False
        self.log.critical("hardstop_latched", reason=reason, source=source, epoch=self.latch.state.epoch)
        self._broadcast_latch()
        return True

    def reset_hardstop(self) -> bool:
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
        slot.started_ns = time.monotonic_ns()
        slot.last_hb_ns = None
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
        delay = slot.policy.on_failure(time.monotonic())
        if delay is None:
            reason = (f"restart limit: {slot.name} failed more than {self.cfg.supervisor.max_restarts} times "
                      f"in {self.cfg.supervisor.restart_period_s:g}s ({why})")
            self.log.critical("actor_restart_limit", actor=slot.name, why=why, exitcode=code)
            self._alert("critical", slot.name, reason)
            self.hardstop(reason, "supervisor")
            if slot.name not in FLATTEN_ACTORS:
                slot.state = "failed"
                return
            # The latched stop must still flatten: keep restarting this one, at the slowest cadence.
            delay = self.cfg.supervisor.restart_backoff_max_ms / 1000
        slot.state = "backoff"
        slot.restart_at_ns = time.monotonic_ns() + int(delay * 1e9)
        self.log.error("actor_failed", actor=slot.name, why=why, exitcode=code, restart_in_ms=round(delay * 1000))

    def _check_actors(self, now_ns: int) -> None:
        sc = self.cfg.supervisor
        for slot in self.slots.values():
            if slot.state in ("starting", "running") and slot.handle is not None:
                code = slot.handle.exitcode()
                if code is not None:
                    self._failed(slot, f"exited with code {code}")
                    continue
                hb_age_ms = (now_ns - slot.last_hb_ns) / 1e6 if slot.last_hb_ns is not None else None
                if slot.state == "running" and hb_age_ms is not None and hb_age_ms > sc.heartbeat_timeout_ms:
                    self.log.error("actor_hung", actor=slot.name, heartbeat_age_ms=round(hb_age_ms))
                    slot.handle.kill()
                    slot.handle.join(1.0)
                    self._failed(slot, f"no heartbeat for {hb_age_ms:.0f} ms")
                elif slot.state == "starting" and (now_ns - slot.started_ns) / 1e6 > sc.ready_timeout_ms:
                    self.log.error("actor_not_ready", actor=slot.name, timeout_ms=sc.ready_timeout_ms)
                    slot.handle.kill()
                    slot.handle.join(1.0)
                    self._failed(slot, "not READY in time")
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
                slot.last_hb_ns = time.monotonic_ns()
                slot.stats = msg.stats
                if self.metrics is not None:
                    self.metrics.on_heartbeat(slot.name, msg.pid, msg.stats)
                self._set_ready(slot, msg.ready, slot.ready_detail)
        elif isinstance(msg, Ready):
            if slot is not None and msg.pid == slot.pid and slot.state in ("starting", "running"):
                slot.last_hb_ns = time.monotonic_ns()
                self._set_ready(slot, msg.ready, msg.detail)
        elif isinstance(msg, HardStopAck):
            if slot is not None and msg.epoch > slot.acked_epoch:
                slot.acked_epoch = msg.epoch
                slot.acked_ns = time.monotonic_ns()
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
            self.board.on_market_view(msg, time.monotonic_ns())

    def _alert(self, level: str, actor: str, text: str) -> None:
        """Keep the latest alerts for status (bounded)."""
        self.alerts.append({"level": level, "actor": actor, "text": text})
        del self.alerts[:-50]

    def _set_ready(self, slot: Slot, ready: bool, detail: str) -> None:
        slot.ready_detail = detail
        if ready and not slot.ready:
            slot.ready_ns = time.monotonic_ns()
            self.log.info("actor_ready", actor=slot.name, pid=slot.pid,
                          start_ms=round((slot.ready_ns - slot.started_ns) / 1e6, 1))
        slot.ready = ready
        if ready and slot.state == "starting":
            slot.state = "running"

    # ---------------------------------------------------------------------------------------------
    # Operator commands
    # ---------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        view = self.board.view(self.trading.snapshot, now)
        trading = {**self.trading.as_dict(), "unrealized_pnl_usd": view.pop("unrealized_pnl_usd")}
        st = self.latch.state
        actors = []
        for s in self.slots.values():
            actors.append({
                "name": s.name,
                "pid": s.pid if s.handle is not None else None,
                "state": s.state,
                "restarts": s.restarts,
                "heartbeat_age_ms": round((now - s.last_hb_ns) / 1e6) if s.last_hb_ns is not None else None,
                "ready": s.ready,
                "ready_detail": s.ready_detail,
                "hardstop_epoch_acked": s.acked_epoch,
                # monotonic_ns timestamps (comparable across processes on one host), for benchmarks
                "ready_since_ns": s.ready_ns if s.ready else None,
                "hardstop_acked_ns": s.acked_ns,
                "stats": s.stats,
            })
        return {
            "run_dir": str(self.run_dir),
            "running": True,
            "mode": self.cfg.mode,
            "uptime_s": round(time.time() - self.started_at, 1),
            "hard_stop": {"latched": st.latched, "reason": st.reason, "epoch": st.epoch, "since_ms": st.since_ms,
                          "flatten": msgspec.to_builtins(self.hardstop_progress) if self.hardstop_progress else None},
            "actors": actors,
            "seq_gaps": sum(s.stats.get("seq_gaps", 0) for s in self.slots.values()),
            "alerts": self.alerts[-10:],
            "trading": trading,
            **view,
            "exchange": None if self.exchange is None else {
                "kind": "simulator", "url": self.exchange.url, "account": self.exchange.key.address,
                "order_log": str(self.exchange.order_log), "restarts": self.exchange.restarts,
                "pid": self.exchange.proc.pid if self.exchange.proc is not None else None},
            "metrics": None if self.metrics is None else {"url": self.metrics.url},
            "dashboard": None if self.dashboard is None else {"url": self.dashboard.url},
            "left": self.board.left(self.trading.snapshot),  # what a stop now would leave at the exchange
        }

    def handle_command(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "hardstop":
            reason = str(req.get("reason") or "operator")
            changed = self.hardstop(f"operator: {reason}", "cli")
            return {"ok": True, "changed": changed, "hard_stop": msgspec.to_builtins(self.latch.state)}
        if cmd == "reset-hardstop":
            changed = self.reset_hardstop()
            return {"ok": True, "changed": changed, "hard_stop": msgspec.to_builtins(self.latch.state)}
        if cmd == "stop":
            self.stopping = True
            self.stop_request = req  # stop --flatten asks for its latch to be cleared once every actor is down
            # What this stop leaves at the exchange: the loop reads no more position snapshots after this.
            return {"ok": True, "left": self.board.left(self.trading.snapshot)}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

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
        """One turn of the loop: sockets, sentinels, timers."""
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
                    self.board.on_message(msg)
                    if self.metrics is not None:
                        self.metrics.on_message(msg)
            # A sentinel fired: the exit is picked up by _check_actors below.
        now = time.monotonic_ns()
        if self.exchange is not None and not self.stopping:
            self.exchange.check()
        self._check_actors(now)
        if self.metrics is not None:
            self.metrics.refresh(self, now)
        if self.dashboard is not None:
            self.dashboard.refresh(self.status, now)
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

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.bus.close()

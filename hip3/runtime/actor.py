"""The base every actor stands on: a poll loop, heartbeats, the control subscription, READY, stop.

An actor is one OS process (``python supervisor.py start``, or ``python -m actors.<name>`` alone for
debugging) or one thread of an inproc integration test; the code is the same. What it gets here:

* one ``zmq.Poller`` loop that blocks (never spins: busy loops starve libzmq's I/O threads on two
  cores) over its sockets and any raw file descriptors (the feed's WebSocket), plus
  timers;
* the hard-stop state *before it acts*: the persisted latch is read first, and under a supervisor the
  actor also waits for the control stream's current state (the supervisor's XPUB replays it to every
  joiner), then applies every higher epoch as it arrives and acknowledges it;
* heartbeats (with READY, the hard-stop epoch it holds and its counters) to the supervisor's inbox, and
  an immediate ``Ready`` message whenever READY changes;
* a clean stop on SIGTERM/SIGINT, on a ``Shutdown`` control message, or when its parent dies (so no
  process is ever left behind when the supervisor is killed);
* time from ``hip3.clock`` (the real clock; a replay's virtual one), and ``start``/``step``/``close``
  for a driver that steps a whole graph in one thread (``hip3.replay``); ``run`` is unchanged.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import ClassVar

import zmq

from hip3 import clock
from hip3.config import Config
from hip3.hyperliquid.assets import UnknownMarkets
from hip3.messages import (
    Alert,
    HardStopAck,
    HardStopRequest,
    HardStopState,
    Heartbeat,
    Message,
    Msg,
    Ready,
    Shutdown,
)
from hip3.runtime.bus import Bus, Publisher, Receiver
from hip3.runtime.hardstop import Latch
from hip3.runtime.logs import Log, setup_logging

MessageHandler = Callable[[Message], None]

# The exit code of an actor that refused to start (``ActorStartError``): not a crash, a verdict.
START_REFUSED_EXIT = 3


class ActorStartError(RuntimeError):
    """The actor cannot start safely (no key, unusable state file). Its text is one line for the operator
    saying which file or setting and what to do: logged once, sent to the supervisor as the actor's READY
    detail and as a critical alert, and the process exits with ``START_REFUSED_EXIT``, no traceback."""


class Timer:
    """A periodic timer of the actor's loop (``Actor.every``). ``wake_by`` pulls its next run in."""

    __slots__ = ("due_ns", "fn", "interval_ns")

    def __init__(self, interval_ns: int, fn: Callable[[], None], due_ns: int) -> None:
        self.interval_ns = interval_ns
        self.fn = fn
        self.due_ns = due_ns

    def wake_by(self, due_ns: int) -> None:
        """Run no later than ``due_ns`` (monotonic); the loop re-reads due times every turn."""
        if due_ns < self.due_ns:
            self.due_ns = due_ns


class Actor:
    """Subclass it, set ``name``, create sockets in ``setup()`` and react in handlers.

    ``supervised``: wait for the supervisor's control state before acting, and exit if the parent
    dies. ``stop_event`` lets an inproc test stop the actor's thread.
    """

    name: ClassVar[str] = "actor"

    def __init__(self, cfg: Config, *, context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 stop_event: threading.Event | None = None, supervised: bool = False,
                 log: Log | None = None) -> None:
        self.cfg = cfg
        self.run_dir = cfg.run_path
        self.supervised = supervised
        self.stop_event = stop_event or threading.Event()
        self.log = log or setup_logging(self.name, self.run_dir, cfg.logging.level, cfg.logging.stderr,
                                               rotation=cfg.logging)
        self.bus = Bus(cfg, self.name, context=context, run_dir=self.run_dir)
        self.pid = os.getpid()
        self.ready = False
        self.ready_detail = "starting"
        self.hardstop: HardStopState = Latch.load(self.run_dir).to_message()
        self.stats: dict[str, int] = {}
        self._acked_epoch = -1
        self._start_refused = False
        self._bad_logged = 0  # malformed bus messages already reported in the log
        self._poller = zmq.Poller()
        self._handlers: dict[object, Callable[[], None]] = {}
        self._timers: list[Timer] = []
        self._receivers: list[Receiver] = []
        self._deferred: list[Callable[[], None]] = []
        self._parent_pid = os.getppid()
        self._supervisor_pid = int(os.environ.get("HIP3_SUPERVISOR_PID", "0") or 0)
        self.control = self.bus.subscriber(["control"])
        self.inbox = self.bus.pusher("inbox", immediate=False)

    # ---------------------------------------------------------------------------------------------
    # Wiring, for subclasses
    # ---------------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create sockets, register handlers and timers. Called once the hard-stop state is known."""

    def teardown(self) -> None:
        """Release what ``setup`` made (sockets are closed by the base)."""

    def on_hardstop(self, state: HardStopState) -> None:
        """Called for every new hard-stop epoch (latched or reset), before it is acknowledged."""

    def add_reader(self, target: zmq.Socket[bytes] | int, fn: Callable[[], None]) -> None:
        """Call ``fn`` whenever ``target`` (a zmq socket or a file descriptor) is readable."""
        self._poller.register(target, zmq.POLLIN)
        self._handlers[target] = fn

    def remove_reader(self, target: zmq.Socket[bytes] | int) -> None:
        if target in self._handlers:
            self._poller.unregister(target)
            del self._handlers[target]

    def on_messages(self, receiver: Receiver, handler: MessageHandler) -> None:
        """Dispatch every message that arrives on ``receiver`` to ``handler``."""
        self._receivers.append(receiver)

        def drain() -> None:
            for msg in receiver.drain():
                handler(msg)

        self.add_reader(receiver.sock, drain)

    def on_batch(self, receiver: Receiver, fn: Callable[[], None]) -> None:
        """Call ``fn`` when ``receiver`` is readable; ``fn`` drains it itself (one decision per batch).
        The receiver's gaps and bad frames still go out with heartbeats."""
        self._receivers.append(receiver)
        self.add_reader(receiver.sock, fn)

    def publisher(self, endpoint: str) -> Publisher:
        """Bind ``endpoint``'s publisher and serve its state to late joiners."""
        pub = self.bus.publisher(endpoint)
        def joined() -> None:
            pub.on_subscription()

        self.add_reader(pub.sock, joined)
        return pub

    def subscriber(self, endpoints: list[str], handler: MessageHandler,
                   only: tuple[type[Msg], ...] = ()) -> Receiver:
        """Subscribe to ``endpoints`` (``only`` these message types, if given) and dispatch to ``handler``."""
        rcv = self.bus.subscriber(endpoints, only)
        self.on_messages(rcv, handler)
        return rcv

    def puller(self, endpoint: str, handler: MessageHandler) -> Receiver:
        rcv = self.bus.puller(endpoint)
        self.on_messages(rcv, handler)
        return rcv

    def every(self, interval_ms: float, fn: Callable[[], None], first_in_ms: float | None = None) -> Timer:
        """Call ``fn`` every ``interval_ms`` (first after ``first_in_ms``, default one interval)."""
        now = clock.monotonic_ns()
        interval_ns = int(interval_ms * 1e6)
        first = interval_ns if first_in_ms is None else int(first_in_ms * 1e6)
        timer = Timer(interval_ns, fn, now + first)
        self._timers.append(timer)
        return timer

    def defer(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at the end of this loop turn, after every ready socket's handler: for the log lines
        of an order, so that the next message of the same burst (a second exit) is not kept waiting."""
        self._deferred.append(fn)

    def _run_deferred(self) -> None:
        deferred = self._deferred
        while deferred:
            batch = deferred[:]
            deferred.clear()
            for fn in batch:
                fn()

    def set_ready(self, ready: bool, detail: str = "") -> None:
        """Report READY (the actor is doing its job); sent at once when it changes."""
        if ready == self.ready and detail == self.ready_detail:
            return
        self.ready = ready
        self.ready_detail = detail
        self.inbox.send(Ready(actor=self.name, pid=self.pid, ready=ready, detail=detail))
        self.log.info("ready" if ready else "not_ready", detail=detail)

    def raise_hardstop(self, reason: str) -> None:
        """Ask the supervisor to latch the hard stop. It persists it and broadcasts it to every actor."""
        self.log.critical("hardstop_requested", reason=reason)
        self.inbox.send(HardStopRequest(reason=reason, source=self.name))

    def alert(self, level: str, text: str) -> None:
        self.log.warning("alert", level=level, text=text)
        self.inbox.send(Alert(level=level, actor=self.name, text=text))

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def stop(self) -> None:
        self.stop_event.set()

    # ---------------------------------------------------------------------------------------------
    # The loop
    # ---------------------------------------------------------------------------------------------

    def _on_control(self, msg: Message) -> None:
        if isinstance(msg, HardStopState):
            if msg.epoch > self.hardstop.epoch:
                self.hardstop = msg
                self.log.warning("hardstop_state", latched=msg.latched, reason=msg.reason, epoch=msg.epoch)
                self.on_hardstop(msg)
            if msg.epoch > self._acked_epoch and msg.epoch >= self.hardstop.epoch:
                self._acked_epoch = msg.epoch
                self.inbox.send(HardStopAck(actor=self.name, epoch=msg.epoch))
        elif isinstance(msg, Shutdown):
            self.log.info("shutdown_requested", reason=msg.reason)
            self.stop_event.set()

    def _await_control_state(self, timeout_ms: int) -> None:
        """Under a supervisor: block until the control stream's current state arrived (bounded)."""
        deadline = time.monotonic() + timeout_ms / 1000
        poller = zmq.Poller()
        poller.register(self.control.sock, zmq.POLLIN)
        while time.monotonic() < deadline and not self.stop_event.is_set():
            if poller.poll(50):
                got = False
                for msg in self.control.drain():
                    self._on_control(msg)
                    got = got or isinstance(msg, HardStopState)
                if got:
                    return
        self.log.warning("control_state_timeout", timeout_ms=timeout_ms, hardstop_epoch=self.hardstop.epoch)

    def _heartbeat(self) -> None:
        stats = dict(self.stats)
        gaps = sum(r.gaps for r in self._receivers)
        bad = sum(r.bad for r in self._receivers) + self.control.bad
        if gaps:
            stats["seq_gaps"] = gaps
        if bad:
            stats["bad_messages"] = bad
            if bad > self._bad_logged:  # every malformed bus message is logged: one line per heartbeat at most
                last = next((r.last_error for r in (*self._receivers, self.control) if r.last_error), "")
                self.log.warning("bad_messages", new=bad - self._bad_logged, total=bad, last_error=last)
                self._bad_logged = bad
        self.inbox.send(Heartbeat(actor=self.name, pid=self.pid, ready=self.ready,
                                  hardstop_epoch=self.hardstop.epoch, stats=stats))
        if self.supervised and self._parent_gone():
            self.log.error("parent_gone", parent_pid=self._parent_pid)
            self.stop_event.set()

    def _parent_gone(self) -> bool:
        if os.getppid() != self._parent_pid:
            return True
        if self._supervisor_pid:
            # A supervisor killed by SIGKILL may linger as a zombie: /proc tells its state.
            try:
                with open(f"/proc/{self._supervisor_pid}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
                return state in (b"Z", b"X")
            except (FileNotFoundError, ProcessLookupError):
                return True
            except (OSError, IndexError):
                return False
        return False

    def run(self) -> int:
        """Run until stopped. Returns the process exit code (0 = clean stop)."""
        self._begin()
        try:
            try:
                self._setup_all()
            except (ActorStartError, UnknownMarkets) as e:  # a market the exchange does not list: one line
                self._refuse_start(str(e))
                return START_REFUSED_EXIT
            self._loop()
        finally:
            self.close()
        return 0

    def _refuse_start(self, reason: str) -> None:
        self._start_refused = True
        self.log.critical("start_refused", reason=reason)
        self.inbox.send(Alert(level="critical", actor=self.name, text=f"{self.name} refused to start: {reason}"))
        self.set_ready(False, f"start refused: {reason}")

    # ---- stepping (hip3.replay drives every actor of a graph in one thread, in lock-step) ----------

    def start(self) -> None:
        """``run()`` without the loop: begin, ``setup()``, heartbeat timer. Then ``step()`` it, ``close()``."""
        self._begin()
        try:
            self._setup_all()
        except BaseException:
            self.close()
            raise

    def step(self, timeout_ms: int = 0) -> bool:
        """One turn of the loop: due timers, then ready sockets. True if anything ran."""
        now = clock.monotonic_ns()
        did = False
        for t in self._timers:
            if t.due_ns <= now:
                t.fn()
                t.due_ns = max(t.due_ns + t.interval_ns, now + 1)
                did = True
        handlers = self._handlers
        for target, _ in self._poller.poll(timeout_ms):
            handlers[target]()
            did = True
        self._run_deferred()
        return did

    def next_due_ns(self) -> int:
        """The earliest due time of this actor's timers (monotonic ns)."""
        return min((t.due_ns for t in self._timers), default=clock.monotonic_ns() + 100_000_000)

    def busy(self) -> bool:
        """Work in flight outside the loop (a worker thread's request). A stepping driver steps a busy
        actor alone until it is not (the position tracker's REST sync)."""
        return False

    def close(self) -> None:
        """Tear down (``teardown()``, READY false, sockets closed). Called once, after ``start``/``run``."""
        try:
            self._run_deferred()  # the log lines of the last turn
            self.teardown()
        finally:
            if not self._start_refused:  # keep the refusal as the last word the supervisor hears
                self.set_ready(False, "stopped")
            self.log.info("stopped")
            self.bus.close()

    def _begin(self) -> None:
        self.log.info("starting", pid=self.pid, hardstop_epoch=self.hardstop.epoch, latched=self.hardstop.latched)
        self.add_reader(self.control.sock, self._drain_control)
        if self.supervised:
            self._await_control_state(self.cfg.supervisor.ready_timeout_ms)

    def _setup_all(self) -> None:
        self.setup()
        self.every(self.cfg.supervisor.heartbeat_interval_ms, self._heartbeat, first_in_ms=0)

    def _drain_control(self) -> None:
        for msg in self.control.drain():
            self._on_control(msg)

    def _loop(self) -> None:
        poll = self._poller.poll
        handlers = self._handlers
        timers = self._timers
        stop = self.stop_event
        while not stop.is_set():
            now = clock.monotonic_ns()
            next_due = now + 100_000_000  # wake at least every 100 ms to notice a stop
            for t in timers:
                if t.due_ns <= now:
                    t.fn()
                    t.due_ns = max(t.due_ns + t.interval_ns, now + 1)
                if t.due_ns < next_due:
                    next_due = t.due_ns
            timeout_ms = max(0, (next_due - clock.monotonic_ns()) // 1_000_000)
            for target, _ in poll(timeout_ms):
                handlers[target]()
            if self._deferred:
                self._run_deferred()


def install_signal_handlers(actor: Actor) -> None:
    """SIGTERM/SIGINT stop the actor cleanly (process mode only: signals go to the main thread)."""

    def _stop(signum: int, _frame: object) -> None:
        actor.log.info("signal", signal=signal.Signals(signum).name)
        actor.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

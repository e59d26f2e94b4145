"""The supervisor core without processes: fake actors (handles the test controls), an injected clock, and
the test speaking for the actors over the real inbox (inproc). For the stall and latch-fault tests."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import msgspec
import zmq

from hip3.messages import HardStopState, Heartbeat, Msg, Ready
from hip3.runtime.bus import Bus
from hip3.runtime.logs import Log
from hip3.runtime.supervisor import Supervisor
from tests.conftest import make_config


class FakeHandle:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sentinel = None
        self.code: int | None = None
        self.killed = False

    def exitcode(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        self.code = -15

    def kill(self) -> None:
        self.killed = True
        self.code = -9

    def join(self, timeout: float) -> None:
        pass


class FakeLauncher:
    def __init__(self) -> None:
        self.launched: list[tuple[str, FakeHandle]] = []
        self._pids = itertools.count(1000)

    def launch(self, name: str) -> FakeHandle:
        h = FakeHandle(next(self._pids))
        self.launched.append((name, h))
        return h

    def close(self) -> None:
        pass


class Clock:
    """Monotonic ns the test moves by hand."""

    def __init__(self) -> None:
        self.now_ns = 1_000_000_000_000

    def __call__(self) -> int:
        return self.now_ns

    def advance_ms(self, ms: float) -> None:
        self.now_ns += int(ms * 1e6)


class Core:
    """A Supervisor over inproc with fake actors. ``extra`` is appended to the config."""

    def __init__(self, run_dir: Path, actors: tuple[str, ...], extra: str = "") -> None:
        names = ", ".join(f'"{a}"' for a in actors)
        self.cfg = make_config(run_dir, f'[bus]\ntransport = "inproc"\n[supervisor]\nactors = [{names}]\n' + extra)
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.clock = Clock()
        self.launcher = FakeLauncher()
        self.sup = Supervisor(self.cfg, self.launcher, Log("supervisor"), context=self.ctx, clock_ns=self.clock)
        self.bus = Bus(self.cfg, "actors", context=self.ctx, run_dir=run_dir)
        self.inbox = self.bus.pusher("inbox", immediate=False)
        self.control = self.bus.subscriber(["control"])
        self.req = self.ctx.socket(zmq.DEALER)
        self.req.setsockopt(zmq.LINGER, 0)
        self.req.connect(self.sup.bus.address("ctl"))

    def pid(self, name: str) -> int:
        pid = self.sup.slots[name].pid
        assert pid is not None
        return pid

    def send(self, msg: Msg) -> None:
        self.inbox.send(msg)

    def ready(self, name: str, detail: str = "ok") -> None:
        self.send(Ready(actor=name, pid=self.pid(name), ready=True, detail=detail))

    def heartbeat(self, *names: str) -> None:
        for n in names:
            self.send(Heartbeat(actor=n, pid=self.pid(n), ready=True, hardstop_epoch=0, stats={}))

    def step(self) -> None:
        self.sup.step(0)

    def start_all(self) -> None:
        """Launch every actor in order and make each READY."""
        for name in self.sup.slots:
            self.step()
            assert self.sup.slots[name].state == "starting", (name, self.sup.slots[name].state)
            self.ready(name)
            self.step()
            assert self.sup.slots[name].state == "running"

    def kills(self) -> list[str]:
        return [n for n, h in self.launcher.launched if h.killed]

    def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        """A ctl command, answered by the supervisor's loop."""
        self.req.send_multipart([b"", msgspec.json.encode(body)])
        for _ in range(200):
            self.step()
            try:
                frames = self.req.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            reply: dict[str, Any] = msgspec.json.decode(frames[-1])
            return reply
        raise AssertionError("no reply from the supervisor")

    def broadcast_states(self) -> list[HardStopState]:
        return [m for m in self.control.drain() if isinstance(m, HardStopState)]

    def close(self) -> None:
        self.req.close()
        self.bus.close()
        self.sup.close()
        self.ctx.term()

"""hip3.ops.sd_notify and hip3.ops.service: systemd's notification protocol, against a socket the test binds."""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.ops.readiness import Verdict
from hip3.ops.sd_notify import SdNotify, Watchdog
from hip3.ops.service import Service


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """The service manager's end: a unix datagram socket bound where NOTIFY_SOCKET points."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def _drain(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2.0)
    return out


def test_messages_reach_the_socket_and_the_variables_leave_the_environment(manager: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": manager.getsockname(), "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid()),
           "OTHER": "kept"}
    n = SdNotify.from_environment(env)
    assert env == {"OTHER": "kept"}  # no child process inherits them (sd_notify's unset_environment)
    assert n.enabled and n.watchdog_usec == 3_000_000
    assert n.ready("2 of 6 actors not READY:\nfeed (starting)")
    assert _recv(manager) == "READY=1\nSTATUS=2 of 6 actors not READY: feed (starting)"
    assert n.watchdog() and _recv(manager) == "WATCHDOG=1"
    assert n.status("all 6 actors READY") and _recv(manager) == "STATUS=all 6 actors READY"
    assert n.stopping("stopping the actors") and _recv(manager) == "STOPPING=1\nSTATUS=stopping the actors"
    assert n.sent == 4 and n.failed == 0
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"hip3-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = SdNotify.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert n.ready() and _recv(sock) == "READY=1"
    finally:
        sock.close()


def test_a_watchdog_meant_for_another_process_or_malformed_is_not_ours(manager: socket.socket) -> None:
    path = manager.getsockname()
    assert SdNotify.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000",
                                      "WATCHDOG_PID": "1"}, pid=4242).watchdog_usec == 0
    assert SdNotify.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"}).watchdog_usec == 0
    assert SdNotify.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "500000"}).watchdog_usec == 500_000


def test_no_manager_and_a_manager_that_does_not_read_never_block(tmp_path: Path) -> None:
    none = SdNotify.from_environment({})
    assert not none.enabled and not none.ready() and none.failed == 0
    gone = SdNotify.from_environment({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert not gone.ready() and gone.failed == 1
    # A manager whose queue is full: every send returns at once, failed and counted.
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(tmp_path / "deaf"))
    n = SdNotify.from_environment({"NOTIFY_SOCKET": str(tmp_path / "deaf")})
    t0 = time.monotonic()
    for _ in range(5000):
        n.watchdog()
    assert time.monotonic() - t0 < 5
    assert n.failed > 0 and n.sent > 0
    deaf.close()


def test_watchdog_pings_every_half_interval_and_once_after_a_stall() -> None:
    w = Watchdog(1_000_000)  # WatchdogSec=1s: a ping every 0.5 s
    ms = 1_000_000
    assert w.due(0) and not w.due(499 * ms) and w.due(500 * ms) and not w.due(900 * ms)
    assert w.due(5_000 * ms)  # a stall of 4 s: one ping when the loop turns again...
    assert not w.due(5_001 * ms)  # ...not the seven it missed
    assert not Watchdog(0).due(10**12)


class _Sup:
    def __init__(self) -> None:
        self.probes = self
        self.verdict: Verdict | None = None


def test_service_ready_status_and_pings_come_from_the_loop_only_while_it_turns(manager: socket.socket,
                                                                               tmp_path: Path) -> None:
    """A loop thread ticks every 5 ms (WatchdogSec = 0.2 s: a ping every 100 ms). While the loop is stalled
    (blocked on an event, as a hung supervisor would be) no ping arrives; when it turns again they resume."""
    notify = SdNotify.from_environment({"NOTIFY_SOCKET": manager.getsockname(), "WATCHDOG_USEC": "200000"})
    svc = Service(notify, tmp_path, keep_files=3)
    sup = _Sup()
    sup.verdict = Verdict(False, "1 of 6 actors not READY: feed (starting)", 0)
    running = threading.Event()
    running.set()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            running.wait()
            svc.tick(sup)  # type: ignore[arg-type]
            time.sleep(0.005)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        assert _recv(manager) == "READY=1\nSTATUS=1 of 6 actors not READY: feed (starting)"
        arrivals = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.65:
            msg = _recv(manager)
            assert msg == "WATCHDOG=1"
            arrivals.append(time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert len(arrivals) >= 5 and all(0.085 <= g <= 0.3 for g in gaps), gaps
        sup.verdict = Verdict(True, "all 6 actors READY", 0)
        assert "STATUS=all 6 actors READY" in [_recv(manager) for _ in range(3)]
        running.clear()  # the loop stalls
        time.sleep(0.05)
        _drain(manager)
        time.sleep(0.6)  # three ping periods
        assert _drain(manager) == []
        running.set()  # it turns again: one ping at once, then the cadence
        t1 = time.monotonic()
        assert _recv(manager) == "WATCHDOG=1" and time.monotonic() - t1 < 0.1
    finally:
        stop.set()
        running.set()
        th.join(2)
    svc.stopping()
    assert _drain(manager)[-1] == "STOPPING=1\nSTATUS=stopping the actors"


def test_service_keeps_the_logs_house_off_the_actors(tmp_path: Path) -> None:
    """Every second: a spare ready for each log's next rotation, the rotated files beyond keep_files deleted."""
    (tmp_path / "executor.log").write_text("x\n")
    for n in range(1, 8):
        (tmp_path / f"executor.log.{n:06d}").write_text("x\n")
    now = [0]
    svc = Service(SdNotify(None), tmp_path, keep_files=2, clock_ns=lambda: now[0])
    sup = _Sup()
    svc.tick(sup)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".executor.log.spare", "executor.log",
                                                          "executor.log.000006", "executor.log.000007"]
    (tmp_path / "executor.log.000008").write_text("x\n")
    (tmp_path / ".executor.log.spare").unlink()  # a rotation used it
    now[0] = 500_000_000
    svc.tick(sup)  # type: ignore[arg-type]
    assert len(list(tmp_path.iterdir())) == 4  # not every turn: every HOUSEKEEP_INTERVAL_S
    now[0] = 1_000_000_000
    svc.tick(sup)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".executor.log.spare", "executor.log",
                                                          "executor.log.000007", "executor.log.000008"]

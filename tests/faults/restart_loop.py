"""What systemd does for ``deploy/hip3.service``, in a test's bounds: run the supervisor, restart it when it dies.

Also the pieces around it: the simulator as its own process (``start_simulator``: the exchange outlives the
supervisor, as a real one does), the notification socket (``NotifyListener``) and one kill of the supervisor
with a position open, measured (``ServiceRun.kill_with_position``).

The unit says ``Restart=on-failure``, ``RestartPreventExitStatus=2``, ``KillMode=mixed`` and a
``RestartSec``. So when the supervisor's process ends:

* exit status 0 (an operator's stop) or 2 (hip3's own one-line refusal): it stays stopped;
* anything else (killed by a signal, a crash): with ``KillMode=mixed`` systemd sends SIGKILL to what is
  left of the unit's cgroup once the main process has exited (systemd.kill(5)); here every process of the
  run directory (the actors would follow their supervisor within about 0.5 s anyway: they watch it). Once
  they are gone, ``RestartSec``, then it starts the supervisor again.

The loop is bounded (``max_restarts``, and ``stop()``), runs on a thread, and records what happened with
wall-clock times (``events``) for the test's measurements. Shared by ``tests/faults/test_supervisor_death.py``
and ``python -m bench.supervisor_death``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hip3.config import REPO_ROOT
from tests.conftest import stop_process
from tests.faults.session import Session, read_jsonl, wait_until

UNIT = REPO_ROOT / "deploy" / "hip3.service"


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """``Key`` -> values (a key may repeat) of a systemd unit file, every section merged; comments skipped."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or line.startswith("["):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def seconds(value: str) -> float:
    """A systemd time span in the forms the unit uses: ``1s``, ``500ms``, ``2min``, a bare number (s)."""
    v = value.strip()
    for suffix, factor in (("ms", 0.001), ("min", 60.0), ("s", 1.0)):
        if v.endswith(suffix):
            return float(v[: -len(suffix)]) * factor
    return float(v)


@dataclass
class Event:
    at: float  # time.time()
    kind: str  # started | exited | restarting | gave_up
    pid: int | None = None
    code: int | None = None


class RestartLoop:
    """Runs ``cmd``; restarts it after ``restart_sec`` when it dies the way ``Restart=on-failure`` restarts."""

    def __init__(self, cmd: list[str], env: dict[str, str], restart_sec: float,
                 leftovers: Callable[[], list[int]], log_path: Path, *, max_restarts: int = 3,
                 prevent_exit_status: tuple[int, ...] = (2,), stop_timeout_s: float = 30.0) -> None:
        self.cmd = cmd
        self.env = env
        self.restart_sec = restart_sec
        self.leftovers = leftovers
        self.log_path = log_path
        self.max_restarts = max_restarts
        self.prevent = prevent_exit_status
        self.stop_timeout_s = stop_timeout_s
        self.events: list[Event] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="restart-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def pid(self) -> int | None:
        p = self.proc
        return p.pid if p is not None and p.poll() is None else None

    def started(self) -> list[Event]:
        return [e for e in self.events if e.kind == "started"]

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), start_new_session=True)
        self.events.append(Event(time.time(), "started", self.proc.pid))

    def _run(self) -> None:
        self._spawn()
        while True:
            assert self.proc is not None
            code = self.proc.wait()
            self.events.append(Event(time.time(), "exited", self.proc.pid, code))
            if self._stopping.is_set() or code == 0 or code in self.prevent:
                return
            if self.restarts >= self.max_restarts:
                self.events.append(Event(time.time(), "gave_up"))
                return
            # The main process is gone: what is left of the unit's cgroup is killed (KillMode=mixed).
            deadline = time.monotonic() + self.stop_timeout_s
            while (left := self.leftovers()) and time.monotonic() < deadline:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                time.sleep(0.005)
            self.events.append(Event(time.time(), "restarting"))
            if self._stopping.wait(self.restart_sec):
                return
            self.restarts += 1
            self._spawn()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """``systemctl stop``: SIGTERM to the supervisor (KillMode=mixed), wait; SIGKILL past the timeout."""
        self._stopping.set()
        p = self.proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self._thread.join(timeout_s)
        return p.returncode if p is not None else None


class NotifyListener:
    """The service manager's notification socket (``NOTIFY_SOCKET``), bound by the test: every datagram with
    its arrival time (``time.time()``) and, as systemd reads it for ``NotifyAccess=main``, the sending
    process's pid (``SO_PASSCRED``: the kernel's word, not the sender's), read on a thread."""

    def __init__(self, path: Path) -> None:
        import socket

        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self.senders: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import socket
        import struct

        while not self._stop.is_set():
            try:
                data, anc, _, _ = self._sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            except OSError:
                return
            pid = next((struct.unpack("3i", d[:12])[0] for lvl, typ, d in anc
                        if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS), 0)
            with self._lock:
                self.messages.append((time.time(), data.decode(errors="replace")))
                self.senders.append(pid)

    def since(self, t: float, field: str | None = None) -> list[tuple[float, str]]:
        """Messages that arrived after ``t`` (containing the line ``field``, e.g. ``READY=1``)."""
        with self._lock:
            return [(at, m) for at, m in self.messages if at > t and (field is None or field in m.split("\n"))]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


# -------------------------------------------------------------------------------------------------
# The exchange, outside the supervisor
# -------------------------------------------------------------------------------------------------

SIM_MODEL = "[sim.model]\noracle_interval_ms = 500\nmaker_lag_ms = 1500\njump_prob = 0.15\n"


@dataclass
class Simulator:
    proc: subprocess.Popen[bytes]
    url: str
    account: str
    key: str
    config: Path
    out: Any

    def stop(self) -> None:
        stop_process(self.proc, 5)
        self.out.close()


def start_simulator(run_dir: Path, sim_toml: str = SIM_MODEL, seed: int = 5) -> Simulator:
    """``python -m hip3.sim`` on 127.0.0.1 with a fresh funded account (a throwaway key); its order log in
    ``<run_dir>/sim/orders.jsonl`` as in paper mode. ``sim_toml``: a config whose ``[sim]`` table it reads."""
    from eth_account import Account

    key = "0x" + secrets.token_hex(32)
    account = Account.from_key(key).address.lower()
    (run_dir / "sim").mkdir(parents=True, exist_ok=True)
    sim_cfg = run_dir / "sim.toml"
    sim_cfg.write_text(sim_toml)
    out = open(run_dir / "sim" / "stdout.log", "wb")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen([sys.executable, "-m", "hip3.sim", "--port", "0", "--seed", str(seed), "--config",
                             str(sim_cfg), "--order-log", str(run_dir / "sim" / "orders.jsonl"),
                             "--fund", f"{account}:100000"], stdout=out, stderr=subprocess.STDOUT,
                            cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL)
    log = run_dir / "sim" / "stdout.log"
    if not wait_until(lambda: "SIM READY port=" in log.read_text(), 30):
        stop_process(proc, 5)
        out.close()
        raise RuntimeError(f"the simulator did not start: {log.read_text()[-500:]}")
    port = log.read_text().split("SIM READY port=")[1].split()[0]
    return Simulator(proc, f"http://127.0.0.1:{port}", account, key, sim_cfg, out)


# -------------------------------------------------------------------------------------------------
# The supervisor as the unit runs it, and its death
# -------------------------------------------------------------------------------------------------

HIP3 = Path(sys.executable).with_name("hip3")


@dataclass
class Kill:
    """One ``kill -9`` of the supervisor with a position open, and what followed (wall-clock seconds)."""

    coin: str
    size: float
    at: float
    actors_gone: float = 0.0  # every process of the run directory gone
    restarted: float = 0.0  # the service manager started the supervisor again
    ready_notified: float = 0.0  # its READY=1
    exits_resumed: float = 0.0  # the restarted exit watcher READY (it has the tracker's synced positions)
    closed: float = 0.0  # the last fill that took the position to zero
    exit_watcher_pid: int = 0
    ledger: dict[str, float] = field(default_factory=dict)  # run/ownership.json as the dead tracker left it
    fills: list[dict[str, Any]] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        return {k: round(getattr(self, k) - self.at, 3) for k in
                ("actors_gone", "restarted", "ready_notified", "exits_resumed", "closed")}


def ownership(run_dir: Path) -> dict[str, float]:
    """hip3's part per coin, from the position tracker's ledger (``run/ownership.json``)."""
    try:
        raw = json.loads((run_dir / "ownership.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {c: float(v) for c, v in raw.get("own", {}).items()}


def owned_position(s: Session) -> tuple[str, float] | None:
    """A position the exchange holds that the ledger says is all hip3's."""
    held, own = s.sim_positions(), ownership(s.run_dir)
    return next(((c, z) for c, z in held.items() if own.get(c) == z), None)


class ServiceRun:
    """A paper session against ``sim``, its supervisor run by ``RestartLoop`` as the unit runs it (the ``hip3``
    console script, ``start --log-format console``, ``NOTIFY_SOCKET``)."""

    def __init__(self, run_dir: Path, sim: Simulator, restart_sec: float, config_text: str | None = None) -> None:
        self.s = Session(run_dir, exchange=(sim.url, sim.account))
        if config_text is not None:  # another config than the fault tests' (the same exchange and account)
            self.s.config_path.write_text(config_text)
            from hip3.config import parse_config

            self.s.cfg = parse_config(config_text, str(self.s.config_path))
        self.s._exchange = {"url": sim.url, "account": sim.account}
        self.notify = NotifyListener(run_dir / "notify.sock")
        env = dict(os.environ, HIP3_RUN_DIR=str(self.s.run_dir), HIP3_SIM_KEY=sim.key,
                   NOTIFY_SOCKET=str(self.notify.path),
                   PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        env.pop("HIP3_CONFIG", None)
        (self.s.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.loop = RestartLoop([str(HIP3), "start", "--log-format", "console", "--config", str(self.s.config_path)],
                                env, restart_sec, self.s.run_dir_processes, self.s.run_dir / "logs" / "service.out",
                                max_restarts=1000)

    def start(self, timeout_s: float = 90) -> None:
        self.loop.start()
        if not wait_until(lambda: self.notify.since(0, "READY=1"), timeout_s, 0.1):
            raise RuntimeError("no READY=1 from the supervisor: see " + str(self.s.run_dir / "logs" / "service.out"))
        if not wait_until(self.s.all_ready, 60, 0.2):
            raise RuntimeError(f"not every actor READY: {self.s.status()['actors']}")

    def kill_with_position(self, timeout_s: float = 60) -> Kill:
        """Wait for a position hip3 owns, ``kill -9`` the supervisor while the exchange still holds it (another
        try if the exit closed it in that instant), then follow the restart until the position is closed."""
        s, loop = self.s, self.loop
        for _ in range(5):
            if not wait_until(lambda: owned_position(s) is not None, timeout_s, 0.05):
                raise RuntimeError(f"no owned position: {s.sim_positions()} {ownership(s.run_dir)}")
            candidate, pid = owned_position(s), loop.pid
            assert candidate is not None and pid is not None
            n = len(loop.started())
            kill = Kill(candidate[0], candidate[1], time.time())
            os.kill(pid, signal.SIGKILL)
            if s.sim_positions().get(kill.coin) == kill.size:
                break
            if not wait_until(lambda: len(loop.started()) > n and s.all_ready(), 90, 0.2):  # noqa: B023
                raise RuntimeError("the supervisor did not come back")
        else:
            raise RuntimeError("every position closed before the kill could catch it")
        if not wait_until(lambda: not s.run_dir_processes(), 10, 0.01):
            raise RuntimeError(f"processes outlived their supervisor: {s.leftover_processes()}")
        kill.actors_gone = time.time()
        kill.ledger = ownership(s.run_dir)
        if not wait_until(lambda: len(loop.started()) == n + 1, 30, 0.01):
            raise RuntimeError(f"not restarted: {loop.events}")
        kill.restarted = loop.started()[-1].at
        if not wait_until(lambda: self.notify.since(kill.restarted, "READY=1"), 90, 0.02):
            raise RuntimeError("no READY=1 after the restart")
        kill.ready_notified = self.notify.since(kill.restarted, "READY=1")[0][0]
        if not wait_until(s.all_ready, 60, 0.1):
            raise RuntimeError(f"not every actor READY after the restart: {s.status()['actors']}")
        kill.exit_watcher_pid = s.pids()["exit_watcher"]
        kill.exits_resumed = first_ts(s.run_dir / "logs" / "exit_watcher.log", "ready", kill.at) or 0.0
        if not wait_until(lambda: bool(self.closing_fills(kill)), timeout_s, 0.1):
            raise RuntimeError(f"the position was not closed: {s.sim_positions()}")
        kill.fills = self.closing_fills(kill)
        kill.closed = float(kill.fills[-1]["time"]) / 1000
        return kill

    def closing_fills(self, kill: Kill) -> list[dict[str, Any]]:
        """The fills after the kill that took the killed session's position in ``kill.coin`` to zero ([] until
        they all happened)."""
        fills = sorted((f for f in self.s.sim_fills() if f["coin"] == kill.coin and f["time"] >= kill.at * 1000),
                       key=lambda f: (f["time"], f["tid"]))
        out, pos = [], kill.size
        for f in fills:
            if pos == 0:
                break
            out.append(f)
            pos += float(f["sz"]) * (1 if f["side"] == "B" else -1)
        return out if abs(pos) < 1e-12 else []

    def close(self) -> None:
        self.loop.stop()
        self.notify.close()
        self.s.close()


def first_ts(path: Path, event: str, after: float) -> float | None:
    """The wall-clock time of the first ``event`` line of a JSON log after ``after``."""
    for rec in read_jsonl(path):
        if rec.get("event") == event and float(rec.get("ts", 0)) > after:
            return float(rec["ts"])
    return None

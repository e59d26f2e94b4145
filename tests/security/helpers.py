"""Helpers for the security tests: a secret scanner, the simulator as a process, a supervisor session driven
through the CLI, and /proc readers (listening sockets, environments, command lines) for the session's pids."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hip3.config import REPO_ROOT
from tests.conftest import stop_process

SUPERVISOR = str(REPO_ROOT / "supervisor.py")


# ---------------------------------------------------------------- the scanner


def secret_needles(key_hex: str | None = None, password: str | None = None) -> dict[str, bytes]:
    """What a leak looks like. Text is lower-cased before the search, so one hex needle covers the key with
    and without 0x, upper, lower and mixed case; the raw bytes and base64 cover binary and encoded copies."""
    needles: dict[str, bytes] = {}
    if key_hex is not None:
        h = key_hex.lower().removeprefix("0x")
        assert len(h) == 64
        needles["key-hex"] = h.encode()
        needles["key-bytes"] = bytes.fromhex(h)
        needles["key-base64"] = base64.b64encode(bytes.fromhex(h)).rstrip(b"=")
        needles["key-hex-spaced"] = " ".join(h[i:i + 2] for i in range(0, 64, 2)).encode()
    if password is not None:
        needles["password"] = password.encode()
        needles["password-lower"] = password.lower().encode()
    return needles


def scan_bytes(data: bytes, needles: dict[str, bytes]) -> list[str]:
    lower = data.lower()
    found = []
    for name, n in needles.items():
        hay = data if name in ("key-bytes", "key-base64", "password") else lower
        if n in hay:
            found.append(name)
    return found


def scan_tree(roots: Iterable[Path], needles: dict[str, bytes]) -> tuple[int, list[tuple[str, str]]]:
    """Every regular file under ``roots`` (sockets and fifos skipped). Returns (files scanned, hits)."""
    hits: list[tuple[str, str]] = []
    n = 0
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*"))
        for p in paths:
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            n += 1
            hits.extend((str(p), name) for name in scan_bytes(p.read_bytes(), needles))
    return n, hits


# ---------------------------------------------------------------- the simulator as a process


class SimProcess:
    """``python -m hip3.sim`` on 127.0.0.1, the account funded; its order log and stdout under ``directory``."""

    def __init__(self, directory: Path, fund: str, config: Path | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.order_log = directory / "orders.jsonl"
        self.stdout = directory / "sim.out"
        cmd = [sys.executable, "-m", "hip3.sim", "--host", "127.0.0.1", "--port", "0", "--seed", "3",
               "--order-log", str(self.order_log), "--fund", f"{fund}:100000"]
        if config is not None:
            cmd += ["--config", str(config)]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        for k in ("HIP3_PRIVATE_KEY", "HIP3_KEYSTORE", "HIP3_KEYSTORE_PASSWORD", "HIP3_KEYSTORE_PASSWORD_FILE"):
            env.pop(k, None)
        with open(self.stdout, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        self.port = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.port:
            assert self.proc.poll() is None, self.stdout.read_text()
            for line in self.stdout.read_text(errors="replace").splitlines():
                if line.startswith("SIM READY port="):
                    self.port = int(line.split("=", 1)[1].split()[0])
            time.sleep(0.05)
        assert self.port, "the simulator did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, **cmd: Any) -> Any:
        req = urllib.request.Request(self.url + "/sim/control", data=json.dumps(cmd).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def orders(self) -> list[dict[str, Any]]:
        if not self.order_log.exists():
            return []
        return [json.loads(x) for x in self.order_log.read_text().splitlines() if x.strip()]

    def stop(self) -> None:
        stop_process(self.proc, 10)


# ---------------------------------------------------------------- a supervisor session through the CLI


def cli(config: Path, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python supervisor.py <args> --config <config>`` with ``env``; output captured."""
    env = {k: v for k, v in env.items() if k != "HIP3_RUN_DIR"}
    return subprocess.run([sys.executable, SUPERVISOR, *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO_ROOT)


class Session:
    """``supervisor.py start`` in the foreground (its stdout/stderr captured to files), driven by CLI calls
    whose outputs are kept for the scan."""

    def __init__(self, config: Path, env: dict[str, str], out_dir: Path, live: bool) -> None:
        self.config = config
        self.env = env
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.cli_outputs: list[str] = []
        self.stdout = out_dir / "start.stdout"
        self.stderr = out_dir / "start.stderr"
        cmd = [sys.executable, SUPERVISOR, "start", "--config", str(config)] + (["--live"] if live else [])
        with open(self.stdout, "wb") as o, open(self.stderr, "wb") as e:
            self.proc = subprocess.Popen(cmd, stdout=o, stderr=e, env=env, cwd=REPO_ROOT)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = cli(self.config, self.env, *args, timeout=timeout)
        self.cli_outputs.append(f"$ {' '.join(args)}\n{r.stdout}\n{r.stderr}")
        return r

    def status(self) -> dict[str, Any]:
        r = self.cli("status", "--json", timeout=30)
        try:
            result: dict[str, Any] = json.loads(r.stdout)
        except ValueError:
            return {"running": False, "actors": []}
        return result

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr.read_text()[-3000:]
            st = self.status()
            if st.get("running") and st["actors"] and all(a["ready"] for a in st["actors"]):
                return st
            time.sleep(0.3)
        raise AssertionError(f"not READY: {st}\n{self.stderr.read_text()[-3000:]}")

    def pids(self) -> list[int]:
        """The supervisor and every process below it (forkserver, actors, a paper simulator)."""
        return [self.proc.pid, *descendants(self.proc.pid)]

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill_all(self) -> None:
        """Last resort in a finally: the supervisor's own descendants only, by pid."""
        for pid in reversed(self.pids()):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            self.proc.wait(10)


# ---------------------------------------------------------------- /proc


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            pp = _ppid(int(d))
            if pp is not None:
                children.setdefault(pp, []).append(int(d))
    out: list[int] = []
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def proc_blob(pid: int, what: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return b""


def _socket_inodes(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, PermissionError):
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _hex_addr(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6: four little-endian 32-bit words
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listening_sockets(pids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(pid, local address, port) of every TCP socket in LISTEN state (and bound UDP) held by ``pids``."""
    inode_pid: dict[int, int] = {}
    for pid in pids:
        for ino in _socket_inodes(pid):
            inode_pid[ino] = pid
    out: list[tuple[int, str, int]] = []
    for table, listen_state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], int(parts[9])
            if state != listen_state or inode not in inode_pid:
                continue
            ip, port = local.split(":")
            out.append((inode_pid[inode], _hex_addr(ip), int(port, 16)))
    return out


def loose_permissions(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that anyone but the user can read, write or enter."""
    bad = []
    for p in [root, *sorted(root.rglob("*"))]:
        try:
            mode = p.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            continue
        if mode & 0o077:
            bad.append(f"{p} {stat.filemode(mode)}")
    return bad

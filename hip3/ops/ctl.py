"""The operator's line to a session: the run directory's lock (one supervisor per run directory; the
holder's pid is in the file) and the control-socket client that sends one command to the running
supervisor. ``CliError`` is every command's one-line refusal."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any, TextIO

import msgspec
import zmq

from hip3.config import Config
from hip3.runtime.bus import endpoint_address
from hip3.runtime.hardstop import LatchFileError, read_latch

LOCK_FILE = "supervisor.lock"


class CliError(Exception):
    """One line for the operator, and a non-zero exit (2 unless ``exit_code`` says otherwise)."""

    def __init__(self, text: str, exit_code: int = 2) -> None:
        super().__init__(text)
        self.exit_code = exit_code


# -------------------------------------------------------------------------------------------------
# The run-directory lock: one supervisor per run directory.
# -------------------------------------------------------------------------------------------------


def lock_holder(run_dir: Path) -> int | None:
    """The pid holding the lock, or None if no supervisor runs on ``run_dir``."""
    path = run_dir / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


def _acquire_lock(run_dir: Path) -> TextIO:
    f = open(run_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the supervisor's lifetime
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise CliError(f"another supervisor (pid {holder}) is already running on run directory {run_dir}") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


# -------------------------------------------------------------------------------------------------
# The control-socket client.
# -------------------------------------------------------------------------------------------------


def request(cfg: Config, body: dict[str, Any], timeout_ms: int = 3000) -> dict[str, Any]:
    """Send one command to the running supervisor and return its JSON reply."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    try:
        sock.connect(endpoint_address(cfg, "ctl"))
        sock.send(msgspec.json.encode(body))
        reply: dict[str, Any] = msgspec.json.decode(sock.recv())
        return reply
    except zmq.Again:
        raise CliError(f"the supervisor on {cfg.run_path} did not answer within {timeout_ms} ms") from None
    finally:
        sock.close()


def read_status(cfg: Config) -> dict[str, Any]:
    """The running supervisor's status, or what the run directory says when none runs."""
    run_dir = cfg.run_path
    if lock_holder(run_dir) is None:
        hard_stop: dict[str, Any]
        try:
            st = read_latch(run_dir / "hardstop.json")
            hard_stop = {"latched": st.latched, "reason": st.reason, "epoch": st.epoch}
        except LatchFileError as e:  # unknown: reported, and a start refuses it
            hard_stop = {"latched": None, "reason": None, "epoch": None, "unreadable": str(e)}
        return {"run_dir": str(run_dir), "running": False, "hard_stop": hard_stop, "actors": []}
    return request(cfg, {"cmd": "status"})

"""Helpers for end-to-end tests that drive ``supervisor.py`` with real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hip3.config import REPO_ROOT

SUPERVISOR = str(REPO_ROOT / "supervisor.py")


def cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("HIP3_RUN_DIR", None)
    return subprocess.run([sys.executable, SUPERVISOR, *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def status(config: Path) -> dict[str, Any]:
    r = cli(config, "status", "--json", timeout=30)
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


def wait_until(pred: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


"""End to end: supervisor.py with real actor processes over ipc://.

start; kill -9 one actor: it is back, READY, and knows the hard-stop state; hard stop set, supervisor
killed and restarted: still latched; stop leaves no process behind; a second supervisor is refused.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import alive, cli, status, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    path = run_dir / "hip3.toml"
    path.write_text(f'run_dir = "{run_dir}"\nmode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n'
                    "[logging]\nstderr = false\n")
    yield path
    cli(path, "stop", timeout=60)


def _pids(st: dict) -> dict[str, int]:  # type: ignore[type-arg]
    return {a["name"]: a["pid"] for a in st["actors"]}


def test_lifecycle_kill_restart_hardstop_survives_supervisor_restart(config: Path, run_dir: Path) -> None:
    r = cli(config, "start", "--detach")
    assert r.returncode == 0, r.stderr
    st = status(config)
    assert st["running"] and all(a["ready"] and a["state"] == "running" for a in st["actors"])
    assert (run_dir / "sock").stat().st_mode & 0o077 == 0
    assert (run_dir / "sock" / "ctl").stat().st_mode & 0o077 == 0

    # A second supervisor on the same run directory is refused.
    again = cli(config, "start", "--detach")
    assert again.returncode == 2 and "already running" in again.stderr

    # Latch, then kill -9 the executor: it comes back READY and knows the latch.
    assert cli(config, "hardstop", "--reason", "e2e").returncode == 0
    old = _pids(status(config))
    os.kill(old["executor"], signal.SIGKILL)

    def executor_back() -> bool:
        ex = next(a for a in status(config)["actors"] if a["name"] == "executor")
        return bool(ex["ready"] and ex["pid"] != old["executor"] and ex["restarts"] == 1
                    and ex["hardstop_epoch_acked"] == 1)

    assert wait_until(executor_back, 15, 0.1), status(config)

    # Kill the supervisor itself: every actor notices and exits.
    sup_pid = int((run_dir / "supervisor.lock").read_text())
    actor_pids = list(_pids(status(config)).values())
    os.kill(sup_pid, signal.SIGKILL)
    assert wait_until(lambda: not any(alive(p) for p in actor_pids), 10), [p for p in actor_pids if alive(p)]

    # A new supervisor picks the latch up; every actor learns it.
    r = cli(config, "start", "--detach")
    assert r.returncode == 0, r.stderr
    st = status(config)
    assert st["hard_stop"]["latched"] and st["hard_stop"]["reason"] == "operator: e2e"
    assert all(a["hardstop_epoch_acked"] == 1 for a in st["actors"])

    # Only reset clears it; stop leaves no process behind.
    assert cli(config, "reset-hardstop").returncode == 0
    assert not status(config)["hard_stop"]["latched"]
    pids = list(_pids(status(config)).values())
    assert cli(config, "stop").returncode == 0
    assert wait_until(lambda: not any(alive(p) for p in pids), 10)
    assert status(config)["running"] is False


def test_status_and_hardstop_without_a_running_supervisor(config: Path) -> None:
    st = status(config)
    assert st["running"] is False and st["actors"] == []
    assert cli(config, "hardstop", "--reason", "offline").returncode == 0
    assert status(config)["hard_stop"]["latched"]
    assert cli(config, "reset-hardstop").returncode == 0
    assert not status(config)["hard_stop"]["latched"]

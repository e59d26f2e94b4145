"""The executor process (``python -m actors.executor``, ipc bus, the simulator) on nonce state it cannot use.

* a ceiling more than the exchange's window (1 day) ahead of the clock: every signature would be refused,
  so it must not report READY: it refuses to start; a clock that steps back that far during
  a session turns READY off (``test_executor_clock_step``);
* a corrupt file: not a traceback in the executor's log only, but a refusal.

A refusal is one line naming the file and what to do: the executor's log, its READY detail (what
``status`` shows) and a critical alert; it exits with ``START_REFUSED_EXIT``, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.hyperliquid.nonce import DAY_MS
from hip3.messages import Alert, Heartbeat, Ready
from hip3.runtime.actor import START_REFUSED_EXIT
from hip3.sim.app import SimServer
from tests.actors.helpers import account_of, wait
from tests.actors.test_executor_restart import ROOT, Harness, _config

pytestmark = pytest.mark.timeout(120)


class Watch:
    """The executor's process and what it told the supervisor's inbox."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.ready: list[Ready] = []
        self.alerts: list[Alert] = []
        self.heartbeats: list[Heartbeat] = []
        env = {**os.environ, "HIP3_PRIVATE_KEY": h.key, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actors.executor", "--config", str(h.cfg_path), "--run-dir", str(h.run_dir)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        h.proc = self.proc

    def tick(self) -> None:
        self.h.feed.pump()
        self.h.positions.on_subscription()
        for m in self.h.inbox.drain():
            if isinstance(m, Ready) and m.actor == "executor":
                self.ready.append(m)
            elif isinstance(m, Alert) and m.actor == "executor":
                self.alerts.append(m)
            elif isinstance(m, Heartbeat) and m.actor == "executor":
                self.heartbeats.append(m)


@pytest.fixture
def harness(run_dir: Path, sim_server: SimServer, paper_key: str) -> Iterator[Harness]:
    cfg, path = _config(run_dir, sim_server, account_of(paper_key))
    h = Harness(cfg, path, run_dir, paper_key, sim_server)
    try:
        yield h
    finally:
        h.stop()


def _log_events(run_dir: Path, event: str) -> list[dict[str, object]]:
    path = run_dir / "logs" / "executor.log"
    if not path.exists():
        return []
    return [e for e in map(json.loads, path.read_text().splitlines()) if e.get("event") == event]


def _refused(harness: Harness, content: str) -> tuple[Watch, str]:
    """Start the executor on nonce state ``content``; it must refuse: exit code, no traceback, one line
    (its READY detail, a critical alert, one log line). Returns the detail."""
    nonce = harness.run_dir / "nonce"
    nonce.parent.mkdir(parents=True, exist_ok=True)
    nonce.write_text(content)
    w = Watch(harness)
    assert wait(lambda: w.proc.poll() is not None, 30, w.tick), "the executor did not exit"
    for _ in range(20):  # the last messages it sent before exiting
        w.tick()
        time.sleep(0.01)
    assert w.proc.returncode == START_REFUSED_EXIT
    stderr = w.proc.stderr.read().decode() if w.proc.stderr else ""
    assert "Traceback" not in stderr, stderr
    assert w.ready and not any(r.ready for r in w.ready)
    detail = w.ready[-1].detail
    assert detail.startswith(f"start refused: nonce state {nonce} "), detail
    assert [a.level for a in w.alerts] == ["critical"] and str(nonce) in w.alerts[0].text
    refused = _log_events(harness.run_dir, "start_refused")
    assert len(refused) == 1 and str(nonce) in str(refused[0]["reason"])
    log = (harness.run_dir / "logs" / "executor.log").read_text().splitlines()
    assert not [e for e in map(json.loads, log) if "exc" in e]
    return w, detail


def test_a_nonce_ceiling_past_the_exchange_window_refuses_the_start(harness: Harness) -> None:
    # Written by a clock two days fast: the exchange would refuse every nonce (so never READY).
    _, detail = _refused(harness, str(int(time.time() * 1000) + 2 * DAY_MS))
    assert "48.0 h ahead" in detail and "every signature would be refused" in detail and "NTP" in detail


def test_a_corrupt_nonce_file_refuses_the_start_in_one_line(harness: Harness) -> None:
    _, detail = _refused(harness, "17695940z5700\n")
    assert "is corrupt" in detail and "delete it" in detail, detail

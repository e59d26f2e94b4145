"""``hip3 start`` as the systemd unit runs it, against a notification socket the test binds.

The console script, ``--log-format console``, ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` as systemd sets them,
the HTTP endpoint on 127.0.0.1: READY=1 and STATUS= from the supervisor's own pid only (no child inherits
the variables), WATCHDOG=1 every half interval, none while the supervisor is stopped (SIGSTOP: its loop
does not turn), again when it resumes; ``/ready`` 503 until every actor is READY and once the hard stop
latches, ``/healthz`` 200 meanwhile; STOPPING=1 on SIGTERM, exit 0, nothing left behind. The log files
rotate in the real session, every line whole; and the Grafana dashboard in deploy/ asks only for metrics
that the endpoint serves.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT, parse_config
from hip3.ops.logrotate import rotated_files
from tests.conftest import stop_process
from tests.faults.restart_loop import HIP3, NotifyListener
from tests.faults.session import alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240),
              pytest.mark.skipif(not HIP3.exists(), reason="no hip3 console script: pip install -e .")]

CONFIG = """
mode = "paper"
[exchange]
network = "sim"
[[markets]]
coin = "xyz:GOLD"
[[markets]]
coin = "xyz:SILVER"
[[markets]]
coin = "xyz:TSLA"
[metrics]
enabled = true
port = 0
[logging]
stderr = false
max_file_mb = 0.001
keep_files = 50
[sim.model]
oracle_interval_ms = 500
maker_lag_ms = 1500
jump_prob = 0.15
"""


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _environ(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


@pytest.fixture
def session(run_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], NotifyListener, Path]]:
    config = run_dir / "service.toml"
    config.write_text(f'run_dir = "{run_dir}"\n' + CONFIG)
    notify = NotifyListener(run_dir / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000", HIP3_RUN_DIR=str(run_dir))
    env.pop("HIP3_CONFIG", None)
    out = open(run_dir / "service.out", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(HIP3), "start", "--log-format", "console", "--config", str(config)], env=env,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
    try:
        yield proc, notify, config
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        stop_process(proc, 20)
        out.close()
        notify.close()


def test_ready_watchdog_status_probes_and_stopping(session: tuple[subprocess.Popen[bytes], NotifyListener, Path]
                                                   ) -> None:
    from hip3.ops import ctl as cli

    proc, notify, config = session
    cfg = parse_config(config.read_text(), str(config))
    assert wait_until(lambda: notify.since(0, "READY=1"), 90, 0.1), (config.parent / "service.out").read_text()
    ready_msg = notify.since(0, "READY=1")[0][1]
    assert re.search(r"^STATUS=", ready_msg, re.M)
    status = cli.request(cfg, {"cmd": "status"})
    url = str(status["metrics"]["url"]).removesuffix("/metrics")

    # The variables are the supervisor's alone: no actor, forkserver or simulator inherited them.
    assert wait_until(lambda: all(a["pid"] for a in cli.request(cfg, {"cmd": "status"})["actors"]), 60, 0.2)
    status = cli.request(cfg, {"cmd": "status"})
    children = [a["pid"] for a in status["actors"]] + [status["exchange"]["pid"]]
    for pid in children:
        env = _environ(pid)
        assert env and not any(v.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_USEC=")) for v in env), pid

    # /ready: 503 with the reason until every actor is READY, then 200; STATUS= follows.
    assert wait_until(lambda: _get(url + "/ready")[0] == 200, 60, 0.2), _get(url + "/ready")
    assert _get(url + "/ready") == (200, {"ready": True, "reason": "all 6 actors READY"})
    assert wait_until(lambda: notify.since(0, "STATUS=all 6 actors READY"), 10, 0.1)

    # WATCHDOG=1 every half of WATCHDOG_USEC (1 s), from the loop.
    t0 = time.time()
    time.sleep(3.2)
    pings = [at for at, _ in notify.since(t0, "WATCHDOG=1")]
    gaps = [b - a for a, b in pairwise(pings)]
    assert len(pings) >= 5 and all(0.3 <= g <= 0.9 for g in gaps), gaps

    # A stalled loop stops the pings (SIGSTOP: nothing of the supervisor runs), and they resume with it.
    os.kill(proc.pid, signal.SIGSTOP)
    t_stop = time.time()
    time.sleep(2.5)
    stalled = notify.since(t_stop + 0.1, "WATCHDOG=1")
    os.kill(proc.pid, signal.SIGCONT)
    t_cont = time.time()
    assert stalled == [], stalled
    assert wait_until(lambda: notify.since(t_cont, "WATCHDOG=1"), 2, 0.02)
    assert notify.since(t_cont, "WATCHDOG=1")[0][0] - t_cont < 1.0
    assert wait_until(lambda: _get(url + "/healthz")[0] == 200, 5, 0.1)

    # Every metric the Grafana dashboard asks for is served (once the session traded: a labelled family has no
    # sample before its first event).
    def exposition() -> str:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
            return resp.read().decode()

    assert wait_until(lambda: "hip3_exits_total{" in exposition(), 90, 0.5), "no exit in 90 s"
    served = set(re.findall(r"^(hip3_\w+?)(?:\{| )", exposition(), re.M))
    dashboard = (REPO_ROOT / "deploy" / "grafana" / "dashboards" / "hip3.json").read_text()
    asked = set(re.findall(r"hip3_\w+", dashboard)) - {"hip3_prometheus"}
    assert asked and not asked - served, asked - served

    # The hard stop: not ready (503, the reason), still alive; STATUS= says it.
    r = subprocess.run([str(HIP3), "hardstop", "--reason", "service test", "--config", str(config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert _get(url + "/ready") == (503, {"ready": False, "reason": "hard stop latched: operator: service test"})
    assert _get(url + "/healthz")[0] == 200
    assert wait_until(lambda: notify.since(0, "STATUS=hard stop latched: operator: service test"), 10, 0.1)

    # STOPPING=1 on SIGTERM, then a clean exit (0: the unit does not restart it), nothing left behind.
    t_term = time.time()
    proc.terminate()
    assert proc.wait(60) == 0
    assert notify.since(t_term, "STOPPING=1")
    assert all(pid == proc.pid for pid in notify.senders), set(notify.senders)  # NotifyAccess=main holds
    assert wait_until(lambda: not any(alive(p) for p in children), 10)

    # The logs rotated during the session (1 kB files), one rename at a time: every line of every file whole.
    logs = config.parent / "logs"
    rotated = rotated_files(logs / "supervisor.log")
    assert rotated and rotated_files(logs / "executor.log"), sorted(p.name for p in logs.iterdir())
    for path in [*rotated, logs / "supervisor.log"]:
        for line in path.read_text().splitlines():
            json.loads(line)

"""Alerts from a supervised paper session (real processes): the start and a hard stop reach a local
receiver; the destinations' variable, which holds tokens, reaches no actor and not the simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT
from tests.e2e.helpers import SUPERVISOR, cli, status
from tests.ops.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def test_a_supervised_session_alerts_and_no_child_inherits_the_destinations(run_dir: Path) -> None:
    rcv = Receiver()
    config = run_dir / "alerts.toml"
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    config.write_text(default.replace('run_dir = "run"', f'run_dir = "{run_dir}"')
                      + '\n[alerts]\nenabled = true\nlabel = "e2e"\n[logging]\nstderr = false\n')
    url = rcv.url("TOKEN1234SECRET")
    env = dict(os.environ, HIP3_ALERT_URLS=url)
    env.pop("HIP3_RUN_DIR", None)
    try:
        r = subprocess.run([sys.executable, SUPERVISOR, "start", "--detach", "--config", str(config)],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        assert rcv.wait(lambda m: any(x["title"] == "hip3 e2e: info started" for x in m), 20)
        st = status(config)
        pids = [a["pid"] for a in st["actors"] if a["pid"]] + [st["exchange"]["pid"]]
        assert len(pids) == 7
        for pid in pids:
            environ = _environ(pid)
            assert environ and b"HIP3_ALERT_URLS" not in environ and b"TOKEN1234SECRET" not in environ, pid
        assert cli(config, "hardstop", "--reason", "e2e drill").returncode == 0
        assert rcv.wait(lambda m: any(x["title"] == "hip3 e2e: CRITICAL hard stop latched" for x in m), 20)
        assert rcv.wait(lambda m: any(x["title"] == "hip3 e2e: ok flat" for x in m), 30), rcv.texts()
    finally:
        cli(config, "stop", timeout=60)
        rcv.close()
    assert rcv.messages[-1]["title"] in ("hip3 e2e: info stopped", "hip3 e2e: WARNING stopped")
    log = (run_dir / "logs" / "supervisor.log").read_text()
    assert "TOKEN1234SECRET" not in log and '"event":"alerts_on"' in log
    assert all(p == "/TOKEN1234SECRET" for p in rcv.paths)

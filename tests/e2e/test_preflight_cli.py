"""``python supervisor.py check`` and the check in ``start``, with real processes and the simulator.

Before the check, a misspelt market in the config gave about 30 s of silence (the feed waiting for a
subscription the exchange refused), tracebacks from the actors that load the market specs, then a latched
hard stop when their restart limit was reached. Now ``start`` refuses in one line per problem, within a
second, before any actor starts, and nothing latches."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT
from hip3.runtime.hardstop import LATCH_FILE, read_latch
from tests.conftest import stop_process
from tests.e2e.helpers import SUPERVISOR, cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _config(run_dir: Path, name: str, replace: tuple[str, str] = ("", "")) -> Path:
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    text = default.replace('run_dir = "run"', f'run_dir = "{run_dir}"')
    if replace[0]:
        text = text.replace(*replace)
    path = run_dir / name
    path.write_text(text + "\n[logging]\nstderr = false\n")
    return path


@pytest.fixture
def typo(run_dir: Path) -> Path:
    return _config(run_dir, "typo.toml", ('coin = "xyz:SILVER"', 'coin = "xyz:SILVR"'))


def test_start_refuses_a_misspelt_market_before_any_actor_starts(typo: Path, run_dir: Path) -> None:
    r = cli(typo, "start", "--log-format", "json", timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: market 'xyz:SILVR' is not listed by dex 'xyz' (did you mean 'xyz:SILVER'?)",
                      "error: nothing was started; `python supervisor.py check` repeats the check"], r.stderr
    assert "Traceback" not in r.stderr
    assert not read_latch(run_dir / LATCH_FILE).latched
    log = (run_dir / "logs" / "supervisor.log").read_text()
    assert "actor_started" not in log and not (run_dir / "logs" / "feed.log").exists()


def test_start_detach_passes_every_refusal_line_on(run_dir: Path) -> None:
    config = _config(run_dir, "two.toml", ('coin = "xyz:SILVER"', 'coin = "xyz:SILVR"'))
    config.write_text(config.read_text().replace('coin = "xyz:NVDA"', 'coin = "xyz:NVDIA"'))
    r = cli(config, "start", "--detach", timeout=60)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors[:2] == ["error: market 'xyz:SILVR' is not listed by dex 'xyz' (did you mean 'xyz:SILVER'?)",
                          "error: market 'xyz:NVDIA' is not listed by dex 'xyz' (did you mean 'xyz:NVDA'?)"], r.stderr
    assert not read_latch(run_dir / LATCH_FILE).latched


def test_check_passes_the_default_config_and_fails_a_typo(run_dir: Path, typo: Path) -> None:
    good = _config(run_dir, "good.toml")
    r = cli(good, "check", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("hip3 check: paper mode") and out[0].endswith("(a simulator started for this check)")
    assert out[-1] == "all checks passed"
    assert sum(line.startswith("ok    market      xyz:") for line in out) == 8
    assert not (run_dir / "sim").exists()  # the check's simulator lived in a temporary directory
    r = cli(typo, "check", timeout=60)
    assert r.returncode == 1
    assert "FAIL  market      market 'xyz:SILVR' is not listed by dex 'xyz' (did you mean 'xyz:SILVER'?)" in r.stdout
    assert r.stdout.splitlines()[-1] == "1 FAIL: `start` would refuse to start"


def test_check_uses_the_running_sessions_simulator(run_dir: Path) -> None:
    config = _config(run_dir, "run.toml")
    try:
        assert cli(config, "start", "--detach", timeout=120).returncode == 0
        r = cli(config, "check", timeout=60)
        assert r.returncode == 0, r.stdout
        assert f"(the simulator of the supervisor running on {run_dir})" in r.stdout.splitlines()[0]
        assert "the running paper session's key" in r.stdout
    finally:
        cli(config, "stop", timeout=60)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: a host that hangs."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


@pytest.mark.parametrize(("command", "sig"), [("check", signal.SIGTERM), ("check", signal.SIGINT),
                                              ("start", signal.SIGTERM)])
def test_a_signal_ends_a_check_waiting_on_a_silent_host(run_dir: Path, silent_port: int, command: str,
                                                        sig: signal.Signals) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    config = run_dir / "silent.toml"
    config.write_text(f'run_dir = "{run_dir}"\nmode = "observe"\n[exchange]\nnetwork = "testnet"\n'
                      f'rest_url = "{url}"\nws_url = "ws://127.0.0.1:{silent_port}/ws"\nrequest_timeout_ms = 60000\n'
                      '[[markets]]\ncoin = "xyz:GOLD"\n')
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("HIP3_RUN_DIR", None)
    proc = subprocess.Popen([sys.executable, SUPERVISOR, command, "--config", str(config), "--log-format", "json"][
        :5 if command == "check" else 7], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        if command == "check":
            header = proc.stdout.readline()
            assert header.startswith("hip3 check: observe mode"), header
        else:
            assert "preflight_started" in proc.stderr.readline()  # its first log line
        time.sleep(0.5)  # inside the first request, which the host never answers (60 s timeout)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        stop_process(proc, 5)
    waited = f"{sig.name} while waiting for POST /info (perpDexs, meta) at {url}"
    if command == "check":
        assert proc.returncode == 130, (out, err)
        assert out.strip() == f"check interrupted by {waited}", out
    else:
        assert proc.returncode == 2, (out, err)
        assert f"error: preflight check interrupted by {waited}: nothing was started" in err.splitlines(), err
        assert "actor_started" not in err
    assert "Traceback" not in err


def test_start_refused_only_for_an_unreachable_exchange_exits_for_a_retry(run_dir: Path) -> None:
    """A supervisor restarted by its service manager during an exchange outage must come back when the
    exchange does: a start refused only because a host did not answer exits 75 (EX_TEMPFAIL), which the
    unit restarts; a refusal a restart cannot mend (a typo, a key) stays 2, which it does not."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: every connection is refused
    config = run_dir / "down.toml"
    config.write_text(f'run_dir = "{run_dir}"\nmode = "observe"\n[exchange]\nnetwork = "testnet"\n'
                      f'rest_url = "http://127.0.0.1:{port}"\nws_url = "ws://127.0.0.1:{port}/ws"\n'
                      'request_timeout_ms = 1000\n[[markets]]\ncoin = "xyz:GOLD"\n')
    r = cli(config, "start", "--log-format", "json", timeout=60)
    assert r.returncode == 75, (r.returncode, r.stderr[-2000:])
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: cannot reach the exchange's REST API") and f"127.0.0.1:{port}" in errors[0]
    assert "Traceback" not in r.stderr
    unit = (REPO_ROOT / "deploy" / "hip3.service").read_text()
    prevent = next(line for line in unit.splitlines() if line.startswith("RestartPreventExitStatus="))
    assert "75" not in prevent.split("=", 1)[1].split() and "Restart=on-failure" in unit

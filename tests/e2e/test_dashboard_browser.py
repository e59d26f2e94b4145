"""The web dashboard of a running paper session, in a real headless browser (Debian's Chromium).

The page is fetched with the token (required here: it is set in the environment), its script polls the
status API, and the DOM the browser built must show every actor as READY and every market with its
figures; the screenshot must not be blank. Without the token the browser gets a 401, not the page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT
from tests.e2e.helpers import SUPERVISOR, cli, status, wait_until
from tests.e2e.png import colour_stats

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow, pytest.mark.timeout(240),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install -y chromium); "
                                                "the dashboard is tested in a real browser only"),
]

ACTORS = ("feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder")
MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA", "xyz:NVDA", "xyz:AAPL", "xyz:MSFT", "xyz:AMZN", "xyz:META")
TOKEN = "dashboard-test-token-0123456789"


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    text = (default.replace('run_dir = "run"', f'run_dir = "{run_dir}"')
            + '\n[logging]\nstderr = false\n[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = 0\n'
            + "[dashboard]\nenabled = true\nrefresh_ms = 500\n")
    path = run_dir / "paper.toml"
    path.write_text(text)
    yield path
    cli(path, "stop", timeout=60)


def _chromium(run_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    profile = run_dir / f"chromium-{len(list(run_dir.glob('chromium-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--window-size=1200,1000", "--virtual-time-budget=4000", *args, url]
    return subprocess.run(cmd, capture_output=True, timeout=90)


def test_dashboard_in_a_headless_browser(config: Path, run_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HIP3_RUN_DIR"}
    env["HIP3_DASHBOARD_TOKEN"] = TOKEN
    r = subprocess.run([sys.executable, SUPERVISOR, "start", "--detach", "--config", str(config)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    st = status(config)
    url = st["dashboard"]["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and st["metrics"]["url"] == url + "metrics", st
    assert wait_until(lambda: len(status(config)["markets"]) == len(MARKETS), 30, 0.5)

    denied = _chromium(run_dir, url, "--dump-dom")
    assert denied.returncode == 0, denied.stderr[-2000:]
    assert b"a token is required" in denied.stdout and b"feed" not in denied.stdout

    dom = _chromium(run_dir, f"{url}?token={TOKEN}", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout.decode()
    actors = html[html.index('id="actors"'):html.index('id="pnl"')]
    for a in ACTORS:
        assert re.search(rf"<td>{a}</td><td[^>]*>running</td><td[^>]*>READY</td>", actors), (a, actors)
    markets = html[html.index('id="markets"'):html.index('id="trades"')]
    for m in MARKETS:
        row = re.search(rf"<td>{m}</td><td>([\d.]+)</td><td>([\d.]+)</td>", markets)
        assert row and float(row.group(1)) > 0 and float(row.group(2)) > 0, (m, markets)
    assert re.search(r'<span id="status-line" class="">updated \d\d:\d\d:\d\d</span>', html), html[:3000]
    assert re.search(r'<div id="hardstop" class="clear">hard stop: clear \(epoch 0\)</div>', html)
    assert "<dt>realised PnL</dt>" in html and "<dt>tick-to-trade entry</dt>" in html

    shot = run_dir / "dashboard.png"
    r2 = _chromium(run_dir, f"{url}?token={TOKEN}", f"--screenshot={shot}")
    assert r2.returncode == 0 and shot.exists(), r2.stderr[-2000:]
    colours, not_background = colour_stats(shot.read_bytes())
    assert colours >= 20 and not_background >= 0.02, (colours, not_background)  # a page, not a blank

"""The operator's console and live view in a real terminal (tmux), against a paper session: real processes.

* ``start`` on a terminal prints readable lines with wall-clock times: one per entry (side, size, price,
  edge) and exit (PnL), the actors getting READY; no JSON line; Ctrl-C ends with the session summary and
  what stays open, and without the disconnect warnings of connections closing on purpose.
* ``status --watch`` redraws every second: actors with READY, the hard stop, every market with its mid,
  oracle, dislocation and gate (from the detector's summary), PnL, tick-to-trade, recent trades, the
  executor's and tracker's stats.
* ``start --log-format json`` keeps the JSON lines.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT
from tests.e2e.helpers import SUPERVISOR, cli
from tests.e2e.tmux import Tmux, needs_tmux

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), needs_tmux]

ACTORS = ("feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder")
MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA", "xyz:NVDA", "xyz:AAPL", "xyz:MSFT", "xyz:AMZN", "xyz:META")
TIME = r"\d\d:\d\d:\d\d"


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    path = run_dir / "paper.toml"
    path.write_text(default.replace('run_dir = "run"', f'run_dir = "{run_dir}"'))
    yield path
    cli(path, "stop", timeout=60)


@pytest.fixture
def tmux(request: pytest.FixtureRequest) -> Iterator[Tmux]:
    t = Tmux(request.node.name[:20])
    yield t
    t.kill()


def _cmd(config: Path, *args: str) -> str:
    return " ".join([sys.executable, SUPERVISOR, *args, "--config", str(config)])


def test_console_live_view_and_ctrl_c(config: Path, tmux: Tmux) -> None:
    tmux.start("start", _cmd(config, "start"))
    entry = rf"^{TIME}  ENTRY (BUY|SELL) +xyz:\w+ +[\d.]+ @ [\d.]+   edge \d+\.\d bps$"
    exit_ = rf"^{TIME}  EXIT  (BUY|SELL) +xyz:\w+ +[\d.]+ @ [\d.]+   PnL [+-]\d+\.\d{{4}} USD   \w+, (long|short) from"
    text = tmux.wait_for("start", entry, 90)
    text = tmux.wait_for("start", exit_, 60)
    for a in ACTORS:
        assert re.search(rf"^{TIME}  info  supervisor +{a} READY in [\d.]+ ms$", text, re.M), (a, text)
    assert re.search(rf"^{TIME}  info  supervisor +paper exchange \(built-in simulator\) at http://127\.0\.0\.1:",
                     text, re.M), text
    assert '{"ts"' not in text and "Traceback" not in text, text

    # The live view, in a second window of the same terminal, against the running session.
    tmux.start("watch", _cmd(config, "status", "--watch"))
    screen = tmux.wait_for("watch", r"xyz:META .*(pass|no_bbo|bbo_stale|ctx_\w+|spread_\w+|mark_\w+)", 30,
                           history=False)
    assert "hard stop: clear (epoch 0)" in screen, screen
    for a in ACTORS:
        assert re.search(rf"^ {a} +running +READY ", screen, re.M), (a, screen)
    rows = {m: next((ln for ln in screen.splitlines() if ln.lstrip().startswith(m + " ")), "") for m in MARKETS}
    for m, row in rows.items():
        cells = row.split()
        assert len(cells) >= 6, (m, screen)  # market, mid, oracle, disl bps, edge bps, gate, ...
        mid, oracle, disl = float(cells[1]), float(cells[2]), float(cells[3])
        assert mid > 0 and oracle > 0 and abs(disl - (mid - oracle) / oracle * 1e4) < 0.2, (m, row)
    for label in ("realised PnL", "unrealised PnL", "tick-to-trade entry", "request budget", "recent trades",
                  "executor", "position_tracker", "orders_sent="):
        assert label in screen, (label, screen)
    assert re.search(r"tick-to-trade entry +p50 \d+ µs  p99 \d+ µs  n=\d+", screen), screen
    clock = re.search(rf"up \d+ s  \S+  ({TIME})", screen)
    assert clock, screen
    time.sleep(2.2)
    later = tmux.capture("watch", history=False)
    again = re.search(rf"up \d+ s  \S+  ({TIME})", later)
    assert again and again.group(1) != clock.group(1), later  # it redraws
    tmux.keys("watch", "C-c")
    tmux.wait_for("watch", r"^\[exited\]$", 10)

    # Ctrl-C: the summary and what stays open; no warning from connections closed on purpose.
    tmux.keys("start", "C-c")
    text = tmux.wait_for("start", r"^\[exited\]$", 60)
    tail = text[text.rindex("^C") + 2:]  # the terminal echoes the Ctrl-C; what follows is the stop
    assert re.search(rf"^{TIME}  info  supervisor +SIGINT: stopping every actor$", tail, re.M), tail
    assert "hip3 session ended after" in tail and "hard stop: not latched" in tail, tail
    assert re.search(r"^(left at the exchange: no open position, no open order|LEFT OPEN at the exchange, no longer "
                     r"managed by hip3: \d+ positions?, \d+ open orders?) \(the tracker's view", tail, re.M), tail
    assert "disconnected" not in tail and "WARN" not in tail and "Traceback" not in tail, tail
    assert '{"ts"' not in tail, tail


def test_log_format_json_keeps_the_json_lines(config: Path, tmux: Tmux) -> None:
    tmux.start("start", _cmd(config, "start", "--log-format", "json"))
    text = tmux.wait_for("start", r'^\{"ts":[\d.]+,"level":"info","actor":"supervisor","event":"actor_ready"', 60)
    assert "READY in" not in text
    tmux.keys("start", "C-c")
    text = tmux.wait_for("start", r"^\[exited\]$", 60)
    assert "hip3 session ended after" in text

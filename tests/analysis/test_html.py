"""``report --html FILE`` (hip3/analysis/html.py): a self-contained plotly page with the equity curve,
drawdown, PnL by market and exit reason and the follow-up edge curves, opened in headless Chromium with
every network lookup failing (so anything fetched from outside would break the page)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hip3.analysis.equity import equity_curve, max_drawdown, score
from hip3.journal.db import JournalWriter
from hip3.journal.report import closed_trades, open_readonly
from hip3.journal.schema import journal_path
from tests.analysis.test_followups import _cli
from tests.analysis.test_followups import session as signal_session
from tests.test_report import journal
from tests.test_report import session as trade_session

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A journal with four trades (tests/test_report.py) and ten signals with follow-ups."""
    path = journal_path(tmp_path)
    journal(path, trade_session())
    w = JournalWriter(path)
    for m in signal_session():
        assert w.add(m)
    w.flush()
    w.close()
    return tmp_path


def test_equity_and_drawdown_follow_the_reports_net_pnl(run: Path) -> None:
    conn = open_readonly(journal_path(run))
    curve = equity_curve(closed_trades(conn))
    # Net per trade (PnL minus the fees attributed from fills): +0.45, -0.15, -0.01, +0.20.
    assert [round(p.net_usd, 6) for p in curve] == [0.45, -0.15, -0.01, 0.2]
    assert [round(p.equity_usd, 6) for p in curve] == [0.45, 0.3, 0.29, 0.49]
    assert [round(p.drawdown_usd, 6) for p in curve] == [0.0, 0.15, 0.16, 0.0]
    assert max_drawdown([p.net_usd for p in curve]) == pytest.approx(0.16)
    assert max_drawdown([-1.0, 0.5]) == 1.0  # the peak starts at 0: an early loss is drawdown
    assert score(0.49, 0.16, 2.0) == pytest.approx(0.49 - 0.32)


def test_report_html_is_self_contained_and_renders_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    code, out, err = _cli(run, "--html", str(target))
    assert code == 0, err
    assert f"wrote {target}" in out and "trades 4" in out  # the text report too
    page = target.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page)  # nothing loaded from elsewhere
    assert "plotly.js v" in page  # the library is inlined
    for div in ("equity", "drawdown", "by_market", "by_exit_reason", "followup_net", "followup_kept"):
        assert f'id="{div}"' in page
    assert "xyz:SILVER: structural spread" in page
    browser = chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000", "--dump-dom",
                           target.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    # plotly marks a div it has drawn with js-plotly-plot and puts its SVG layers in it.
    drawn = re.findall(r'<div id="(\w+)" class="plotly-graph-div js-plotly-plot"', dom)
    assert sorted(drawn) == sorted(["equity", "drawdown", "by_market", "by_exit_reason", "followup_net",
                                    "followup_kept"]), drawn
    assert dom.count('class="main-svg"') >= 2 * len(drawn)
    # What the charts show: their titles, the markets in the legend and on the axes, the structural flag.
    for text in ("Equity: cumulative net PnL", "Drawdown from the running peak", "Net PnL and fees by market",
                 "Net PnL and fees by exit reason", "Follow-up edge", "xyz:SILVER (structural)", "time_stop"):
        assert text in dom, text


def test_report_html_to_an_unwritable_place_is_one_line(run: Path, tmp_path: Path) -> None:
    code, _, err = _cli(run, "--html", str(tmp_path / "missing" / "r.html"))
    assert code == 2 and err.startswith("error: cannot write") and "Traceback" not in err

"""The host clock steps back by more than the exchange's nonce window (a clock that ran a day fast, fixed
by NTP during a session): every nonce the executor holds is now too far ahead and every signature would be
refused. READY turns off within a tick (an executor that stays READY there sends nothing that works), with
the reason (the nonce file, what to do) as its READY detail and a critical alert, and comes back when the
clock does."""

from __future__ import annotations

import time

import pytest

from hip3 import clock
from hip3.hyperliquid.nonce import DAY_MS
from tests.actors.test_executor import Graph, graph  # noqa: F401 - the inproc graph fixture

pytestmark = pytest.mark.timeout(120)


def _executor(g: Graph) -> dict[str, object]:
    st = g.run.call(lambda s: s.status())
    ex: dict[str, object] = next(a for a in st["actors"] if a["name"] == "executor")
    ex["alerts"] = [a["text"] for a in st["alerts"] if a["actor"] == "executor" and a["level"] == "critical"]
    return ex


def test_a_clock_stepped_back_past_the_nonce_window_turns_ready_off(graph: Graph,  # noqa: F811
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    g = graph
    assert _executor(g)["ready"]
    real = time.time_ns
    monkeypatch.setattr(clock, "time_ns", lambda: real() - (DAY_MS + 3_600_000) * 1_000_000)
    assert g.wait(lambda: not _executor(g)["ready"], 5), _executor(g)
    ex = _executor(g)
    detail = str(ex["ready_detail"])
    assert detail.startswith(f"nonce state {g.run.cfg.run_path / 'nonce'} is 25.0 h ahead of the clock"), detail
    assert "every signature would be refused" in detail
    assert ex["alerts"] == [detail]
    monkeypatch.setattr(clock, "time_ns", real)  # NTP puts it right again (or the day passes)
    assert g.wait(lambda: bool(_executor(g)["ready"]), 5), _executor(g)

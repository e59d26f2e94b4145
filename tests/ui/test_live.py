"""hip3.ui.live: the status --watch screen, rendered from a status document (the tmux test runs it live)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from hip3.ui.live import render, watch
from hip3.ui.view import api_document, key_stats
from tests.ui.samples import ACTORS, status


def _screen(doc: dict[str, Any] | None, error: str | None = None) -> str:
    console = Console(record=True, width=220, height=80, color_system=None)
    console.print(render(doc, error, now_s=1_700_000_000.0))
    return console.export_text()


def test_the_screen_shows_actors_hard_stop_markets_pnl_latency_trades_and_key_stats() -> None:
    text = _screen(status())
    assert "hard stop: clear (epoch 0)" in text
    for name in ACTORS:
        assert any(name in ln and "READY" in ln for ln in text.splitlines()), name
    feed = next(ln for ln in text.splitlines() if ln.lstrip().startswith("feed "))
    assert " 1 " in feed  # its restart
    gold = next(ln for ln in text.splitlines() if ln.lstrip().startswith("xyz:GOLD"))
    assert all(x in gold for x in ("2001.5", "2000", "+7.5", "pass", "+0.5", "+0.7500"))
    silver = next(ln for ln in text.splitlines() if ln.lstrip().startswith("xyz:SILVER"))
    assert "mark_mid_divergence" in silver and "+20.0" in silver
    assert "realised PnL" in text and "+2.5844 USD" in text and "unrealised PnL" in text and "+0.7500 USD" in text
    assert "p50 1262 µs  p99 1540 µs  n=9" in text
    assert "EXIT" in text and "+0.1767" in text and "mark_regression" in text and "43.0" in text
    # Stats other engineers add to heartbeats show up without a change here; internals stay out.
    assert "request budget" in text and "request_budget_left=9400" in text
    assert "collateral_usd_xyz=1000" in text and "orders_sent=17" in text and "stage_sign" not in text
    assert "other actors" in text and "feed.clock_skew_ms=12" in text and "bbo=" not in text
    assert "CRITICAL executor: boom" in text


def test_a_latched_hard_stop_is_a_banner_with_the_flattens_progress() -> None:
    text = _screen(status(latched=True))
    assert "HARD STOP LATCHED: operator: test (epoch 1)  flatten: 1 positions, 0 orders, attempt 2" in text
    doc = status(latched=True, supervisor={"stalls": 2, "stalled_ms": 900, "longest_stall_ms": 700})
    doc["hard_stop"].update(persisted=False, persist_error="No space left on device")
    text = _screen(doc)
    assert "NOT SAVED: No space left on device" in text and "supervisor stalls 2 (longest 700 ms)" in text


def test_no_supervisor_or_no_answer_is_said_not_raised() -> None:
    assert "no supervisor is running" in _screen({"running": False, "hard_stop": {"latched": True, "reason": "r"}})
    assert "hard stop LATCHED: r" in _screen({"running": False, "hard_stop": {"latched": True, "reason": "r"}})
    text = _screen(status(), error="the supervisor did not answer within 3000 ms")
    assert "last refresh failed: the supervisor did not answer" in text and "xyz:GOLD" in text
    fetched: list[int] = []

    def fetch() -> dict[str, Any]:
        fetched.append(1)
        if len(fetched) == 2:
            raise RuntimeError("the supervisor did not answer within 3000 ms")
        return status()

    console = Console(record=True, width=200, height=60, color_system=None, force_terminal=True)
    assert watch(fetch, interval_s=0.0, console=console, frames=3) == 0
    assert len(fetched) == 3


def test_key_stats_hide_internals_pin_activity_counters_then_highlighted_keys() -> None:
    """The panel has room for a limited number of rows: the executor's activity counters are always there
    (many highlighted keys pushed ``orders_sent`` off the live view), then the highlighted keys."""
    ks = key_stats(status())
    keys = [r["key"] for r in ks["executor"]]
    assert keys == ["orders_sent", "posts", "collateral_usd_xyz", "request_budget_left"]
    assert [r["hot"] for r in ks["executor"]] == [False, False, True, True]
    assert [r["key"] for r in ks["position_tracker"]] == ["resyncs", "positions_closed"]
    assert ks["others"] == [{"key": "feed.clock_skew_ms", "value": 12, "hot": True}]
    assert api_document(status())["view"]["key_stats"] == ks

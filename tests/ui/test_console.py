"""hip3.ui.console and hip3.ui.terminal: readable lines, the hard stop standing out, nothing blocking the
supervisor's loop, and the supervisor's and the actors' lines in one time order."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from hip3.runtime.logs import Log
from hip3.ui.console import log_text, summary_text, trade_text
from hip3.ui.terminal import QUEUE_MAX, Terminal
from tests.ui.samples import status

KEY = "0x" + "ab" * 32


def _plain(text: Any) -> str:
    return str(text.plain)


def test_entry_and_exit_lines_have_time_side_size_price_edge_and_pnl() -> None:
    entry = trade_text({"kind": "entry", "time_ms": 1_700_000_000_000, "coin": "xyz:GOLD", "side": "buy",
                        "size": 0.5, "px": 2000.5, "edge_bps": 43.04})
    assert re.fullmatch(r"\d\d:\d\d:\d\d  ENTRY BUY  xyz:GOLD     0\.5 @ 2000\.5   edge 43\.0 bps", _plain(entry))
    exit_ = trade_text({"kind": "exit", "time_ms": 1_700_000_000_000, "coin": "xyz:GOLD", "side": "sell",
                        "position": "long", "size": 0.5, "px": 2010.0, "entry_px": 2000.5, "pnl_usd": -4.75,
                        "reason": "time_stop", "hold_ms": 2500}, session_pnl_usd=1.25)
    assert re.fullmatch(r"\d\d:\d\d:\d\d  EXIT  SELL xyz:GOLD     0\.5 @ 2010   PnL -4\.7500 USD   time_stop, long "
                        r"from 2000\.5, held 2\.5 s   session \+1\.2500 USD", _plain(exit_))
    assert any("red" in str(span.style) for span in exit_.spans)  # a loss is red


def test_info_is_quiet_warnings_show_and_the_hard_stop_stands_out() -> None:
    base = {"ts": 1_700_000_000.0, "actor": "supervisor"}
    assert log_text({**base, "level": "info", "event": "order_sent"}) is None
    assert log_text({**base, "level": "warning", "event": "hardstop_state"}) is None  # said once by the supervisor
    assert log_text({**base, "level": "info", "event": "actor_started", "actor_": "feed", "restarts": 0}) is None
    restarted = log_text({**base, "level": "info", "event": "actor_started", "actor_": "feed", "restarts": 2,
                          "pid": 7})
    assert restarted is not None and "feed restarted (restart 2), pid 7" in _plain(restarted)
    warn = log_text({**base, "level": "warning", "event": "disconnected", "proc": "feed", "why": "pong timeout"})
    assert warn is not None and re.search(r"WARN  feed +disconnected  why=pong timeout", _plain(warn))
    hs = log_text({**base, "level": "critical", "event": "hardstop_latched", "reason": "operator: test",
                   "source": "cli", "epoch": 3})
    assert hs is not None and "HARD STOP LATCHED: operator: test (by cli, epoch 3)" in _plain(hs)
    assert any("on red" in str(span.style) for span in hs.spans)


def test_a_key_shaped_value_is_redacted_on_the_console_too() -> None:
    t = log_text({"ts": 1.0, "level": "error", "actor": "executor", "event": "sign_failed", "detail": KEY})
    assert t is not None and KEY not in _plain(t) and "[REDACTED]" in _plain(t)


def test_the_minute_summary() -> None:
    t = _plain(summary_text(status()))
    assert "trades 8 (win 88 %)" in t and "realised +2.5844 USD" in t and "unrealised +0.7500 USD" in t
    assert "open 1 pos / 0 orders" in t and "tick-to-trade p50 1.26 ms" in t and "READY 6/6" in t
    assert "HARD STOP LATCHED: operator: test" in _plain(summary_text(status(latched=True)))


class _BlockedTerminal(io.StringIO):
    """A terminal that stopped reading (Ctrl-S, a congested SSH session): every write waits."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, s: str) -> int:
        self.release.wait(10)
        return super().write(s)


def test_a_blocked_terminal_never_blocks_the_feeding_thread_and_drops_are_counted() -> None:
    out = _BlockedTerminal()
    term = Terminal(Console(file=out, width=200), None, summary_interval_s=0.0)
    term.start()
    try:
        t0 = time.perf_counter()
        for i in range(QUEUE_MAX + 500):
            term.on_trade({"kind": "entry", "time_ms": 1_700_000_000_000 + i, "coin": "xyz:GOLD", "side": "buy",
                           "size": 1.0, "px": 1.0, "edge_bps": 1.0})
        term.tick(lambda: status())
        elapsed = time.perf_counter() - t0
        assert elapsed < 1.0, elapsed  # QUEUE_MAX puts and a summary while the writer is stuck
        assert term.dropped >= 400
    finally:
        out.release.set()
        term.close()
    assert "console lines dropped" in out.getvalue()


def test_supervisor_and_actor_lines_print_in_time_order_and_close_flushes(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "feed.log").write_text(json.dumps({"ts": 1.0, "level": "warning", "event": "old news"}) + "\n")
    out = io.StringIO()
    term = Terminal(Console(file=out, width=200), logs)
    logger = logging.getLogger("hip3")
    logger.addHandler(term.handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    term.start()
    try:
        now = time.time()
        # The actor's warning happened first but reaches the console later (through its file).
        with open(logs / "feed.log", "a") as f:
            f.write(json.dumps({"ts": now - 0.05, "level": "warning", "actor": "feed", "event": "disconnected",
                                "why": "pong timeout"}) + "\n")
            f.write(json.dumps({"ts": now - 0.04, "level": "info", "actor": "feed", "event": "chatty"}) + "\n")
        Log("supervisor").critical("hardstop_latched", reason="feed down", source="feed", epoch=2)
        Log("supervisor").info("order_sent")  # INFO: not on the console
    finally:
        term.close()
        logger.removeHandler(term.handler)
        logger.setLevel(old_level)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    assert len(lines) == 2, lines
    assert "feed" in lines[0] and "disconnected  why=pong timeout" in lines[0]
    assert "HARD STOP LATCHED: feed down" in lines[1]
    assert "old news" not in out.getvalue() and "chatty" not in out.getvalue()

"""The console's lines (pure): trades, log events, the minute summary, as coloured ``rich`` text.

Every line starts with the local wall-clock time. Entries and exits get one line each (side, size,
price, the entry's edge, the exit's PnL and the session's running PnL); warnings are yellow, errors
red, and the hard stop white on red so it cannot be missed. Log events arrive as the JSON logs' records
(``ts``, ``level``, ``actor``, ``event`` and fields): the supervisor's own records, and the actors'
warnings read from their log files (``hip3.ui.logtail``). Field values are written as text (never as
rich markup) and pass through the logs' key redaction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from hip3.runtime.logs import redact

__all__ = ["HIDDEN_EVENTS", "SHOWN_INFO", "log_text", "summary_text", "trade_text", "wall"]

LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red", "critical": "bold white on red"}
LEVEL_TAG = {"debug": "debug", "info": "info ", "warning": "WARN ", "error": "ERROR", "critical": "CRIT "}

# The supervisor's INFO events worth a line; every WARNING and above is shown.
SHOWN_INFO = frozenset({"supervisor_started", "paper_exchange_ready", "actor_ready", "actor_started",
                        "metrics_serving", "dashboard_serving", "signal", "shutdown"})
# Actor events that the supervisor already reports in a line of its own (an actor's alert becomes the
# supervisor's ``actor_alert``; every actor logs the latch it applied, the supervisor logs the latch once).
HIDDEN_EVENTS = frozenset({"alert", "hardstop_state"})
_LINE_KEYS = frozenset({"ts", "level", "actor", "event", "proc"})


def wall(ts_s: float) -> str:
    """Local wall-clock time of day."""
    return time.strftime("%H:%M:%S", time.localtime(ts_s))


def _fields(rec: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> str:
    return " ".join(f"{k}={redact(str(v))}" for k, v in rec.items() if k not in _LINE_KEYS and k not in skip)


def _num(x: float, fmt: str = "g") -> str:
    return format(x, fmt)


def trade_text(rec: Mapping[str, Any], session_pnl_usd: float | None = None) -> Text:
    """One line for an entry or an exit (``hip3.ui.board.Board`` trade records)."""
    t = Text(wall(rec["time_ms"] / 1000) + "  ", style="dim")
    side = str(rec["side"]).upper()
    side_style = "bold green" if side == "BUY" else "bold red"
    if rec["kind"] == "entry":
        t.append("ENTRY ", style="bold cyan")
        t.append(f"{side:<4} ", style=side_style)
        t.append(f"{rec['coin']:<12} ")
        t.append(f"{_num(rec['size'])} @ {_num(rec['px'])}")
        if rec.get("edge_bps") is not None:
            t.append(f"   edge {rec['edge_bps']:.1f} bps", style="cyan")
        return t
    pnl = float(rec["pnl_usd"])
    t.append("EXIT  ", style="bold magenta")
    t.append(f"{side:<4} ", style=side_style)
    t.append(f"{rec['coin']:<12} ")
    t.append(f"{_num(rec['size'])} @ {_num(rec['px'])}")
    t.append(f"   PnL {pnl:+.4f} USD", style="bold green" if pnl > 0 else "bold red" if pnl < 0 else "")
    t.append(f"   {rec.get('reason', '')}, {rec.get('position', '')} from {_num(rec['entry_px'])}, "
             f"held {rec.get('hold_ms', 0) / 1000:.1f} s", style="dim")
    if session_pnl_usd is not None:
        t.append(f"   session {session_pnl_usd:+.4f} USD", style="green" if session_pnl_usd >= 0 else "red")
    return t


def _special(ev: str, rec: Mapping[str, Any]) -> str | None:
    """Readable words for the events an operator meets most; None: the generic ``event k=v`` form."""
    g = rec.get
    if ev == "supervisor_started":
        return f"hip3 started: {g('mode')} mode, actors {', '.join(g('actors') or [])}, run dir {g('run_dir')}"
    if ev == "paper_exchange_ready":
        return f"paper exchange (built-in simulator) at {g('url')}, account {g('account')}"
    if ev == "actor_ready":
        return f"{g('actor_')} READY in {g('start_ms')} ms"
    if ev == "actor_started":  # shown for restarts only: a first start is followed by its READY line
        return f"{g('actor_')} restarted (restart {g('restarts')}), pid {g('pid')}"
    if ev == "actor_failed":
        return f"{g('actor_')} FAILED: {g('why')}; restart in {g('restart_in_ms')} ms"
    if ev == "actor_alert":
        return f"ALERT from {g('actor_')}: {g('text')}"
    if ev == "hardstop_latched":
        return f"HARD STOP LATCHED: {g('reason')} (by {g('source')}, epoch {g('epoch')}): no entries; flattening"
    if ev == "hardstop_requested":
        return f"HARD STOP requested: {g('reason')}"
    if ev == "hardstop_flatten_started":
        return f"hard-stop flatten started (epoch {g('epoch')}): cancelling every order, closing every position"
    if ev == "hardstop_cleared_after_flatten":
        return f"flat and stopped: hard stop cleared (it was latched only to flatten; epoch {g('new_epoch')})"
    if ev == "hardstop_reset":
        return f"hard stop reset (epoch {g('epoch')}): entries allowed again"
    if ev == "hardstop_flatten_incomplete":
        return (f"HARD STOP CANNOT FLATTEN: {g('positions')} positions, {g('open_orders')} open orders after "
                f"{g('attempts')} attempts: act at the exchange")
    if ev == "hardstop_progress":
        return (f"hard-stop flatten: {g('positions')} positions, {g('open_orders')} open orders, attempt "
                f"{g('attempts')}{', done: flat' if g('done') else ''}")
    if ev == "metrics_serving":
        return f"metrics at {g('url')}"
    if ev == "dashboard_serving":
        return f"dashboard at {g('url')}" + (" (token required)" if g("token_required") else "")
    if ev == "signal":
        return f"{g('signal')}: stopping every actor"
    if ev == "shutdown":
        return "shutting down"
    return None


def log_text(rec: Mapping[str, Any]) -> Text | None:
    """One line for a log record, or None if the console does not show it."""
    level = str(rec.get("level", "info"))
    ev = str(rec.get("event", ""))
    if ev in HIDDEN_EVENTS:
        return None
    if level in ("debug", "info") and (ev not in SHOWN_INFO or (ev == "actor_started" and not rec.get("restarts"))):
        return None
    who = str(rec.get("proc") or rec.get("actor") or "")
    ts = rec.get("ts")
    t = Text(wall(float(ts) if isinstance(ts, int | float) else time.time()) + "  ", style="dim")
    special = _special(ev, rec)
    hard = ev in ("hardstop_latched", "hardstop_requested", "hardstop_flatten_incomplete")
    style = "bold white on red" if hard else LEVEL_STYLE.get(level, "")
    t.append(LEVEL_TAG.get(level, level[:5]) + " ", style=style if level != "info" else "dim")
    t.append(f"{who:<16} ", style="bold" if level != "info" else "")
    t.append(redact(special) if special is not None else f"{ev}  {_fields(rec)}".rstrip(), style=style)
    return t


def summary_text(status: Mapping[str, Any]) -> Text:
    """The minute summary: trades, PnL, what is open, latency, READY, the hard stop."""
    tr = status.get("trading") or {}
    t = Text(wall(time.time()) + "  ", style="dim")
    t.append("── ", style="bold blue")
    win = tr.get("win_rate")
    t.append(f"trades {tr.get('trades', 0)}" + ("" if win is None else f" (win {win * 100:.0f} %)") + "  ")
    rp = float(tr.get("realized_pnl_usd") or 0.0)
    t.append(f"realised {rp:+.4f} USD", style="green" if rp >= 0 else "red")
    up = tr.get("unrealized_pnl_usd")
    t.append("  unrealised " + ("–" if up is None else f"{up:+.4f} USD"))
    t.append(f"  open {len(tr.get('positions') or [])} pos / {tr.get('open_orders', 0)} orders")
    e2e = (tr.get("tick_to_trade_us") or {}).get("entry") or {}
    if e2e.get("n"):
        t.append(f"  tick-to-trade p50 {e2e['p50'] / 1000:.2f} ms")
    actors = status.get("actors") or []
    ready = sum(1 for a in actors if a.get("ready"))
    t.append(f"  READY {ready}/{len(actors)}", style="green" if ready == len(actors) else "bold red")
    hs = status.get("hard_stop") or {}
    if hs.get("latched"):
        t.append(f"  HARD STOP LATCHED: {hs.get('reason')}", style="bold white on red")
    return t


def end_texts(status: Mapping[str, Any], left_lines: list[str]) -> list[Text]:
    """The end of a session: duration, the hard stop, restarts, the trading, what is left open."""
    from hip3.runtime.trading import format_trading

    hs = status.get("hard_stop") or {}
    out = [Text(f"hip3 session ended after {status.get('uptime_s')} s (run dir {status.get('run_dir')})",
                style="bold")]
    if hs.get("latched"):
        out.append(Text(f"hard stop: LATCHED: {hs.get('reason')} (epoch {hs.get('epoch')}); the next start "
                        "flattens first; `reset-hardstop` clears it", style="bold white on red"))
    else:
        out.append(Text(f"hard stop: not latched (epoch {hs.get('epoch')})", style="green"))
    if hs.get("persisted") is False:
        out.append(Text(f"HARD STOP NOT SAVED: cannot write {hs.get('path')}: {hs.get('persist_error')}; the next "
                        "start does not know it: repair that path and run `hardstop` again before starting",
                        style="bold white on red"))
    restarts = [f"{a['name']}={a['restarts']}" for a in status.get("actors") or [] if a.get("restarts")]
    out.append(Text("actor restarts: " + (", ".join(restarts) or "none"), style="yellow" if restarts else "dim"))
    if status.get("trading"):
        # Its last line (positions) is said better by the listing of what is left.
        out.extend(Text(line) for line in format_trading(status["trading"]) if not line.startswith("open orders"))
    for i, line in enumerate(left_lines):
        bad = i == 0 and line.startswith(("LEFT OPEN", "left at the exchange: UNKNOWN"))
        out.append(Text(line, style="bold yellow" if bad else ("green" if i == 0 else "")))
    return out

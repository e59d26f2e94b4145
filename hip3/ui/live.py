"""``python supervisor.py status --watch`` (also ``top``): a live screen of a running hip3, once a second.

The CLI asks the supervisor for ``status`` over the control socket and redraws (``rich.live.Live`` on
the terminal's alternate screen, like ``top``); nothing in the supervisor or the actors runs for it
beyond answering that request. ``render`` is pure (a status document in, a renderable out), so tests
check the screen's content without a terminal, and with one (tmux) end to end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hip3.ui.view import key_stats

__all__ = ["render", "watch"]

MAX_TRADES = 8
MAX_STATS = 16
BUDGET_WORDS = ("budget", "rate_limit", "ratelimit")  # the request budget's stats, whoever reports them


def _f(x: Any, fmt: str = "g", none: str = "–") -> str:
    return none if x is None else format(x, fmt)


def _pnl(x: float | None, digits: int = 4) -> Text:
    if x is None:
        return Text("–", style="dim")
    return Text(f"{x:+.{digits}f}", style="green" if x > 0 else "red" if x < 0 else "")


def _header(st: Mapping[str, Any], now_s: float) -> RenderableType:
    hs = st.get("hard_stop") or {}
    head = Text()
    head.append("hip3", style="bold cyan")
    head.append(f"  {st.get('mode', '?')} mode  up {_f(st.get('uptime_s'), '.0f')} s  {st.get('run_dir', '')}  "
                f"{time.strftime('%H:%M:%S', time.localtime(now_s))}", style="dim")
    if hs.get("latched"):
        f = hs.get("flatten") or {}
        prog = (f"  flatten: {f.get('positions')} positions, {f.get('open_orders')} orders, attempt "
                f"{f.get('attempts')}{', done' if f.get('done') else ''}") if f else ""
        banner = Text(f" HARD STOP LATCHED: {hs.get('reason')} (epoch {hs.get('epoch')}){prog} ",
                      style="bold white on red")
    else:
        banner = Text(f"hard stop: clear (epoch {hs.get('epoch', 0)})", style="green")
    if hs.get("persisted") is False:  # the latch file could not be written
        banner.append(f"  NOT SAVED: {hs.get('persist_error')}", style="bold red")
    sv = st.get("supervisor") or {}
    if sv.get("stalls"):  # the supervisor's own loop stalled (GC, swap, a slow disk, SIGSTOP)
        head.append(f"  supervisor stalls {sv['stalls']} (longest {sv.get('longest_stall_ms')} ms)", style="yellow")
    return Group(head, banner)


def _actors(st: Mapping[str, Any]) -> Table:
    t = Table(title="actors", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for c, j in (("actor", "left"), ("state", "left"), ("READY", "left"), ("restarts", "right"),
                 ("hb ms", "right"), ("detail", "left")):
        t.add_column(c, justify=j)  # type: ignore[arg-type]
    for a in st.get("actors") or []:
        state = str(a.get("state"))
        t.add_row(a.get("name"), Text(state, style="green" if state == "running" else "red" if state == "failed"
                                      else "yellow"),
                  Text("READY" if a.get("ready") else "no", style="green" if a.get("ready") else "bold red"),
                  Text(str(a.get("restarts", 0)), style="yellow" if a.get("restarts") else ""),
                  _f(a.get("heartbeat_age_ms")), Text(str(a.get("ready_detail") or "")[:40], style="dim"))
    return t


def _pnl_panel(st: Mapping[str, Any]) -> Table:
    tr = st.get("trading") or {}
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim")
    t.add_column()
    t.add_row("realised PnL", _pnl(tr.get("realized_pnl_usd")).append(" USD"))
    t.add_row("unrealised PnL", _pnl(tr.get("unrealized_pnl_usd")).append(" USD"))
    t.add_row("fees", f"{_f(tr.get('fees_usd'), '.4f')} USD")
    win = tr.get("win_rate")
    t.add_row("trades", f"{tr.get('trades', 0)} (entries {tr.get('entries', 0)}, win "
                        f"{'–' if win is None else format(win * 100, '.0f') + ' %'})")
    t.add_row("open", f"{len(tr.get('positions') or [])} positions, {tr.get('open_orders', 0)} orders")
    reasons = tr.get("exits_by_reason") or {}
    t.add_row("exits", ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())) or "–")
    for kind in ("entry", "exit"):
        d = (tr.get("tick_to_trade_us") or {}).get(kind) or {}
        t.add_row(f"tick-to-trade {kind}",
                  f"p50 {_f(d.get('p50'), '.0f')} µs  p99 {_f(d.get('p99'), '.0f')} µs  n={d.get('n', 0)}"
                  if d.get("n") else "–")
    budget = [(r["key"], r["value"]) for rows in key_stats(st).values() for r in rows
              if any(w in r["key"] for w in BUDGET_WORDS)]
    t.add_row("request budget", ", ".join(f"{k}={v}" for k, v in budget) if budget else Text("–", style="dim"))
    return t


def _markets(st: Mapping[str, Any]) -> Table:
    stale = st.get("markets_stale")
    title = "markets" + (" (detector summary stale or missing)" if stale else "")
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
              title_style="bold yellow" if stale else "")
    for c in ("market", "mid", "oracle", "disl bps", "edge bps", "gate", "position", "entry", "uPnL USD"):
        t.add_column(c, justify="left" if c in ("market", "gate") else "right")
    for m in st.get("markets") or []:
        gate = m.get("gate")
        pos = m.get("position")
        edge = m.get("edge_bps")
        t.add_row(m.get("coin"), _f(m.get("mid_px")), _f(m.get("oracle_px")), _f(m.get("dislocation_bps"), "+.1f"),
                  Text(_f(edge, "+.1f"), style="green" if edge is not None and edge > 0 else "dim"),
                  Text(str(gate or "–"), style="green" if gate in ("pass", "spread_reduce") else "bold red"),
                  Text(_f(pos, "+g"), style="" if not pos else "green" if pos > 0 else "red"),
                  _f(m.get("entry_px")), _pnl(m.get("unrealized_pnl_usd")))
    return t


def _trades(st: Mapping[str, Any]) -> Table:
    t = Table(title="recent trades", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for c in ("time", "", "market", "side", "size", "price", "edge bps", "PnL USD", "reason"):
        t.add_column(c, justify="left" if c in ("time", "", "market", "side", "reason") else "right")
    for r in (st.get("recent_trades") or [])[:MAX_TRADES]:
        side = str(r.get("side", ""))
        t.add_row(time.strftime("%H:%M:%S", time.localtime(r.get("time_ms", 0) / 1000)),
                  Text(str(r.get("kind", "")).upper(), style="cyan" if r.get("kind") == "entry" else "magenta"),
                  r.get("coin"), Text(side, style="green" if side == "buy" else "red"), _f(r.get("size")),
                  _f(r.get("px")), _f(r.get("edge_bps"), ".1f", ""),
                  _pnl(r.get("pnl_usd")) if r.get("kind") == "exit" else Text(""), str(r.get("reason") or ""))
    return t


def _stats(st: Mapping[str, Any]) -> Table:
    """The executor's panel, and beside it the tracker's over the other actors' highlighted stats."""
    ks = key_stats(st)

    def panel(name: str, title: str) -> Panel:
        rows = ks.get(name) or []
        body = Text()
        for r in rows[:MAX_STATS]:
            body.append(f"{r['key']}={r['value']}\n", style="yellow" if r["hot"] else "")
        if len(rows) > MAX_STATS:
            body.append(f"… {len(rows) - MAX_STATS} more in status --json", style="dim")
        body.rstrip()
        return Panel(body if rows else Text("no heartbeat yet", style="dim"), title=title, title_align="left",
                     box=box.ROUNDED, padding=(0, 1))

    right: list[RenderableType] = [panel("position_tracker", "position_tracker")]
    if ks.get("others"):
        right.append(panel("others", "other actors"))
    t = Table.grid(padding=(0, 3))
    t.add_row(panel("executor", "executor"), Group(*right))
    return t


def _alerts(st: Mapping[str, Any]) -> RenderableType:
    alerts = (st.get("alerts") or [])[-4:]
    if not alerts:
        return Text("")
    out = Text()
    for a in reversed(alerts):
        out.append(f"{a.get('level', '').upper()} {a.get('actor')}: {a.get('text')}\n",
                   style="bold red" if a.get("level") == "critical" else "yellow")
    return out


def render(status: Mapping[str, Any] | None, error: str | None = None, now_s: float | None = None) -> RenderableType:
    """The whole screen for one ``status`` document (or why there is none)."""
    now_s = time.time() if now_s is None else now_s
    if status is None or not status.get("running"):
        why = error or "no supervisor is running"
        hs = (status or {}).get("hard_stop") or {}
        latched = (f"  hard stop LATCHED: {hs.get('reason')}" if hs.get("latched") else "")
        return Group(Text("hip3", style="bold cyan"),
                     Text(f"{why}{latched}  (retrying every second; Ctrl-C quits)", style="bold yellow"))
    top = Table.grid(padding=(0, 4))
    top.add_row(_actors(status), _pnl_panel(status))
    bottom = Table.grid(padding=(0, 4))
    bottom.add_row(_trades(status), _stats(status))
    parts: list[RenderableType] = [_header(status, now_s), top, _markets(status), bottom, _alerts(status)]
    if error:
        parts.insert(1, Text(f"last refresh failed: {error}", style="bold yellow"))
    return Group(*parts)


def watch(fetch: Callable[[], Mapping[str, Any]], interval_s: float = 1.0, console: Console | None = None,
          frames: int | None = None) -> int:
    """Redraw every ``interval_s`` until Ctrl-C (or ``frames`` redraws). ``fetch`` raises on no answer."""
    console = console or Console()
    last: Mapping[str, Any] | None = None
    n = 0
    with Live(render(None, "connecting…"), console=console, screen=True, auto_refresh=False,
              redirect_stdout=False, redirect_stderr=False) as live:
        try:
            while frames is None or n < frames:
                error = None
                try:
                    last = fetch()
                except Exception as e:  # the supervisor not answering is shown (with its last answer), not raised
                    error = str(e) or type(e).__name__
                live.update(render(last, error), refresh=True)
                n += 1
                if frames is None or n < frames:
                    time.sleep(interval_s)
        except KeyboardInterrupt:
            pass
    return 0

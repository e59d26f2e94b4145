"""``python supervisor.py report --html FILE``: the session as one self-contained HTML page (plotly).

Charts: the equity curve (cumulative net PnL after each closed trade), its drawdown, net PnL and fees by
market and by exit reason, and the follow-up edge curves per market (the mean net edge of a taker round
trip at each follow-up horizon, and the share of the signal's edge still there). The figures are the
session report's (``hip3.journal.report``: fees from the exchange's fills) and the follow-up analysis's
(``hip3.analysis.followups``); this module only draws them.

Self-contained: plotly.js is inlined once (about 5 MB), nothing is fetched when the page opens, so it can
be mailed or opened on a machine without network. Text from the journal is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.offline

from hip3.analysis.equity import EquityPoint

_TEMPLATE = "plotly_white"


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _div(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(template=_TEMPLATE, height=380, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    out: str = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)
    return out


def _equity(curve: list[EquityPoint]) -> list[str]:
    # Both curves start at 0 at the first close, so the first trade's step is drawn.
    start = [_time(curve[0].closed_ms)] if curve else []
    x = start + [_time(p.closed_ms) for p in curve]
    zero = [0.0] if curve else []
    eq = go.Figure(go.Scatter(x=x, y=zero + [p.equity_usd for p in curve], mode="lines+markers", name="net PnL",
                              text=["start"] * len(start) + [p.coin for p in curve], line={"shape": "hv"}))
    eq.update_layout(title="Equity: cumulative net PnL (USD, after fees)", xaxis_title="close time (UTC)",
                     yaxis_title="USD")
    dd = go.Figure(go.Scatter(x=x, y=zero + [-p.drawdown_usd for p in curve], mode="lines", fill="tozeroy",
                              name="drawdown", line={"shape": "hv", "color": "#c0392b"}))
    dd.update_layout(title="Drawdown from the running peak (USD)", xaxis_title="close time (UTC)",
                     yaxis_title="USD")
    return [_div(eq, "equity"), _div(dd, "drawdown")]


def _bars(groups: dict[str, dict[str, Any]], title: str, div_id: str) -> str:
    names = list(groups)
    fig = go.Figure([
        go.Bar(x=names, y=[groups[n]["net_pnl_usd"] for n in names], name="net PnL",
               text=[f"{groups[n]['trades']} trades" for n in names]),
        go.Bar(x=names, y=[-groups[n]["fees_usd"] for n in names], name="fees (negative)"),
    ])
    fig.update_layout(title=title, barmode="group", yaxis_title="USD")
    return _div(fig, div_id)


def _followup_curves(fu: dict[str, Any]) -> list[str]:
    hs = fu["horizons_ms"]
    if not hs or not fu["markets"]:
        return []
    net = go.Figure()
    kept = go.Figure()
    xs = [h / 1000 for h in hs]
    for coin, m in fu["markets"].items():
        net.add_trace(go.Scatter(x=xs, y=[m["horizons"][str(h)]["net_bps"] for h in hs], mode="lines+markers",
                                 name=coin + (" (structural)" if m["structural_spread"] else "")))
        kept.add_trace(go.Scatter(x=[0.0, *xs], y=[100.0] + [None if m["edge_retained"].get(str(h)) is None
                                                            else 100 * m["edge_retained"][str(h)] for h in hs],
                                  mode="lines+markers", name=coin))
    net.add_hline(y=0, line_dash="dot")
    net.update_layout(title=f"Follow-up edge: mean net bps of a taker round trip ({fu['fees']})",
                      xaxis_title="seconds after the signal", yaxis_title="bps")
    kept.update_layout(title="Edge left after the signal (median %, oracle vs same-side touch)",
                       xaxis_title="seconds after the signal", yaxis_title="% of the signal's edge")
    return [_div(net, "followup_net"), _div(kept, "followup_kept")]


def _summary_table(rep: dict[str, Any], curve: list[EquityPoint], fu: dict[str, Any]) -> str:
    t = rep["totals"]
    win = "-" if t["win_rate"] is None else f"{t['win_rate'] * 100:.1f} %"
    dd = max((p.drawdown_usd for p in curve), default=0.0)
    rows = [("trades", t["trades"]), ("win rate (net of fees)", win), ("realised PnL", f"{t['pnl_usd']:+.4f} USD"),
            ("fees", f"{t['fees_usd']:.4f} USD"), ("net PnL", f"{t['net_pnl_usd']:+.4f} USD"),
            ("max drawdown", f"{dd:.4f} USD"), ("signals", fu["signals"]), ("follow-ups", fu["followups"])]
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    flags = [f"<li>{html.escape(c)}: structural spread ({m['edge_retained_at_last_horizon'] * 100:.0f} % of the "
             "edge left at the last horizon)</li>"
             for c, m in fu["markets"].items() if m["structural_spread"]]
    flagged = f"<ul>{''.join(flags)}</ul>" if flags else ""
    return f"<table class='summary'>{cells}</table>{flagged}"


def render(rep: dict[str, Any], curve: list[EquityPoint], fu: dict[str, Any], source: str = "") -> str:
    """The page for the session report ``rep``, its equity ``curve`` and the follow-up analysis ``fu``."""
    parts = _equity(curve)
    if rep["by_market"]:
        parts.append(_bars(rep["by_market"], "Net PnL and fees by market (USD)", "by_market"))
    if rep["by_exit_reason"]:
        parts.append(_bars(rep["by_exit_reason"], "Net PnL and fees by exit reason (USD)", "by_exit_reason"))
    parts.extend(_followup_curves(fu))
    title = "hip3 session report" + (f": {source}" if source else "")
    data = json.dumps({"totals": rep["totals"], "charts": len(parts)})
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1200px}"
        "table.summary{border-collapse:collapse}table.summary th,table.summary td{padding:2px 10px;"
        "border-bottom:1px solid #ddd;text-align:left}</style>",
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>",
        _summary_table(rep, curve, fu),
        f"<script type='application/json' id='hip3-summary'>{html.escape(data, quote=False)}</script>",
        *(f"<section class='chart'>{p}</section>" for p in parts),
        "</body></html>",
    ])


def write_html(path: Path, page: str) -> None:
    """Write atomically (a reader never sees half a page)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)

"""Equity and drawdown from closed trades, and the optimiser's objective.

Net PnL is each trade's realised PnL minus its fees as the report attributes them (the exchange's fills,
``hip3.journal.report.closed_trades``), so the optimiser scores a parameter set with exactly the figures the
operator's report shows. Drawdown is the largest fall of cumulative net PnL from its running peak
(starting at 0: a session that only loses has its whole loss as drawdown).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hip3.journal.report import ClosedTrade


@dataclass(frozen=True)
class EquityPoint:
    closed_ms: int
    coin: str
    net_usd: float  # this trade
    equity_usd: float  # cumulative net PnL after it
    drawdown_usd: float  # peak equity so far minus equity (>= 0)


def equity_curve(trades: Iterable[ClosedTrade]) -> list[EquityPoint]:
    """Cumulative net PnL after each trade, in the order given (the journal's)."""
    out: list[EquityPoint] = []
    equity = peak = 0.0
    for t in trades:
        net = float(t.pnl - t.fees)
        equity += net
        peak = max(peak, equity)
        out.append(EquityPoint(t.closed_ms, t.coin, net, equity, peak - equity))
    return out


def max_drawdown(net_pnls: Sequence[float]) -> float:
    """The largest fall of cumulative ``net_pnls`` from its running peak (peak starts at 0)."""
    equity = peak = dd = 0.0
    for x in net_pnls:
        equity += x
        peak = max(peak, equity)
        dd = max(dd, peak - equity)
    return dd


def score(net_pnl_usd: float, max_drawdown_usd: float, drawdown_penalty: float) -> float:
    """The optimiser's objective: net PnL minus ``drawdown_penalty`` times the maximum drawdown."""
    return net_pnl_usd - drawdown_penalty * max_drawdown_usd

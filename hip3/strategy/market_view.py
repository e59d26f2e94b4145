"""The detector's market summary for the operator's views: mid, oracle, dislocation, gate, data ages.

The operator's live view and dashboard need what only the detector holds (each market's book, oracle and
gate verdict). The detector sends this summary once a second from a timer, never from its per-batch
path, so the views cost the trading path nothing; the supervisor keeps the latest one.
"""

from __future__ import annotations

from collections.abc import Mapping

from hip3.messages import MarketLine
from hip3.strategy.gates import GateState
from hip3.strategy.market_state import MarketState

__all__ = ["market_lines"]


def _age_ms(recv_ns: int, now_ns: int) -> int:
    return -1 if recv_ns <= 0 else max(0, (now_ns - recv_ns) // 1_000_000)


def market_lines(markets: Mapping[str, MarketState], gates: Mapping[str, GateState],
                 now_ns: int) -> tuple[MarketLine, ...]:
    """One line per market, in configuration order."""
    out: list[MarketLine] = []
    for coin, m in markets.items():
        book = m.bbo_valid and m.bid_px > 0.0 and m.ask_px > 0.0
        mid = (m.bid_px + m.ask_px) * 0.5 if book else 0.0
        oracle = m.oracle_px if m.has_ctx else 0.0
        disloc = edge = 0.0
        if mid > 0.0 and oracle > 0.0:
            disloc = (mid - oracle) / oracle * 1e4
            # The detector's own edges: buy below the oracle at the ask, sell above it at the bid.
            edge = max((oracle - m.ask_px) / oracle * 1e4, (m.bid_px - oracle) / oracle * 1e4)
        st = gates.get(coin)
        out.append(MarketLine(
            coin=coin, mid_px=mid, oracle_px=oracle, mark_px=m.mark_px if m.has_ctx else 0.0,
            dislocation_bps=round(disloc, 2), edge_bps=round(edge, 2),
            gate=st.last_verdict.name.lower() if st is not None else "unknown",
            bbo_age_ms=_age_ms(m.bbo_recv_ns if m.has_bbo else 0, now_ns),
            ctx_age_ms=_age_ms(m.ctx_recv_ns if m.has_ctx else 0, now_ns)))
    return tuple(out)

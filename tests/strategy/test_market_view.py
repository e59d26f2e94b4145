"""The detector's market summary for the operator's views (hip3.strategy.market_view)."""

from __future__ import annotations

from hip3.strategy.gates import GateState, GateVerdict
from hip3.strategy.market_state import MarketState
from hip3.strategy.market_view import market_lines

NOW = 10_000_000_000


def _market(coin: str, bid: float, ask: float, oracle: float, mark: float) -> MarketState:
    m = MarketState(coin, 1.0)
    m.bid_px, m.ask_px, m.bid_sz, m.ask_sz = bid, ask, 1.0, 1.0
    m.has_bbo = m.bbo_valid = True
    m.bbo_recv_ns = NOW - 40_000_000
    m.oracle_px, m.mark_px, m.has_ctx = oracle, mark, True
    m.ctx_recv_ns = NOW - 900_000_000
    return m


def test_lines_carry_mid_oracle_dislocation_edge_gate_and_ages() -> None:
    gold = _market("xyz:GOLD", 1999.0, 2001.0, 2010.0, 2004.0)  # the book lags an oracle that moved up
    silver = _market("xyz:SILVER", 50.2, 50.3, 50.0, 50.25)  # the book is above the oracle
    gates = {"xyz:GOLD": GateState(), "xyz:SILVER": GateState()}
    gates["xyz:GOLD"].last_verdict = GateVerdict.PASS
    gates["xyz:SILVER"].last_verdict = GateVerdict.MARK_MID_DIVERGENCE
    lines = market_lines({"xyz:GOLD": gold, "xyz:SILVER": silver}, gates, NOW)
    g, s = lines
    assert (g.coin, g.mid_px, g.oracle_px, g.mark_px) == ("xyz:GOLD", 2000.0, 2010.0, 2004.0)
    assert g.dislocation_bps == round((2000.0 - 2010.0) / 2010.0 * 1e4, 2)  # -49.75 bps
    assert g.edge_bps == round((2010.0 - 2001.0) / 2010.0 * 1e4, 2)  # buy at the ask below the oracle
    assert g.gate == "pass" and g.bbo_age_ms == 40 and g.ctx_age_ms == 900
    assert s.edge_bps == round((50.2 - 50.0) / 50.0 * 1e4, 2)  # sell at the bid above the oracle
    assert s.gate == "mark_mid_divergence"


def test_a_market_without_data_says_so() -> None:
    empty = MarketState("xyz:TSLA", 1.0)
    (line,) = market_lines({"xyz:TSLA": empty}, {"xyz:TSLA": GateState()}, NOW)
    assert (line.mid_px, line.oracle_px, line.dislocation_bps, line.edge_bps) == (0.0, 0.0, 0.0, 0.0)
    assert line.gate == "no_bbo" and line.bbo_age_ms == -1 and line.ctx_age_ms == -1

"""hip3.ui.board: the supervisor's view for the operator: trades with edge and PnL, markets joined with
positions, unrealised PnL, and what a stop would leave."""

from __future__ import annotations

from typing import Any

from hip3.messages import MarketView
from hip3.ui.board import MARKETS_STALE_MS, Board, leftovers
from tests.ui.samples import closed, filled, line, order, position, snapshot, submitted


def _board() -> tuple[Board, list[int]]:
    mono = [1_000_000_000]
    return Board(wall_ms=lambda: 1_700_000_000_000, mono_ns=lambda: mono[0]), mono


def test_an_entry_line_carries_its_signals_edge_and_an_exit_line_its_pnl() -> None:
    board, _ = _board()
    heard: list[dict[str, Any]] = []
    board.listeners.append(heard.append)
    board.on_message(submitted("c1", "xyz:GOLD", True, 43.04))
    board.on_message(filled("c1", "xyz:GOLD", True, "0.5", "2000.5"))
    board.on_message(filled("c2", "xyz:GOLD", False, "0.5", "2010", reduce_only=True))  # an exit's fill: no entry
    board.on_message(closed("xyz:GOLD", True, "0.5", "2000.5", "2010", "4.75", "mark_regression"))
    assert heard == list(board.trades)
    entry, exit_ = heard
    assert entry == {"kind": "entry", "time_ms": 1_700_000_000_000, "coin": "xyz:GOLD", "side": "buy", "size": 0.5,
                     "px": 2000.5, "edge_bps": 43.04}
    assert exit_["kind"] == "exit" and exit_["side"] == "sell" and exit_["position"] == "long"
    assert (exit_["px"], exit_["entry_px"], exit_["pnl_usd"], exit_["reason"]) == (2010.0, 2000.5, 4.75,
                                                                                  "mark_regression")
    view = board.view(None, 0)
    assert [t["kind"] for t in view["recent_trades"]] == ["exit", "entry"]  # newest first


def test_a_fill_whose_submission_was_missed_still_makes_a_line_without_an_edge() -> None:
    board, _ = _board()
    board.on_message(filled("lost", "xyz:GOLD", False, "1", "10"))
    assert board.trades[0]["edge_bps"] is None and board.trades[0]["side"] == "sell"


def test_markets_join_positions_with_unrealised_pnl_at_the_mark() -> None:
    board, _ = _board()
    board.on_market_view(MarketView(actor="detector", markets=(
        line("xyz:GOLD", 2001.0, 2000.0, 2002.0), line("xyz:SILVER", 50.0, 50.5, 50.2, "bbo_stale"))),
        now_ns=1_000_000_000)
    snap = snapshot((position("xyz:GOLD", True, "0.5", "2000"), position("xyz:SILVER", False, "2", "51")))
    v = board.view(snap, now_ns=1_400_000_000)
    gold, silver = v["markets"]
    assert gold["position"] == 0.5 and gold["unrealized_pnl_usd"] == 1.0  # (2002 - 2000) * 0.5
    assert silver["position"] == -2.0 and silver["unrealized_pnl_usd"] == 1.6  # (51 - 50.2) * 2, short
    assert silver["gate"] == "bbo_stale" and gold["mid_px"] == 2001.0 and gold["oracle_px"] == 2000.0
    assert v["unrealized_pnl_usd"] == 2.6 and v["markets_age_ms"] == 400 and v["markets_stale"] is False
    assert board.view(snap, now_ns=1_000_000_000 + (MARKETS_STALE_MS + 1) * 1_000_000)["markets_stale"] is True


def test_a_position_outside_the_detectors_markets_gets_a_row_and_no_unrealised_pnl() -> None:
    board, _ = _board()
    board.on_market_view(MarketView(actor="detector", markets=(line("xyz:GOLD", 2001.0, 2000.0, 2002.0),)), 5)
    v = board.view(snapshot((position("xyz:TSLA", True, "1", "400"),)), 5)
    assert [r["coin"] for r in v["markets"]] == ["xyz:GOLD", "xyz:TSLA"]
    assert v["markets"][1]["position"] == 1.0 and v["markets"][1]["unrealized_pnl_usd"] is None
    assert v["unrealized_pnl_usd"] is None  # a total without one position's PnL would be a lie
    assert board.view(None, 5)["markets_stale"] is False
    assert Board().view(None, 5)["markets_stale"] is True  # no summary from the detector yet


def test_leftovers_list_positions_and_orders_with_the_snapshots_age() -> None:
    board, mono = _board()
    snap = snapshot((position("xyz:GOLD", False, "0.25", "2000"),), (order("xyz:GOLD", 42, True, "0.1", "1990", True),))
    board.on_message(snap)
    mono[0] += 300_000_000
    board.on_market_view(MarketView(actor="detector", markets=(line("xyz:GOLD", 1990.0, 1990.0, 1990.0),)), 0)
    left = board.left(snap)
    assert left["known"] and left["synced"] and left["age_ms"] == 300
    assert left["positions"] == [{"coin": "xyz:GOLD", "side": "short", "size": 0.25, "entry_px": 2000.0,
                                  "mark_px": 1990.0, "unrealized_pnl_usd": 2.5}]
    assert left["open_orders"] == [{"coin": "xyz:GOLD", "side": "buy", "size": 0.1, "limit_px": 1990.0,
                                    "reduce_only": True, "oid": 42, "cloid": None}]
    assert leftovers(None, {}, None)["known"] is False

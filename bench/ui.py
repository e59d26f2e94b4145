"""Benchmark: what the operator's views cost, and where (the console, status --watch, the dashboard).

* ``market_lines_us``: the detector's once-a-second market summary for 8 markets (its stats timer, not
  its per-batch path).
* ``board_event_us``: one ``OrderSubmitted`` + ``OrderFilled`` pair into the supervisor's board (its loop).
* ``console_put_us``: the loop's share of a console line (a non-blocking queue put; the get is counted too).
* ``status_view_us``: the board's part of ``status`` (markets joined with 8 positions, 50 recent trades).
* ``trading_uncached_us`` / ``trading_cached_us``: ``TradingStats.as_dict()`` with 20,000 tick-to-trade
  samples per kind, recomputing the percentiles (what an uncached call costs) and with no new sample
  since the last call (the live view and the dashboard ask every second).
* ``api_document_us``: encoding the dashboard's status document (the loop, every ``refresh_ms``).

Run: ``python -m bench.ui [--n N]``. Figures on a shared machine are indicative. The last line is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
from decimal import Decimal
from typing import Any

import msgspec
from rich.console import Console

from bench.metrics import _best_us
from hip3.messages import MarketView, OrderFilled, OrderSubmitted, Position, PositionSnapshot
from hip3.runtime.trading import TradingStats
from hip3.strategy.gates import GateState
from hip3.strategy.market_state import MarketState
from hip3.strategy.market_view import market_lines
from hip3.ui.board import Board
from hip3.ui.terminal import Terminal
from hip3.ui.view import api_document

COINS = [f"xyz:M{i}" for i in range(8)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    markets = {}
    for i, c in enumerate(COINS):
        m = MarketState(c, 1.0)
        m.bid_px, m.ask_px, m.has_bbo, m.bbo_valid, m.bbo_recv_ns = 100.0 + i, 100.1 + i, True, True, 1
        m.oracle_px, m.mark_px, m.has_ctx, m.ctx_recv_ns = 100.05 + i, 100.05 + i, True, 1
        markets[c] = m
    gates = {c: GateState() for c in COINS}
    out: dict[str, Any] = {"market_lines_us": _best_us(lambda: market_lines(markets, gates, 10**12), n)}

    board = Board()
    sub = OrderSubmitted(cloid="c", intent_id="i", coin=COINS[0], asset=1, is_buy=True, px=Decimal("1"),
                         sz=Decimal("1"), reduce_only=False, tif="Ioc", kind="entry", reason="", nonce=1, post_id=1,
                         origin_recv_ns=1, sent_ns=2, edge_bps=40.0)
    fill = OrderFilled(cloid="c", oid=1, coin=COINS[0], is_buy=True, total_sz=Decimal("1"), avg_px=Decimal("100"),
                       reduce_only=False, recv_ns=1)
    out["board_event_us"] = _best_us(lambda: (board.on_message(sub), board.on_message(fill)), n)

    term = Terminal(Console(file=io.StringIO()), None)  # its thread is not started: the put alone
    rec = board.trades[-1]
    out["console_put_us"] = _best_us(lambda: (term.on_trade(rec), term._q.get_nowait()), n)

    board.on_market_view(MarketView(actor="detector", markets=market_lines(markets, gates, 10**12)), 1)
    snap = PositionSnapshot(version=1, synced=True, positions=tuple(
        Position(coin=c, asset=1, is_long=True, size=Decimal("1"), entry_px=Decimal("100"), opened_ms=1)
        for c in COINS), open_orders=(), realized_pnl_usd=Decimal("0"), fees_usd=Decimal("0"))
    out["status_view_us"] = _best_us(lambda: board.view(snap, 2), n)

    trading = TradingStats()
    for k in ("entry", "exit"):
        for i in range(20_000):
            trading.t2t_us[k].append(1000.0 + (i * 7919) % 3000)
            trading._t2t_added[k] += 1

    def uncached() -> None:
        trading._t2t_cache.clear()
        trading.as_dict()

    out["trading_uncached_us"] = _best_us(uncached, max(1, n // 100))
    trading.as_dict()
    out["trading_cached_us"] = _best_us(trading.as_dict, n)
    doc = {"running": True, "actors": [{"name": "executor", "stats": {f"k{i}": i for i in range(60)}}],
           "trading": trading.as_dict(), **board.view(snap, 2)}
    enc = msgspec.json.Encoder()
    out["api_document_us"] = _best_us(lambda: enc.encode(api_document(doc)), n)
    out = {k: round(v, 2) for k, v in out.items()}
    for k, v in out.items():
        print(f"{k:>22}: {v:10.2f} µs")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

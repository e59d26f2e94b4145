"""What the supervisor keeps for the operator's views: the markets, the recent trades, unrealised PnL.

Fed by the supervisor's loop from what it already receives: the ``exec`` stream (an entry's edge rides
on its ``OrderSubmitted``, its fill on ``OrderFilled``), the ``positions`` stream (``PositionClosed``
has the exit's price, PnL and reason) and the detector's ``MarketView`` (once a second). Every method
is a few dictionary operations: the loop's heartbeat checks and hard-stop rebroadcast never wait on it.

Listeners (the console) get each new trade as a plain dict, in the loop's thread: they must only queue
it (``hip3.ui.terminal`` does a non-blocking put).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from hip3.messages import MarketLine, MarketView, Message, OrderFilled, OrderSubmitted, PositionClosed, PositionSnapshot

__all__ = ["Board", "TradeListener", "leftovers", "unrealized_pnl"]

TradeListener = Callable[[dict[str, Any]], None]

KEEP_TRADES = 50
_KEEP_EDGES = 2_000  # entries submitted but not yet filled (IOC: answered within a round trip)
MARKETS_STALE_MS = 5_000  # three missed summaries: the detector is not there, say so


def unrealized_pnl(is_long: bool, size: float, entry_px: float, mark_px: float) -> float:
    """Unrealised PnL in USD at ``mark_px`` (the exchange values positions at the mark)."""
    return (mark_px - entry_px) * size if is_long else (entry_px - mark_px) * size


def leftovers(snapshot: PositionSnapshot | None, marks: Mapping[str, float], age_ms: int | None) -> dict[str, Any]:
    """What stays open at the exchange per the tracker's last snapshot (``known`` False without one)."""
    if snapshot is None:
        return {"known": False, "synced": False, "age_ms": None, "positions": [], "open_orders": []}
    positions = []
    for p in snapshot.positions:
        mark = marks.get(p.coin)
        size, entry = float(p.size), float(p.entry_px)
        upnl = None if mark is None else round(unrealized_pnl(p.is_long, size, entry, mark), 6)
        positions.append({"coin": p.coin, "side": "long" if p.is_long else "short", "size": size, "entry_px": entry,
                          "mark_px": mark, "unrealized_pnl_usd": upnl})
    orders = [{"coin": o.coin, "side": "buy" if o.is_buy else "sell", "size": float(o.sz),
               "limit_px": float(o.limit_px), "reduce_only": o.reduce_only, "oid": o.oid, "cloid": o.cloid}
              for o in snapshot.open_orders]
    return {"known": True, "synced": snapshot.synced, "age_ms": age_ms, "positions": positions, "open_orders": orders}


class Board:
    """The operator's board. ``view()`` is what ``status`` adds for the live view and the dashboard."""

    def __init__(self, wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 mono_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._wall_ms = wall_ms
        self._mono_ns = mono_ns
        self.snapshot_recv_ns = 0  # when the last position snapshot arrived (its age in the stop's listing)
        self.markets: tuple[MarketLine, ...] = ()
        self.markets_recv_ns = 0
        self.trades: deque[dict[str, Any]] = deque(maxlen=KEEP_TRADES)
        self.listeners: list[TradeListener] = []
        self._edges: OrderedDict[str, float] = OrderedDict()  # entry cloid -> the signal's raw edge

    # ---- events (the supervisor's loop) -------------------------------------------------------------

    def on_market_view(self, msg: MarketView, now_ns: int) -> None:
        self.markets = msg.markets
        self.markets_recv_ns = now_ns

    def on_message(self, msg: Message) -> None:
        if isinstance(msg, OrderSubmitted):
            if msg.kind == "entry":
                self._edges[msg.cloid] = msg.edge_bps
                while len(self._edges) > _KEEP_EDGES:
                    self._edges.popitem(last=False)
        elif isinstance(msg, OrderFilled):
            if not msg.reduce_only and msg.total_sz > 0:
                edge = self._edges.pop(msg.cloid, None)
                self._add({"kind": "entry", "time_ms": self._wall_ms(), "coin": msg.coin,
                           "side": "buy" if msg.is_buy else "sell", "size": float(msg.total_sz),
                           "px": float(msg.avg_px), "edge_bps": None if edge is None else round(edge, 2)})
        elif isinstance(msg, PositionSnapshot):
            self.snapshot_recv_ns = self._mono_ns()
        elif isinstance(msg, PositionClosed):
            # ``time_ms`` is when the supervisor heard of it (the host's clock, like every other console line);
            # ``closed_ms`` is the fill's time as the tracker has it (the exchange's clock when live).
            self._add({"kind": "exit", "time_ms": self._wall_ms(), "closed_ms": msg.closed_ms, "coin": msg.coin,
                       "side": "sell" if msg.is_long else "buy", "position": "long" if msg.is_long else "short",
                       "size": float(msg.size), "px": float(msg.exit_px), "entry_px": float(msg.entry_px),
                       "pnl_usd": float(msg.pnl_usd), "fees_usd": float(msg.fees_usd), "reason": msg.exit_reason,
                       "hold_ms": msg.hold_ms})

    def _add(self, rec: dict[str, Any]) -> None:
        self.trades.append(rec)
        for fn in self.listeners:
            fn(rec)

    # ---- the view -----------------------------------------------------------------------------------

    def marks(self) -> dict[str, float]:
        """The latest mark (else mid) per market, from the detector's summary."""
        return {m.coin: m.mark_px or m.mid_px for m in self.markets if (m.mark_px or m.mid_px) > 0}

    def left(self, snapshot: PositionSnapshot | None) -> dict[str, Any]:
        """What a stop now would leave at the exchange (``hip3.ui.stopping.leftovers``)."""
        age = None if not self.snapshot_recv_ns else max(0, (self._mono_ns() - self.snapshot_recv_ns) // 1_000_000)
        return leftovers(snapshot, self.marks(), age)

    def view(self, snapshot: PositionSnapshot | None, now_ns: int) -> dict[str, Any]:
        """``markets`` (one row per market, positions joined), ``recent_trades`` (newest first) and the
        unrealised PnL (None while a position has no mark)."""
        marks = self.marks()
        positions = {p.coin: p for p in snapshot.positions} if snapshot is not None else {}
        age_ms = None if not self.markets_recv_ns else max(0, (now_ns - self.markets_recv_ns) // 1_000_000)
        rows: list[dict[str, Any]] = []
        upnl_total: float | None = 0.0
        seen: set[str] = set()
        for m in self.markets:
            seen.add(m.coin)
            rows.append({"coin": m.coin, "mid_px": m.mid_px or None, "oracle_px": m.oracle_px or None,
                         "mark_px": m.mark_px or None, "dislocation_bps": m.dislocation_bps, "edge_bps": m.edge_bps,
                         "gate": m.gate, "bbo_age_ms": m.bbo_age_ms, "ctx_age_ms": m.ctx_age_ms})
        # A position in a market the detector does not show (opened outside hip3) still gets a row.
        rows.extend({"coin": c, "mid_px": None, "oracle_px": None, "mark_px": None, "dislocation_bps": None,
                     "edge_bps": None, "gate": None, "bbo_age_ms": None, "ctx_age_ms": None}
                    for c in positions if c not in seen)
        for row in rows:
            p = positions.get(row["coin"])
            row["position"] = None if p is None else float(p.size if p.is_long else -p.size)
            row["entry_px"] = None if p is None else float(p.entry_px)
            upnl = None
            if p is not None:
                mark = marks.get(p.coin)
                if mark is not None:
                    upnl = round(unrealized_pnl(p.is_long, float(p.size), float(p.entry_px), mark), 6)
                upnl_total = None if upnl is None or upnl_total is None else upnl_total + upnl
            row["unrealized_pnl_usd"] = upnl
        return {
            "markets": rows,
            "markets_age_ms": age_ms,
            "markets_stale": age_ms is None or age_ms > MARKETS_STALE_MS,
            "unrealized_pnl_usd": None if upnl_total is None else round(upnl_total, 6),
            "recent_trades": list(reversed(self.trades)),
        }

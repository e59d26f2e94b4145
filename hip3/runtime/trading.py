"""What the operator sees of the trading: counts, positions, PnL, exits by reason, tick-to-trade.

The supervisor feeds this from the ``positions`` and ``exec`` streams (it is off the hot path). Tick-to-
trade is ``OrderSubmitted.sent_ns − origin_recv_ns``: from the exchange frame's receive time at the feed
to the signed order frame written by the executor, both ``time.monotonic_ns()`` on one host.
"""

from __future__ import annotations

from collections import Counter, deque
from decimal import Decimal
from typing import Any

from hip3.messages import Message, OrderFilled, OrderSubmitted, PositionClosed, PositionSnapshot
from hip3.positions.ownership import HIP3, describe
from hip3.runtime.percentiles import percentile_round

_KEEP = 20_000


class TradingStats:
    def __init__(self) -> None:
        self.entries = 0
        self.exit_fills = 0
        self.closes: list[PositionClosed] = []
        self.exit_reasons: Counter[str] = Counter()
        # Closes of positions hip3 did not own (hip3.positions.ownership): not hip3's trades. The tracker's realised
        # PnL is the account's and includes theirs; their sum is shown apart so it can be told.
        self.outside_closes = 0
        self.outside_pnl_usd = Decimal(0)
        self.snapshot: PositionSnapshot | None = None
        self.t2t_us: dict[str, deque[float]] = {"entry": deque(maxlen=_KEEP), "exit": deque(maxlen=_KEEP)}
        # Percentiles sort up to _KEEP samples; the live view and the dashboard ask every second, so they
        # are recomputed only when a sample arrived since (keyed by the count of samples ever added).
        self._t2t_added = {"entry": 0, "exit": 0}
        self._t2t_cache: dict[str, tuple[int, dict[str, Any]]] = {}

    def on_message(self, msg: Message) -> None:
        if isinstance(msg, OrderSubmitted):
            if msg.origin_recv_ns > 0 and msg.sent_ns >= msg.origin_recv_ns:
                kind = "entry" if msg.kind == "entry" else "exit"
                self.t2t_us[kind].append((msg.sent_ns - msg.origin_recv_ns) / 1000)
                self._t2t_added[kind] += 1
        elif isinstance(msg, OrderFilled):
            if msg.total_sz > 0:
                if msg.reduce_only:
                    self.exit_fills += 1
                else:
                    self.entries += 1
        elif isinstance(msg, PositionClosed):
            if msg.owner != HIP3:
                self.outside_closes += 1
                self.outside_pnl_usd += msg.pnl_usd
                return
            self.closes.append(msg)
            del self.closes[:-_KEEP]
            self.exit_reasons[msg.exit_reason] += 1
        elif isinstance(msg, PositionSnapshot) and (self.snapshot is None or msg.version >= self.snapshot.version
                                                     or msg.seq < self.snapshot.seq):
            # Versions (and sequence numbers) count per tracker process: a restarted tracker numbers again
            # from 1. Without the seq test the status showed the dead tracker's last book until the new
            # one's version caught up (found by the soak: positions frozen for a minute and more).
            self.snapshot = msg

    def _t2t(self, kind: str) -> dict[str, Any]:
        added = self._t2t_added[kind]
        cached = self._t2t_cache.get(kind)
        if cached is not None and cached[0] == added:
            return dict(cached[1])
        xs = list(self.t2t_us[kind])
        out: dict[str, Any] = {"p50": None, "p99": None, "n": 0} if not xs else {
            "p50": round(percentile_round(xs, 0.5), 1), "p99": round(percentile_round(xs, 0.99), 1), "n": len(xs)}
        self._t2t_cache[kind] = (added, out)
        return dict(out)

    def as_dict(self) -> dict[str, Any]:
        snap = self.snapshot
        positions = [] if snap is None else [
            {"coin": p.coin, "side": "long" if p.is_long else "short", "size": float(p.size),
             "entry_px": float(p.entry_px), "owner": p.owner} for p in snap.positions]
        outside = [] if snap is None else [
            {"coin": p.coin, "side": "long" if p.is_long else "short", "size": float(p.size),
             "entry_px": float(p.entry_px), "owner": p.owner, "action": describe(p)} for p in snap.outside]
        wins = sum(1 for c in self.closes if c.pnl_usd > 0)
        closed_pnl = sum((c.pnl_usd for c in self.closes), Decimal(0))
        return {
            "entries": self.entries,
            "exits": len(self.closes),
            "positions": positions,
            "open_orders": 0 if snap is None else len(snap.open_orders),
            "outside_positions": outside,
            "outside_orders": 0 if snap is None else len(snap.outside_orders),
            "outside_closes": self.outside_closes,
            "outside_pnl_usd": float(self.outside_pnl_usd),
            "realized_pnl_usd": float(snap.realized_pnl_usd) if snap is not None else float(closed_pnl),
            "fees_usd": float(snap.fees_usd) if snap is not None else 0.0,
            "trades": len(self.closes),
            "win_rate": round(wins / len(self.closes), 3) if self.closes else None,
            "exits_by_reason": dict(self.exit_reasons),
            "tick_to_trade_us": {"entry": self._t2t("entry"), "exit": self._t2t("exit")},
        }


def format_trading(t: dict[str, Any]) -> list[str]:
    """The trading part of the status table and of the session summary."""
    t2t = t["tick_to_trade_us"]

    def fmt(k: str) -> str:
        d = t2t[k]
        return "n=0" if not d["n"] else f"p50 {d['p50']} µs, p99 {d['p99']} µs, n={d['n']}"

    win = "-" if t.get("win_rate") is None else f"{t['win_rate'] * 100:.0f} %"
    lines = [
        f"trades    entries={t['entries']} exits={t['exits']} win rate {win} "
        f"realised PnL {t['realized_pnl_usd']:+.4f} USD (fees {t.get('fees_usd', 0.0):.4f})",
        f"exits by reason: {', '.join(f'{k}={v}' for k, v in sorted(t['exits_by_reason'].items())) or '-'}",
        f"tick-to-trade entry: {fmt('entry')}; exit: {fmt('exit')}",
        f"open orders {t['open_orders']}; positions: "
        + (", ".join(f"{p['coin']} {p['side']} {p['size']:g} @ {p['entry_px']:g}" for p in t["positions"]) or "none"),
    ]
    outside = t.get("outside_positions") or []
    if outside or t.get("outside_orders"):
        lines.append(f"not hip3's: {len(outside)} positions, {t.get('outside_orders', 0)} open orders; "
                     f"{t.get('outside_closes', 0)} closed (PnL {t.get('outside_pnl_usd', 0.0):+.4f} USD, in the "
                     "realised PnL above)")
        lines.extend(f"  {p['coin']} {p['side']} {p['size']:g} @ {p['entry_px']:g}: {p['action']}" for p in outside)
    return lines

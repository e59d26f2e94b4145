"""The follow-up analysis of signals (``python supervisor.py report --signals``): what each signal would
have earned as a taker round trip at each follow-up horizon, net of fees, by market, side, edge bucket
and hour, the threshold that would have maximised the expected PnL, and which markets have a structural
spread.

Why: the original bot's paper win rate was 72 % and its live result negative (999 trades, net -$39). Its
authors found the money in per-market thresholds, hold times and which markets to disable, from the 1/3/5 s
follow-ups of observe-mode signals; and 74 % of its trades were in markets whose oracle-to-book gap never
closes (a structural spread: the "edge" is the market's normal shape, not a lagging quote), where it won
15.7 % of the time. Paper edge is not tradable edge: this scores the whole round trip.

How a signal is scored at horizon h: enter at the signal's touch (``best_px``: the ask of a buy signal),
exit at the opposite touch h later (the follow-up's ``exit_px``: the bid after a buy), so the spread is
paid; gross = (exit - entry) / entry (sign flipped for a sell); net = gross - the round-trip taker fees of
``hip3.analysis.fees``. A journal from before follow-ups carried their exit price has the same-side touch
only: those are scored at it (which leaves out the spread, so it flatters) and counted in
``exit_px_missing``. Every signal is scored on its own, as if each had traded (the live bot skips signals
while it holds the market).

The best threshold per market and horizon: among the thresholds at or above the one in force (lower edges
were never signalled, so nothing is known about them), the one whose signals' summed net PnL is the
largest; a market where no threshold makes money is marked ``disable``. PnL in USD uses each signal's
suggested size at its touch price. A structural-spread market: the median share of the signal's edge still
there at the longest horizon is at least ``structural_retention`` (the gap did not close).
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hip3.analysis.fees import FeeModel, TakerFees, round_trip_bps

DEFAULT_BUCKETS_BPS = (10.0, 20.0, 40.0, 80.0, 160.0)
STRUCTURAL_RETENTION = 0.5  # at least half of the edge left at the longest horizon: the gap did not close
MIN_SAMPLES = 5  # a market needs this many scored signals before it is called structural


@dataclass
class Outcome:
    """One signal and what it would have earned at each follow-up horizon."""

    coin: str
    is_buy: bool
    raw_edge_bps: float
    ts_ms: int
    notional_usd: float
    gross_bps: dict[int, float] = field(default_factory=dict)
    retention: dict[int, float] = field(default_factory=dict)  # edge left at h / edge at the signal


def bucket_label(edge_bps: float, buckets: tuple[float, ...]) -> str:
    lo = 0.0
    for b in buckets:
        if edge_bps < b:
            return f"{lo:g}-{b:g}"
        lo = b
    return f">={lo:g}"


def load_outcomes(conn: sqlite3.Connection, since_ms: int = 0) -> tuple[list[Outcome], list[int], dict[str, int]]:
    """Every signal since ``since_ms`` with its follow-ups scored (gross, before fees)."""
    signals: dict[str, Outcome] = {}
    entry_px: dict[str, float] = {}
    for sid, coin, is_buy, raw, best, sz, ts in conn.execute(
            "SELECT signal_id, coin, is_buy, raw_edge_bps, best_px, suggested_sz, ts_ms FROM signals "
            "WHERE ts_ms >= ? ORDER BY ts_ms, signal_id", (since_ms,)):
        if not best or best <= 0 or raw is None:
            continue
        signals[sid] = Outcome(coin=coin, is_buy=bool(is_buy), raw_edge_bps=float(raw), ts_ms=int(ts),
                               notional_usd=float(sz or 0.0) * float(best))
        entry_px[sid] = float(best)
    counts = {"signals": len(signals), "followups": 0, "exit_px_missing": 0}
    columns = {r[1] for r in conn.execute("PRAGMA table_info(signal_followups)")}
    exit_col = "exit_px" if "exit_px" in columns else "NULL"
    horizons: set[int] = set()
    for sid, off, best_h, edge_h, exit_h in conn.execute(
            f"SELECT signal_id, offset_ms, best_px, edge_bps, {exit_col} FROM signal_followups"):
        o = signals.get(sid)
        if o is None:
            continue
        px = exit_h if exit_h else best_h
        if not px or px <= 0:
            continue
        if not exit_h:
            counts["exit_px_missing"] += 1
        entry = entry_px[sid]
        move = (px - entry) / entry * 1e4
        o.gross_bps[int(off)] = move if o.is_buy else -move
        if o.raw_edge_bps > 0 and edge_h is not None:
            o.retention[int(off)] = float(edge_h) / o.raw_edge_bps
        horizons.add(int(off))
        counts["followups"] += 1
    return list(signals.values()), sorted(horizons), counts


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "net_bps": None, "win_rate": None}
    return {"n": len(values), "net_bps": round(statistics.fmean(values), 2),
            "win_rate": round(sum(1 for v in values if v > 0) / len(values), 4)}


def best_threshold(scored: list[tuple[float, float]]) -> dict[str, Any]:
    """``scored``: (raw edge bps, net PnL USD) per signal. The threshold T maximising the PnL of the signals
    with raw edge >= T (ties: the higher T, fewer trades); ``disable`` when no T makes money."""
    if not scored:
        return {"threshold_bps": None, "signals": 0, "expected_pnl_usd": None, "pnl_all_usd": None, "disable": False}
    ordered = sorted(scored, key=lambda s: -s[0])
    total = 0.0
    best_pnl = float("-inf")
    best_t = ordered[0][0]
    best_n = 0
    i = 0
    while i < len(ordered):
        t = ordered[i][0]
        while i < len(ordered) and ordered[i][0] == t:  # every signal at this edge is in or out together
            total += ordered[i][1]
            i += 1
        if total > best_pnl:
            best_pnl, best_t, best_n = total, t, i
    if best_pnl <= 0:
        return {"threshold_bps": None, "signals": 0, "expected_pnl_usd": 0.0, "pnl_all_usd": round(total, 6),
                "disable": True}
    return {"threshold_bps": round(best_t, 2), "signals": best_n, "expected_pnl_usd": round(best_pnl, 6),
            "pnl_all_usd": round(total, 6), "disable": False}


def analyse(conn: sqlite3.Connection, fees: FeeModel | None = None, since_ms: int | None = None,
            buckets: tuple[float, ...] = DEFAULT_BUCKETS_BPS, structural_retention: float = STRUCTURAL_RETENTION,
            min_samples: int = MIN_SAMPLES) -> dict[str, Any]:
    """The whole analysis as plain JSON-able values (see the module doc)."""
    fees = fees or TakerFees()
    outcomes, horizons, counts = load_outcomes(conn, since_ms or 0)
    groups: dict[tuple[str, str, str, int], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    group_n: dict[tuple[str, str, str, int], int] = defaultdict(int)
    per_market: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    market_n: dict[str, int] = defaultdict(int)
    scored: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    retention: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    last_h = horizons[-1] if horizons else None
    for o in outcomes:
        key = (o.coin, "buy" if o.is_buy else "sell", bucket_label(o.raw_edge_bps, buckets), o.ts_ms // 3_600_000 % 24)
        group_n[key] += 1
        market_n[o.coin] += 1
        cost = round_trip_bps(fees, o.coin)
        for h, gross in o.gross_bps.items():
            net = gross - cost
            groups[key][h].append(net)
            per_market[o.coin][h].append(net)
            scored[o.coin][h].append((o.raw_edge_bps, net / 1e4 * o.notional_usd))
        for h, share in o.retention.items():
            retention[o.coin][h].append(share)
    rows = []
    for key in sorted(group_n):
        coin, side, bucket, hour = key
        rows.append({"coin": coin, "side": side, "edge_bucket_bps": bucket, "hour_utc": hour, "signals": group_n[key],
                     "horizons": {str(h): _stats(groups[key].get(h, [])) for h in horizons}})
    markets: dict[str, Any] = {}
    for coin in sorted(market_n):
        kept: list[float] = retention[coin][last_h] if last_h is not None else []
        median_kept = statistics.median(kept) if kept else None
        markets[coin] = {
            "signals": market_n[coin],
            "round_trip_fee_bps": round_trip_bps(fees, coin),
            "horizons": {str(h): _stats(per_market[coin].get(h, [])) for h in horizons},
            "edge_retained": {str(h): round(statistics.median(v), 4) for h, v in sorted(retention[coin].items()) if v},
            "edge_retained_at_last_horizon": None if median_kept is None else round(median_kept, 4),
            "structural_spread": bool(median_kept is not None and len(kept) >= min_samples
                                      and median_kept >= structural_retention),
            "best_threshold": {str(h): best_threshold(scored[coin].get(h, [])) for h in horizons},
        }
    return {"fees": fees.describe() if isinstance(fees, TakerFees) else type(fees).__name__,
            "since_ms": since_ms, "horizons_ms": horizons, "edge_buckets_bps": list(buckets), **counts,
            "structural_retention": structural_retention, "markets": markets, "groups": rows}


def _cell(s: dict[str, Any]) -> str:
    if not s["n"]:
        return f"{'-':>8} {'':>5}"
    return f"{s['net_bps']:>+8.1f} {s['win_rate'] * 100:>4.0f}%"


def format_analysis(rep: dict[str, Any], path: str = "") -> str:
    """The analysis as text for a terminal."""
    hs = rep["horizons_ms"]
    head = "".join(f" {'+' + format(h / 1000, 'g') + 's net':>8} {'win':>5}" for h in hs)
    out = [f"follow-up analysis{' of ' + path if path else ''}: {rep['signals']} signals, {rep['followups']} "
           f"follow-ups; fees: {rep['fees']}; net bps of a taker round trip (touch in, opposite touch out)"]
    if rep["exit_px_missing"]:
        out.append(f"  note: {rep['exit_px_missing']} follow-ups from an older journal have no exit price: scored "
                   "at the same-side touch (spread left out: flatters)")
    if not rep["markets"]:
        out.append("no signals with follow-ups (observe or paper mode journals them)")
        return "\n".join(out)
    out.append("by market:")
    out.append(f"  {'market':<16} {'n':>5}{head}  edge kept  best threshold per horizon")
    for coin, m in rep["markets"].items():
        kept = m["edge_retained_at_last_horizon"]
        cells = "".join(" " + _cell(m["horizons"][str(h)]) for h in hs)
        best = []
        for h in hs:
            b = m["best_threshold"][str(h)]
            if b["disable"]:
                best.append(f"+{h / 1000:g}s disable")
            elif b["threshold_bps"] is not None:
                best.append(f"+{h / 1000:g}s {b['threshold_bps']:g} bps "
                            f"({b['signals']}, {b['expected_pnl_usd']:+.2f} $)")
        flag = "  STRUCTURAL SPREAD" if m["structural_spread"] else ""
        kept_s = "-" if kept is None else f"{kept * 100:.0f} %"
        out.append(f"  {coin:<16} {m['signals']:>5}{cells}  {kept_s:>9}  {'; '.join(best)}{flag}")
    out.append("by market, side, edge bucket (bps) and hour (UTC):")
    out.append(f"  {'market':<16} {'side':<4} {'edge':>8} {'hour':>4} {'n':>5}{head}")
    for g in rep["groups"]:
        cells = "".join(" " + _cell(g["horizons"][str(h)]) for h in hs)
        out.append(f"  {g['coin']:<16} {g['side']:<4} {g['edge_bucket_bps']:>8} {g['hour_utc']:>4} "
                   f"{g['signals']:>5}{cells}")
    return "\n".join(out)

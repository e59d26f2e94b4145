"""The session report: figures computed from the trade journal (``python supervisor.py report``).

It works whether or not the supervisor runs: the journal is opened read-only (``mode=ro``; WAL lets it
read while the recorder writes, and a reader never blocks the writer). Pure queries and formatting; the
CLI in ``supervisor.py`` only opens the file and prints.

What it guards against:

* **Fees missing from trades.** A ``PositionClosed`` emitted from a post response carries only the fees
  known at that moment (fees arrive on userFills, usually after the post response), so summing its
  ``fees_usd`` understates costs. A trade's fees are therefore the userFills fees of the orders that made
  it (entry and exit cloids, attributed per market in journal order: an entry order after a close starts
  the next trade), falling back to the close's own ``fees_usd`` when no userFill of those orders was
  recorded. ``fees_from_fills`` counts the trades whose fees came from fills.
* **Fees assumed but never checked.** The detector's threshold assumes a per-leg taker fee from the
  exchange's terms (``fee_assumptions``: the entry order's assumption applies to both legs); each trade's
  ``fee_assumed_usd`` is that rate times the notional of the trade's fills, next to the fees the exchange
  charged, so a model that diverges from real fills shows up in the first session.
* **Timestamps from different clocks.** Latencies use only ``time.monotonic_ns()`` stamps carried by the
  same ``OrderSubmitted`` (comparable across processes on one host); ``--since`` filters on wall times.
* **A bad ``--since``**: refused with one line naming the value (``ValueError``).

Percentiles pick the sample nearest the rank (``hip3.runtime.percentiles.percentile_round``, as in ``status``).
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hip3.runtime.percentiles import percentile_round

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$", re.IGNORECASE)
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_ZERO = Decimal(0)


def parse_since(text: str, now_ms: int) -> int:
    """``--since``: a relative age (``90s``, ``30m``, ``2h``, ``1d``) or an ISO-8601 time (a time without a
    zone is local time). Returns epoch milliseconds."""
    m = _REL.match(text)
    if m:
        return now_ms - int(float(m.group(1)) * _UNIT_MS[m.group(2).lower()])
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: expected an age like 30m, 2h, 1d or an ISO-8601 time") from None
    return int(dt.timestamp() * 1000)


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open the journal read-only (never creates it, never writes it)."""
    if not path.is_file():
        raise FileNotFoundError(f"no journal at {path} (the recorder writes it while hip3 runs)")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)


@dataclass
class _Trade:
    coin: str
    exit_reason: str
    pnl: Decimal
    fees: Decimal
    fees_from_fills: bool
    hold_ms: int
    closed_ms: int
    notional: Decimal = _ZERO  # of the trade's fills, both legs (0: no fill of its orders recorded)
    assumed_fee_bps: float | None = None  # the entry's assumed per-leg taker fee (None: not recorded)
    fee_source: str = ""

    @property
    def fee_assumed_usd(self) -> Decimal | None:
        if self.assumed_fee_bps is None or self.notional <= 0:
            return None
        return self.notional * Decimal(repr(self.assumed_fee_bps)) / 10_000

    @property
    def fee_paid_bps(self) -> float | None:
        return float(self.fees / self.notional * 10_000) if self.notional > 0 and self.fees_from_fills else None


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


@dataclass
class _Group:
    """The orders of one trade in one market, until its close."""

    cloids: list[str] = field(default_factory=list)
    closed: bool = False


def _trades(conn: sqlite3.Connection) -> list[_Trade]:
    """Every close with its fees attributed from userFills (see the module docstring)."""
    fees_by_cloid: dict[str, Decimal] = defaultdict(Decimal)
    ntl_by_cloid: dict[str, Decimal] = defaultdict(Decimal)
    for cloid, fee, px, sz in conn.execute("SELECT cloid, fee, px, sz FROM user_fills WHERE cloid IS NOT NULL"):
        fees_by_cloid[cloid] += Decimal(fee)
        ntl_by_cloid[cloid] += Decimal(px) * Decimal(sz)
    post_ntl: dict[str, Decimal] = defaultdict(Decimal)  # post-response totals, when no userFill was recorded
    for cloid, px, sz in conn.execute("SELECT cloid, px, sz FROM fills WHERE cloid IS NOT NULL AND tid = 0"):
        post_ntl[cloid] += Decimal(px) * Decimal(sz)
    assumed: dict[str, tuple[float, str]] = {}
    if _has_table(conn, "fee_assumptions"):  # journals written before fees came from the exchange lack it
        for key, bps, source in conn.execute("SELECT key, taker_fee_bps, fee_source FROM fee_assumptions "
                                             "WHERE kind = 'order'"):
            assumed[key.removeprefix("o:")] = (float(bps), source or "")
    events: list[tuple[int, int, tuple[Any, ...]]] = []
    entry_of: dict[int, str] = {}  # id(group) -> its entry order's cloid
    for row in conn.execute("SELECT rec_ns, coin, kind, cloid FROM orders"):
        events.append((row[0], 0, row))
    for row in conn.execute("SELECT rec_ns, coin, exit_reason, pnl_usd, fees_usd, hold_ms, closed_ms FROM closes"):
        events.append((row[0], 1, row))
    events.sort(key=lambda e: (e[0], e[1]))
    groups: dict[str, _Group] = {}
    closes: list[tuple[_Group, tuple[Any, ...]]] = []
    for _, is_close, row in events:
        coin = row[1]
        g = groups.get(coin)
        if not is_close:
            # Only an entry starts the next trade: an exit order journaled just after its close (the
            # streams race by a hop) still belongs to the trade it closed.
            if g is None or (g.closed and row[2] == "entry"):
                g = groups[coin] = _Group()
            g.cloids.append(row[3])
            if row[2] == "entry":
                entry_of.setdefault(id(g), row[3])
            continue
        if g is None or g.closed:
            g = groups[coin] = _Group()  # a close without orders of ours (external, resync)
        g.closed = True
        closes.append((g, row))
    trades: list[_Trade] = []
    for g, row in closes:
        known = [fees_by_cloid[c] for c in g.cloids if c in fees_by_cloid]
        fees = sum(known, _ZERO) if known else Decimal(row[4])
        ntl = sum((ntl_by_cloid[c] if c in ntl_by_cloid else post_ntl.get(c, _ZERO) for c in g.cloids), _ZERO)
        a = assumed.get(entry_of.get(id(g), ""))
        trades.append(_Trade(coin=row[1], exit_reason=row[2] or "", pnl=Decimal(row[3]), fees=fees,
                             fees_from_fills=bool(known), hold_ms=int(row[5] or 0), closed_ms=int(row[6]),
                             notional=ntl, assumed_fee_bps=None if a is None else a[0],
                             fee_source="" if a is None else a[1]))
    return trades


ClosedTrade = _Trade


def closed_trades(conn: sqlite3.Connection, since_ms: int | None = None) -> list[ClosedTrade]:
    """Every close since ``since_ms`` with its fees attributed from userFills, in journal order: the trades
    the report's figures are made of (the HTML report's equity curve, the optimiser's objective)."""
    since = since_ms or 0
    return [t for t in _trades(conn) if t.closed_ms >= since]


def _summary(trades: list[_Trade]) -> dict[str, Any]:
    pnl = sum((t.pnl for t in trades), _ZERO)
    fees = sum((t.fees for t in trades), _ZERO)
    wins = sum(1 for t in trades if t.pnl - t.fees > 0)
    n = len(trades)
    # Paid against assumed, over the trades that have both (fees from fills and an assumption).
    both = [t for t in trades if t.fee_assumed_usd is not None and t.fee_paid_bps is not None]
    paid = sum((t.fees for t in both), _ZERO)
    assumed = sum((t.fee_assumed_usd or _ZERO for t in both), _ZERO)
    ntl = sum((t.notional for t in both), _ZERO)
    return {
        "trades": n,
        "wins": wins,
        "losses": n - wins,
        "win_rate": round(wins / n, 4) if n else None,
        "pnl_usd": float(pnl),
        "fees_usd": float(fees),
        "net_pnl_usd": float(pnl - fees),
        "fees_from_fills": sum(1 for t in trades if t.fees_from_fills),
        "avg_hold_ms": round(sum(t.hold_ms for t in trades) / n) if n else None,
        "fee_compared_trades": len(both),
        "fee_paid_usd": float(paid),
        "fee_assumed_usd": float(assumed),
        # per leg, bps of the fills' notional (both legs): what was charged vs what the threshold assumed
        "fee_paid_bps": round(float(paid / ntl * 10_000), 4) if ntl > 0 else None,
        "fee_assumed_bps": round(float(assumed / ntl * 10_000), 4) if ntl > 0 else None,
    }


def _trade_row(t: _Trade) -> dict[str, Any]:
    assumed = t.fee_assumed_usd
    paid_bps = t.fee_paid_bps
    return {"coin": t.coin, "closed_ms": t.closed_ms, "exit_reason": t.exit_reason, "pnl_usd": float(t.pnl),
            "fees_usd": float(t.fees), "fees_from_fills": t.fees_from_fills, "notional_usd": float(t.notional),
            "fee_paid_bps": None if paid_bps is None else round(paid_bps, 4),
            "fee_assumed_bps": t.assumed_fee_bps, "fee_assumed_usd": None if assumed is None else float(assumed),
            "fee_source": t.fee_source}


def _dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    return {"n": len(values), "p50": round(percentile_round(values, 0.5), 1),
            "p90": round(percentile_round(values, 0.9), 1), "p99": round(percentile_round(values, 0.99), 1),
            "max": round(max(values), 1)}


def _latencies(conn: sqlite3.Connection, since_ms: int) -> dict[str, Any]:
    """Microseconds, from the stamps an ``OrderSubmitted`` carries (0 = unknown, skipped)."""
    t2t: dict[str, list[float]] = {"entry": [], "exit": []}
    decision: list[float] = []
    transit: list[float] = []
    added: list[float] = []
    for kind, origin, created, received, sent in conn.execute(
            "SELECT kind, origin_recv_ns, intent_created_ns, intent_recv_ns, sent_ns FROM orders WHERE ts_ms >= ?",
            (since_ms,)):
        if origin > 0 and sent >= origin:
            t2t["entry" if kind == "entry" else "exit"].append((sent - origin) / 1000)
        if origin > 0 and created >= origin:
            decision.append((created - origin) / 1000)
        if created > 0 and received >= created:
            transit.append((received - created) / 1000)
        if received > 0 and sent >= received:
            added.append((sent - received) / 1000)
    return {
        "tick_to_trade_entry": _dist(t2t["entry"]),
        "tick_to_trade_exit": _dist(t2t["exit"]),
        "decision": _dist(decision),  # frame received at the feed -> intent built
        "intent_transit": _dist(transit),  # intent built -> received by the executor
        "executor_added": _dist(added),  # intent received -> signed frame written
    }


def _scalar(conn: sqlite3.Connection, sql: str, *args: Any) -> int:
    return int(conn.execute(sql, args).fetchone()[0] or 0)


def _counts(conn: sqlite3.Connection, since_ms: int) -> dict[str, Any]:
    q = conn.execute
    orders_by_kind = dict(q("SELECT kind, COUNT(*) FROM orders WHERE ts_ms >= ? GROUP BY kind", (since_ms,)))
    status = dict(q("SELECT status, COUNT(*) FROM order_status WHERE ts_ms >= ? GROUP BY status", (since_ms,)))
    rejects = list(q("SELECT reason, benign FROM order_events WHERE event = 'rejected' AND ts_ms >= ?",
                     (since_ms,)))
    by_reason: dict[str, int] = defaultdict(int)
    for reason, _ in rejects:
        by_reason[str(reason)[:80]] += 1
    return {
        "signals": _scalar(conn, "SELECT COUNT(*) FROM signals WHERE ts_ms >= ?", since_ms),
        "signal_followups": _scalar(conn, "SELECT COUNT(*) FROM signal_followups WHERE ts_ms >= ?", since_ms),
        # An intent the executor acted on: an order (OrderSubmitted) or a refusal keyed by the intent.
        "intents": _scalar(conn, "SELECT COUNT(*) FROM (SELECT intent_id FROM orders WHERE ts_ms >= ? UNION "
                                 "SELECT intent_id FROM order_events WHERE event = 'rejected' AND cloid IS NULL "
                                 "AND intent_id IS NOT NULL AND ts_ms >= ?)", since_ms, since_ms),
        "orders": sum(orders_by_kind.values()),
        "orders_by_kind": orders_by_kind,
        "orders_by_status": status,
        "rejects": len(rejects),
        "rejects_benign": sum(1 for _, b in rejects if b),
        "rejects_by_reason": dict(sorted(by_reason.items(), key=lambda kv: -kv[1])[:10]),
        "fills": _scalar(conn, "SELECT COUNT(*) FROM fills WHERE ts_ms >= ?", since_ms),
        "user_fills": _scalar(conn, "SELECT COUNT(*) FROM user_fills WHERE is_snapshot = 0 AND ts_ms >= ?",
                              since_ms),
        "feed_connections": _scalar(conn, "SELECT COUNT(DISTINCT conn_id) FROM feed_states WHERE ts_ms >= ?",
                                    since_ms),
    }


def _hardstop(conn: sqlite3.Connection, since_ms: int) -> dict[str, Any]:
    events = [{"epoch": e, "latched": bool(latched), "reason": reason, "since_ms": since, "ts_ms": ts}
              for e, latched, reason, since, ts in conn.execute(
                  "SELECT epoch, latched, reason, since_ms, ts_ms FROM hardstop_states WHERE ts_ms >= ? AND epoch > 0 "
                  "ORDER BY epoch", (since_ms,))]
    flatten = [{"epoch": e, "attempts": a, "done": bool(d), "alert": bool(al), "positions": p, "open_orders": o}
               for e, a, d, al, p, o in conn.execute(
                   "SELECT epoch, MAX(attempts), MAX(done), MAX(alert), "
                   "(SELECT positions FROM hardstop_progress h2 WHERE h2.epoch = h.epoch ORDER BY rec_ns DESC "
                   "LIMIT 1), (SELECT open_orders FROM hardstop_progress h2 WHERE h2.epoch = h.epoch "
                   "ORDER BY rec_ns DESC LIMIT 1) "
                   "FROM hardstop_progress h WHERE ts_ms >= ? GROUP BY epoch ORDER BY epoch", (since_ms,))]
    return {"latches": sum(1 for e in events if e["latched"]), "events": events, "flatten": flatten}


def build_report(conn: sqlite3.Connection, since_ms: int | None = None) -> dict[str, Any]:
    """Every figure of the report, as plain JSON-able values (amounts in USD as floats)."""
    since = since_ms if since_ms is not None else 0
    trades = [t for t in _trades(conn) if t.closed_ms >= since]
    by_market: dict[str, list[_Trade]] = defaultdict(list)
    by_reason: dict[str, list[_Trade]] = defaultdict(list)
    for t in trades:
        by_market[t.coin].append(t)
        by_reason[t.exit_reason].append(t)
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    first_last = conn.execute("SELECT MIN(ts_ms), MAX(ts_ms) FROM orders WHERE ts_ms >= ?", (since,)).fetchone()
    return {
        "schema_version": int(version[0]) if version else None,
        "since_ms": since_ms,
        "first_order_ms": first_last[0],
        "last_order_ms": first_last[1],
        "totals": _summary(trades),
        "by_market": {k: _summary(v) for k, v in sorted(by_market.items())},
        "by_exit_reason": {k: _summary(v) for k, v in sorted(by_reason.items())},
        "trades": [_trade_row(t) for t in trades],
        "counts": _counts(conn, since),
        "latency_us": _latencies(conn, since),
        "hard_stop": _hardstop(conn, since),
    }


def _fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def _line(name: str, s: dict[str, Any]) -> str:
    win = "-" if s["win_rate"] is None else f"{s['win_rate'] * 100:.0f} %"
    return (f"  {name:<20} trades={s['trades']:<4} win {win:>5}  PnL {s['pnl_usd']:+.4f}  fees {s['fees_usd']:.4f}"
            f"  net {s['net_pnl_usd']:+.4f} USD")


_RECENT_TRADES = 10


def _fee_line(name: str, s: dict[str, Any]) -> str:
    if not s["fee_compared_trades"]:
        return f"{name}: no trade with both recorded fills and an assumed fee"
    return (f"{name}: paid {s['fee_paid_usd']:.4f} USD ({s['fee_paid_bps']:.3f} bps a leg), assumed "
            f"{s['fee_assumed_usd']:.4f} USD ({s['fee_assumed_bps']:.3f} bps a leg) over "
            f"{s['fee_compared_trades']} trades")


def format_report(rep: dict[str, Any], path: str = "") -> str:
    """The report as text for a terminal."""
    t = rep["totals"]
    c = rep["counts"]
    win = "-" if t["win_rate"] is None else f"{t['win_rate'] * 100:.1f} %"
    out = [f"hip3 session report{' from ' + path if path else ''}"
           + (f" since {_fmt_ms(rep['since_ms'])}" if rep["since_ms"] is not None else ""),
           f"orders from {_fmt_ms(rep['first_order_ms'])} to {_fmt_ms(rep['last_order_ms'])}",
           f"trades {t['trades']}  wins {t['wins']}  losses {t['losses']}  win rate {win} (net of fees)",
           f"realised PnL {t['pnl_usd']:+.4f} USD, fees {t['fees_usd']:.4f} USD, net {t['net_pnl_usd']:+.4f} USD "
           f"(fees from fills for {t['fees_from_fills']} of {t['trades']} trades)",
           "by market:"]
    out.extend(_line(k, v) for k, v in rep["by_market"].items())
    out.append("by exit reason:")
    out.extend(_line(k, v) for k, v in rep["by_exit_reason"].items())
    out.append(_fee_line("fees paid vs assumed", t))
    out.extend(_fee_line(f"  {k}", v) for k, v in rep["by_market"].items() if v["fee_compared_trades"])
    recent = [tr for tr in rep["trades"] if tr["fee_paid_bps"] is not None][-_RECENT_TRADES:]
    if recent:
        out.append(f"last {len(recent)} trades: per-leg fee paid / assumed (bps), source")
        out.extend(f"  {_fmt_ms(tr['closed_ms'])} {tr['coin']:<14} {tr['fee_paid_bps']:>8.3f} / "
                   + ("-" if tr["fee_assumed_bps"] is None else f"{tr['fee_assumed_bps']:.3f}")
                   + f"  {tr['fee_source'] or '-'}" for tr in recent)
    out.append(f"signals {c['signals']}  intents acted on {c['intents']}  orders {c['orders']} "
               f"({', '.join(f'{k}={v}' for k, v in sorted(c['orders_by_kind'].items())) or '-'})  "
               f"statuses: {', '.join(f'{k}={v}' for k, v in sorted(c['orders_by_status'].items())) or '-'}")
    out.append(f"rejects {c['rejects']} (benign {c['rejects_benign']})"
               + "".join(f"; {k}: {v}" for k, v in list(c["rejects_by_reason"].items())[:5]))
    out.append(f"fills {c['fills']} applied, {c['user_fills']} from the exchange stream; "
               f"feed connections {c['feed_connections']}")
    out.append("latency (µs)          n      p50      p90      p99      max")
    for k, d in rep["latency_us"].items():
        if d["n"]:
            out.append(f"  {k:<19} {d['n']:>4} {d['p50']:>8} {d['p90']:>8} {d['p99']:>8} {d['max']:>8}")
        else:
            out.append(f"  {k:<19} {0:>4}")
    hs = rep["hard_stop"]
    out.append(f"hard stop: {hs['latches']} latch(es)")
    for e in hs["events"]:
        out.append(f"  epoch {e['epoch']}: {'LATCHED' if e['latched'] else 'reset'} at {_fmt_ms(e['ts_ms'])}"
                   + (f": {e['reason']}" if e["reason"] else ""))
    for f in hs["flatten"]:
        out.append(f"  flatten epoch {f['epoch']}: attempts {f['attempts']}, "
                   f"{'done' if f['done'] else 'NOT done'}, left {f['positions']} positions / "
                   f"{f['open_orders']} open orders" + (" (ALERT)" if f["alert"] else ""))
    return "\n".join(out)

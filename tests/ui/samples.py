"""Messages and status documents shaped like a running paper session's, for the UI tests."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from hip3 import messages as m


def submitted(cloid: str, coin: str, is_buy: bool, edge_bps: float, kind: str = "entry") -> m.OrderSubmitted:
    return m.OrderSubmitted(cloid=cloid, intent_id="i-" + cloid, coin=coin, asset=110001, is_buy=is_buy, px=D("1"),
                            sz=D("1"), reduce_only=kind != "entry", tif="Ioc", kind=kind, reason="", nonce=1,
                            post_id=1, origin_recv_ns=1, sent_ns=2, edge_bps=edge_bps)


def filled(cloid: str, coin: str, is_buy: bool, sz: str, px: str, reduce_only: bool = False) -> m.OrderFilled:
    return m.OrderFilled(cloid=cloid, oid=1, coin=coin, is_buy=is_buy, total_sz=D(sz), avg_px=D(px),
                         reduce_only=reduce_only, recv_ns=1)


def closed(coin: str, is_long: bool, size: str, entry: str, exit_px: str, pnl: str, reason: str) -> m.PositionClosed:
    return m.PositionClosed(coin=coin, is_long=is_long, size=D(size), entry_px=D(entry), exit_px=D(exit_px),
                            pnl_usd=D(pnl), fees_usd=D("0.01"), hold_ms=2500, exit_reason=reason, closed_ms=1)


def position(coin: str, is_long: bool, size: str, entry: str) -> m.Position:
    return m.Position(coin=coin, asset=110001, is_long=is_long, size=D(size), entry_px=D(entry), opened_ms=1)


def snapshot(positions: tuple[m.Position, ...] = (), orders: tuple[m.OpenOrder, ...] = (),
             synced: bool = True) -> m.PositionSnapshot:
    return m.PositionSnapshot(version=1, synced=synced, positions=positions, open_orders=orders,
                              realized_pnl_usd=D("1.5"), fees_usd=D("0.2"))


def order(coin: str, oid: int, is_buy: bool, sz: str, px: str, reduce_only: bool = False) -> m.OpenOrder:
    return m.OpenOrder(coin=coin, asset=110001, oid=oid, cloid=None, is_buy=is_buy, limit_px=D(px), sz=D(sz),
                       reduce_only=reduce_only)


def line(coin: str, mid: float, oracle: float, mark: float, gate: str = "pass") -> m.MarketLine:
    return m.MarketLine(coin=coin, mid_px=mid, oracle_px=oracle, mark_px=mark,
                        dislocation_bps=round((mid - oracle) / oracle * 1e4, 2), edge_bps=-1.0, gate=gate,
                        bbo_age_ms=20, ctx_age_ms=300)


ACTORS = ("feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder")


def status(latched: bool = False, **extra: Any) -> dict[str, Any]:
    """A ``status`` document as the supervisor builds it."""
    actors = [{"name": n, "pid": 100 + i, "state": "running", "restarts": 1 if n == "feed" else 0,
               "heartbeat_age_ms": 40, "ready": True, "ready_detail": "ok", "stats": {}}
              for i, n in enumerate(ACTORS)]
    actors[2]["stats"] = {"orders_sent": 17, "stage_sign_p50_us": 66, "request_budget_left": 9400,
                          "collateral_usd_xyz": 1000, "posts": 17}
    actors[1]["stats"] = {"resyncs": 2, "positions_closed": 8}
    actors[0]["stats"] = {"bbo": 396, "clock_skew_ms": 12}
    doc: dict[str, Any] = {
        "run_dir": "/tmp/run", "running": True, "mode": "paper", "uptime_s": 61.0,
        "hard_stop": {"latched": latched, "reason": "operator: test" if latched else None, "epoch": 1 if latched else 0,
                      "since_ms": None, "flatten": {"epoch": 1, "positions": 1, "open_orders": 0, "attempts": 2,
                                                    "done": False, "alert": False} if latched else None},
        "actors": actors, "seq_gaps": 0, "alerts": [{"level": "critical", "actor": "executor", "text": "boom"}],
        "trading": {"entries": 9, "exits": 8, "positions": [{"coin": "xyz:GOLD", "side": "long", "size": 0.5,
                                                             "entry_px": 2000.0}],
                    "open_orders": 0, "realized_pnl_usd": 2.5844, "fees_usd": 0.72, "trades": 8, "win_rate": 0.875,
                    "exits_by_reason": {"mark_regression": 6, "oracle_catchup": 2},
                    "tick_to_trade_us": {"entry": {"p50": 1261.6, "p99": 1540.2, "n": 9},
                                         "exit": {"p50": 1445.6, "p99": 2368.8, "n": 8}},
                    "unrealized_pnl_usd": 0.75},
        "markets": [{"coin": "xyz:GOLD", "mid_px": 2001.5, "oracle_px": 2000.0, "mark_px": 2001.5,
                     "dislocation_bps": 7.5, "edge_bps": -1.0, "gate": "pass", "bbo_age_ms": 20, "ctx_age_ms": 300,
                     "position": 0.5, "entry_px": 2000.0, "unrealized_pnl_usd": 0.75},
                    {"coin": "xyz:SILVER", "mid_px": 50.1, "oracle_px": 50.0, "mark_px": 50.1,
                     "dislocation_bps": 20.0, "edge_bps": 3.0, "gate": "mark_mid_divergence", "bbo_age_ms": 20,
                     "ctx_age_ms": 300, "position": None, "entry_px": None, "unrealized_pnl_usd": None}],
        "markets_age_ms": 400, "markets_stale": False,
        "recent_trades": [{"kind": "exit", "time_ms": 1_700_000_000_000, "coin": "xyz:TSLA", "side": "sell",
                           "position": "long", "size": 0.117, "px": 425.51, "entry_px": 424.0, "pnl_usd": 0.1767,
                           "fees_usd": 0.01, "reason": "mark_regression", "hold_ms": 2500},
                          {"kind": "entry", "time_ms": 1_699_999_998_000, "coin": "xyz:TSLA", "side": "buy",
                           "size": 0.117, "px": 424.0, "edge_bps": 43.04}],
    }
    doc.update(extra)
    return doc

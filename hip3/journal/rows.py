"""The rows each bus message becomes in the trade journal (``rows_for``): pure, no database. Money and
sizes stay exact decimal strings; free text is scrubbed of anything key-shaped; content that cannot be
journaled raises ``MalformedMessage``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from hip3.messages import (
    FeedState,
    Fill,
    HardStopProgress,
    HardStopState,
    MarketTerms,
    Msg,
    OrderAcked,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdate,
    PositionClosed,
    PositionSnapshot,
    Signal,
    SignalFollowup,
    UserFill,
)
from hip3.runtime.logs import redact

Row = tuple[str, tuple[Any, ...]]  # (SQL, parameters)


class MalformedMessage(ValueError):
    """A decoded message whose content cannot be journaled (empty key, non-finite amount)."""


def _dec(x: Decimal, field: str) -> str:
    if not x.is_finite():
        raise MalformedMessage(f"{field} is not finite: {x}")
    return str(x)


def _b(x: bool) -> int:
    return 1 if x else 0


def _need(value: str, field: str) -> str:
    if not value:
        raise MalformedMessage(f"{field} is empty")
    return value


def _text(value: str | None) -> str | None:
    return None if value is None else redact(value)


def rows_for(msg: Msg, rec_ns: int) -> list[Row] | None:
    """The rows one message becomes, or ``None`` if the journal does not keep this kind of message.

    Raises ``MalformedMessage`` for content that cannot be journaled. Pure: no database involved.
    """
    rec_ms = rec_ns // 1_000_000
    ins = "INSERT OR IGNORE INTO "
    if isinstance(msg, OrderSubmitted):
        cloid = _need(msg.cloid, "cloid")
        fee = [] if msg.kind != "entry" else [_fee_row(f"o:{cloid}", "order", msg.coin, msg.assumed_fee_bps,
                                                       msg.fee_source, rec_ms, rec_ns)]
        return [
            *fee,
            (ins + "orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
             (cloid, msg.intent_id, msg.coin, msg.asset, _b(msg.is_buy), _dec(msg.px, "px"), _dec(msg.sz, "sz"),
              _b(msg.reduce_only), msg.tif, msg.kind, _text(msg.reason), msg.nonce, msg.post_id, msg.edge_bps,
              msg.origin_recv_ns, msg.intent_created_ns, msg.intent_recv_ns, msg.sent_ns, rec_ms, rec_ns)),
            _event(cloid, "submitted", cloid, msg.intent_id, msg.coin, None, msg.reduce_only, _text(msg.reason),
                   None, _dec(msg.sz, "sz"), _dec(msg.px, "px"), msg.sent_ns, rec_ms, rec_ns),
        ]
    if isinstance(msg, OrderAcked):
        cloid = _need(msg.cloid, "cloid")
        return [_event(cloid, "acked", cloid, None, msg.coin, msg.oid, None, None, None, None, None, msg.recv_ns,
                       rec_ms, rec_ns)]
    if isinstance(msg, OrderFilled):
        cloid = _need(msg.cloid, "cloid")
        return [_event(cloid, "filled", cloid, None, msg.coin, msg.oid, msg.reduce_only, None, None,
                       _dec(msg.total_sz, "total_sz"), _dec(msg.avg_px, "avg_px"), msg.recv_ns, rec_ms, rec_ns)]
    if isinstance(msg, OrderRejected):
        key = msg.cloid or (f"intent:{msg.intent_id}" if msg.intent_id else "")
        _need(key, "cloid and intent_id")
        return [_event(key, "rejected", msg.cloid or None, msg.intent_id or None, msg.coin, None, msg.reduce_only,
                       _text(msg.reason), msg.benign, None, None, msg.recv_ns, rec_ms, rec_ns)]
    if isinstance(msg, OrderCancelled):
        cloid = _need(msg.cloid, "cloid")
        return [_event(cloid, "cancelled", cloid, None, msg.coin, msg.oid, None, _text(msg.reason), None, None,
                       None, msg.recv_ns, rec_ms, rec_ns)]
    if isinstance(msg, OrderUpdate):
        key = msg.cloid or f"oid:{msg.oid}"
        return [_event(key, f"ws:{_need(msg.status, 'status')}", msg.cloid, None, msg.coin, msg.oid, None, None,
                       None, _dec(msg.sz, "sz"), _dec(msg.limit_px, "limit_px"), msg.recv_ns,
                       msg.status_ms or rec_ms, rec_ns)]
    if isinstance(msg, Fill):
        post_key = f"p:{msg.cloid}" if msg.cloid else f"p:oid:{msg.oid}"
        key = f"t:{msg.coin}:{msg.tid}" if msg.tid else post_key
        return [(ins + "fills VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (key, msg.coin, msg.cloid, msg.oid, msg.tid, _b(msg.is_buy), _dec(msg.px, "px"), _dec(msg.sz, "sz"),
                  _dec(msg.fee, "fee"), msg.source, msg.time_ms or rec_ms, msg.recv_ns, rec_ns))]
    if isinstance(msg, UserFill):
        return [(ins + "user_fills VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (_need(msg.coin, "coin"), msg.tid, msg.cloid, msg.oid, _b(msg.is_buy), _dec(msg.px, "px"),
                  _dec(msg.sz, "sz"), _dec(msg.fee, "fee"), _dec(msg.closed_pnl, "closed_pnl"), _b(msg.crossed),
                  _b(msg.is_snapshot), msg.time_ms or rec_ms, msg.recv_ns, rec_ns))]
    if isinstance(msg, PositionClosed):
        return [(ins + "closes VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (_need(msg.coin, "coin"), _b(msg.is_long), _dec(msg.size, "size"), _dec(msg.entry_px, "entry_px"),
                  _dec(msg.exit_px, "exit_px"), _dec(msg.pnl_usd, "pnl_usd"), _dec(msg.fees_usd, "fees_usd"),
                  msg.hold_ms, _text(msg.exit_reason), msg.closed_ms or rec_ms, rec_ns))]
    if isinstance(msg, Signal):
        return [(ins + "signals VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (_need(msg.signal_id, "signal_id"), msg.coin, _b(msg.is_buy), msg.raw_edge_bps, msg.net_edge_bps,
                  msg.threshold_bps, msg.oracle_px, msg.best_px, msg.book_sz, msg.suggested_sz, msg.confidence,
                  msg.recv_ns, msg.time_ms or rec_ms, rec_ns)),
                _fee_row(f"s:{msg.signal_id}", "signal", msg.coin, msg.taker_fee_bps, msg.fee_source,
                         msg.time_ms or rec_ms, rec_ns)]
    if isinstance(msg, SignalFollowup):
        return [(ins + "signal_followups (signal_id, offset_ms, coin, oracle_px, best_px, edge_bps, edge_change_bps, "
                 "ts_ms, rec_ns, exit_px) VALUES (?,?,?,?,?,?,?,?,?,?)",
                 (_need(msg.signal_id, "signal_id"), msg.offset_ms, msg.coin, msg.oracle_px, msg.best_px,
                  msg.edge_bps, msg.edge_change_bps, msg.time_ms or rec_ms, rec_ns, msg.exit_px or None))]
    if isinstance(msg, HardStopState):
        return [(ins + "hardstop_states VALUES (?,?,?,?,?,?)",
                 (msg.epoch, _b(msg.latched), _text(msg.reason), msg.since_ms, msg.since_ms or rec_ms, rec_ns))]
    if isinstance(msg, HardStopProgress):
        return [(ins + "hardstop_progress VALUES (?,?,?,?,?,?,?,?)",
                 (msg.epoch, msg.attempts, msg.positions, msg.open_orders, _b(msg.done), _b(msg.alert), rec_ms,
                  rec_ns))]
    if isinstance(msg, FeedState):
        return [(ins + "feed_states VALUES (?,?,?,?,?,?)",
                 (msg.conn_id, _need(msg.state, "state"), _b(msg.market_data_ready), _b(msg.user_ready), rec_ms,
                  rec_ns))]
    if isinstance(msg, PositionSnapshot):
        summary = {
            "version": msg.version, "synced": msg.synced, "src": msg.src,
            "realized_pnl_usd": _dec(msg.realized_pnl_usd, "realized_pnl_usd"),
            "fees_usd": _dec(msg.fees_usd, "fees_usd"),
            "positions": [{"coin": p.coin, "is_long": p.is_long, "size": str(p.size), "entry_px": str(p.entry_px),
                           "opened_ms": p.opened_ms, "entry_cloid": p.entry_cloid} for p in msg.positions],
            "open_orders": len(msg.open_orders),
        }
        return [("INSERT OR REPLACE INTO latest VALUES ('positions', ?, ?)",
                 (msgspec.json.encode(summary).decode(), rec_ns))]
    if isinstance(msg, MarketTerms):
        return [("INSERT OR REPLACE INTO latest VALUES ('terms', ?, ?)",
                 (msgspec.json.encode(msg).decode(), rec_ns))]
    return None


def _fee_row(key: str, kind: str, coin: str, fee_bps: float, source: str, ts_ms: int, rec_ns: int) -> Row:
    if fee_bps != fee_bps or fee_bps in (float("inf"), float("-inf")):
        raise MalformedMessage(f"assumed fee is not finite: {fee_bps}")
    return ("INSERT OR IGNORE INTO fee_assumptions VALUES (?,?,?,?,?,?,?)",
            (key, kind, _need(coin, "coin"), fee_bps, source, ts_ms, rec_ns))


def _event(key: str, event: str, cloid: str | None, intent_id: str | None, coin: str, oid: int | None,
           reduce_only: bool | None, reason: str | None, benign: bool | None, sz: str | None, px: str | None,
           recv_ns: int, ts_ms: int, rec_ns: int) -> Row:
    return ("INSERT OR IGNORE INTO order_events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (key, event, cloid, intent_id, coin, oid, None if reduce_only is None else _b(reduce_only), reason,
             None if benign is None else _b(benign), sz, px, recv_ns, ts_ms, rec_ns))

"""Builders shared by the execution tests (no sockets, injected clocks)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import msgspec

from hip3.execution.gates import MarketSpec
from hip3.execution.orders import post_answer
from hip3.hyperliquid.frame_decoder import FrameDecoder
from hip3.hyperliquid.frames import PostFrame, PostResponse
from hip3.hyperliquid.responses import ExchangeResponse
from hip3.messages import EntryIntent, FlattenIntent, OpenOrder, Position, PositionClosed, PositionSnapshot

D = Decimal
MS = 1_000_000  # ns per ms
GOLD, SILVER, TSLA = "xyz:GOLD", "xyz:SILVER", "xyz:TSLA"
SPECS = {
    GOLD: MarketSpec(coin=GOLD, asset=110000, sz_decimals=2),
    SILVER: MarketSpec(coin=SILVER, asset=110026, sz_decimals=2),
    TSLA: MarketSpec(coin=TSLA, asset=110003, sz_decimals=2),
}
_ids = itertools.count(1)


def entry(
    coin: str = GOLD, *, sz: str = "2", px: str = "10", is_buy: bool = True, valid_until_ns: int = 10**15,
    edge_bps: float = 20.0, intent_id: str | None = None, reduce_only: bool = False, asset: int | None = None,
) -> EntryIntent:
    return EntryIntent(
        intent_id=intent_id or f"e{next(_ids)}", coin=coin, asset=SPECS[coin].asset if asset is None else asset,
        is_buy=is_buy, px=D(px), sz=D(sz), reduce_only=reduce_only, valid_until_ns=valid_until_ns,
        origin_recv_ns=1, created_ns=1, edge_bps=edge_bps, signal_id="s",
    )


def flatten(coin: str = GOLD, *, sz: str = "2", px: str = "9.9", is_buy: bool = False, reason: str = "time_stop",
            intent_id: str | None = None, valid_until_ns: int = 10**15) -> FlattenIntent:
    return FlattenIntent(
        intent_id=intent_id or f"f{next(_ids)}", coin=coin, asset=SPECS[coin].asset, is_buy=is_buy, px=D(px),
        sz=D(sz), reduce_only=True, valid_until_ns=valid_until_ns, origin_recv_ns=1, created_ns=1, reason=reason,
    )


def pos(coin: str = GOLD, size: str = "2", *, is_long: bool = True, entry_px: str = "10") -> Position:
    return Position(coin=coin, asset=SPECS[coin].asset, is_long=is_long, size=D(size), entry_px=D(entry_px),
                    opened_ms=0)


def oo(coin: str = GOLD, oid: int = 77) -> OpenOrder:
    return OpenOrder(coin=coin, asset=SPECS[coin].asset, oid=oid, cloid=None, is_buy=True, limit_px=D("9"),
                     sz=D("1"), reduce_only=False)


def snap(*positions: Position, open_orders: tuple[OpenOrder, ...] = (), pending_flatten: tuple[str, ...] = (),
         synced: bool = True, version: int = 1) -> PositionSnapshot:
    return PositionSnapshot(version=version, synced=synced, positions=tuple(positions), open_orders=open_orders,
                            realized_pnl_usd=D(0), fees_usd=D(0), pending_flatten=pending_flatten)


def closed(coin: str = GOLD, pnl: str = "-1", fees: str = "0", reason: str = "time_stop") -> PositionClosed:
    return PositionClosed(coin=coin, is_long=True, size=D(1), entry_px=D(10), exit_px=D(9), pnl_usd=D(pnl),
                          fees_usd=D(fees), hold_ms=1000, exit_reason=reason, closed_ms=0)


def post_frame(response: object, post_id: int = 1) -> PostResponse:
    """A WS post answer (its ``data.response`` object, or a bare ``/exchange`` body, which is wrapped as an
    action's payload) through the WS client's own decoder: the typed answer the executor gets."""
    if not (isinstance(response, dict) and "payload" in response):
        response = {"type": "action", "payload": response}
    frame = FrameDecoder().decode(msgspec.json.encode({"channel": "post", "data": {"id": post_id,
                                                                                     "response": response}}))
    assert isinstance(frame, PostFrame), frame
    return frame.response


def answer(response: object) -> ExchangeResponse:
    """``post_frame``'s typed exchange answer, as the core receives it (``orders.post_answer``)."""
    ans = post_answer(post_frame(response))
    assert ans is not None, response
    return ans

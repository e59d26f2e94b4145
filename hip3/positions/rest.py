"""The exchange's REST answers as the position book's input: one sync's answers (``RestSnapshot``, handed
from the tracker's worker thread to its loop), ``clearinghouseState`` rows as ``ExchangePosition`` and
``openOrders`` rows as ``OpenOrder``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from hip3.hyperliquid.rest import ClearinghouseState
from hip3.hyperliquid.rest import OpenOrder as RestOpenOrder
from hip3.messages import OpenOrder
from hip3.positions.book import PositionBook
from hip3.positions.records import ExchangePosition

__all__ = ["RestSnapshot", "net_sizes", "open_orders_from_rest", "positions_from_rest"]


class RestSnapshot(msgspec.Struct):
    """One REST sync's answers (or its error), handed from the worker thread to the actor."""

    requested_ms: int
    dex_state: ClearinghouseState | None = None
    l1_state: ClearinghouseState | None = None
    open_orders: list[RestOpenOrder] | None = None
    error: str | None = None
    history_wanted: bool = False
    fills: list[dict[str, Any]] | None = None  # REST userFills (newest first), when history_wanted and it answered
    history_error: str | None = None

    @property
    def complete(self) -> bool:
        """Every answer the book needs came (the L1 state is for the balance only)."""
        return self.error is None and self.dex_state is not None and self.open_orders is not None


def positions_from_rest(state: ClearinghouseState) -> list[ExchangePosition]:
    """``assetPositions[].position`` rows → the book's input (signed size, entry price). A null entry price
    becomes 0, which the book refuses to use: that coin is left as it is for the round (never entry 0)."""
    return [
        ExchangePosition(coin=ap.position.coin, szi=ap.position.szi, entry_px=ap.position.entry_px or Decimal(0))
        for ap in state.asset_positions
    ]


def open_orders_from_rest(rows: list[RestOpenOrder], assets: dict[str, int]) -> list[OpenOrder]:
    """``openOrders`` rows → the book's ``OpenOrder`` (side "B" = buy)."""
    return [
        OpenOrder(
            coin=r.coin,
            asset=assets.get(r.coin, 0),
            oid=r.oid,
            cloid=r.cloid,
            is_buy=r.side == "B",
            limit_px=r.limit_px,
            sz=r.sz,
            reduce_only=bool(r.reduce_only),
        )
        for r in rows
    ]


def net_sizes(book: PositionBook) -> dict[str, Decimal]:
    """Signed size per coin (a resync that changes one corrected the book: a fill reached no stream)."""
    return {p.coin: p.size if p.is_long else -p.size for p in book.snapshot().positions}

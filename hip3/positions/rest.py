"""The exchange's REST answers as the position book's input: one sync's answers (``fetch_sync`` in the
tracker's worker thread, ``RestSnapshot`` handed to its loop), ``clearinghouseState`` rows as
``ExchangePosition`` and ``openOrders`` rows as ``OpenOrder``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

import msgspec

from hip3.hyperliquid.rest import ClearinghouseState, RestError
from hip3.hyperliquid.rest import OpenOrder as RestOpenOrder
from hip3.messages import OpenOrder
from hip3.positions.book import PositionBook
from hip3.positions.planner import SyncRequest
from hip3.positions.records import ExchangePosition

__all__ = ["RestReader", "RestSnapshot", "fetch_sync", "net_sizes", "open_orders_from_rest", "positions_from_rest"]


class RestReader(Protocol):
    """The reads a sync makes (``hip3.hyperliquid.rest.RestClient``)."""

    def clearinghouse_state(self, user: str, dex: str) -> ClearinghouseState: ...

    def open_orders(self, user: str, dex: str) -> list[RestOpenOrder]: ...

    def user_fills(self, user: str) -> list[dict[str, Any]]: ...


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


def fetch_sync(rest: RestReader, account: str, dex: str, request: SyncRequest) -> RestSnapshot:
    """One sync's reads (blocking: the tracker's worker thread). Never raises: an error is in the answer."""
    snap = RestSnapshot(requested_ms=request.requested_ms, history_wanted=request.history_wanted)
    try:
        if request.history_wanted:  # before the positions: a fill in between breaks the chain, never hides
            try:
                snap.fills = rest.user_fills(account)
            except Exception as e:  # best effort: the positions matter, the history is asked again
                snap.history_error = str(e) or repr(e)
        snap.dex_state = rest.clearinghouse_state(account, dex)
        snap.open_orders = rest.open_orders(account, dex)
        try:
            snap.l1_state = rest.clearinghouse_state(account, "")
        except RestError:
            snap.l1_state = None  # balance only: the positions are what matters
    except RestError as e:
        snap.error = str(e)
    except Exception as e:  # never let the worker die silently
        snap.error = f"unexpected: {e!r}"
    return snap

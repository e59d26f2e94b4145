"""The shapes of every WebSocket frame hip3 consumes (the exchange's WebSocket channels), and the
conversion of account frames to bus messages. ``hip3.hyperliquid.frame_decoder`` decodes them.

The shapes follow the exchange, where parsers of the same feed went wrong before:

* ``orderUpdates.data`` is an ARRAY of ``WsOrder`` (a single object is also accepted); one bad element
  is counted and skipped, never fatal to the others;
* ``userFills.data`` is ``{isSnapshot?, user, fills[]}``; live messages carry no ``isSnapshot``, and a
  missing one means False;
* a ``subscriptionResponse`` is an ack, matched on ``data.method`` and ``data.subscription.type`` +
  coin/user (the echo may add fields such as ``nSigFigs``), never forwarded as data;
* ``bbo.data.bbo`` is a 2-element array ``[bid, ask]`` with ``null`` for an empty side (not ``{bid, ask}``);
* ``activeAssetCtx`` values are decimal strings; ``midPx``/``premium``/``impactPxs`` may be null.

Market data decode into floats; account data (orders, fills) keeps exact ``Decimal``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from hip3.messages import OrderUpdate, UserFill

from .responses import ExchangeResponse

__all__ = [
    "ActiveAssetCtxFrame",
    "BboFrame",
    "ChannelFrame",
    "ErrorFrame",
    "Frame",
    "L2BookFrame",
    "OrderUpdatesFrame",
    "PongFrame",
    "PostFrame",
    "PostResponse",
    "SubscriptionResponseFrame",
    "UserFillsFrame",
    "WsActiveAssetCtx",
    "WsAssetCtxFields",
    "WsBasicOrder",
    "WsBbo",
    "WsBook",
    "WsFill",
    "WsLevel",
    "WsOrder",
    "WsSubscription",
    "WsUserFills",
    "order_update_msgs",
    "user_fill_msgs",
]


def _finite_dec(*values: Decimal | None) -> None:
    for v in values:
        if v is not None and not v.is_finite():
            raise ValueError(f"non-finite decimal {v}")


# ---------------------------------------------------------------- market data (floats)


class WsLevel(msgspec.Struct, frozen=True):
    px: float
    sz: float
    n: int = 0


class WsBbo(msgspec.Struct, frozen=True):
    coin: str
    time: int
    bbo: tuple[WsLevel | None, WsLevel | None]


class WsBook(msgspec.Struct, frozen=True):
    coin: str
    time: int
    levels: tuple[list[WsLevel], list[WsLevel]]


class WsAssetCtxFields(msgspec.Struct, frozen=True, rename="camel"):
    oracle_px: float
    mark_px: float
    funding: float | None = None
    open_interest: float | None = None
    mid_px: float | None = None
    premium: float | None = None
    impact_pxs: list[float] | None = None
    prev_day_px: float | None = None
    day_ntl_vlm: float | None = None
    day_base_vlm: float | None = None


class WsActiveAssetCtx(msgspec.Struct, frozen=True):
    coin: str
    ctx: WsAssetCtxFields


# ---------------------------------------------------------------- account data (exact)


class WsBasicOrder(msgspec.Struct, frozen=True, rename="camel"):
    coin: str
    side: str
    limit_px: Decimal
    sz: Decimal  # remaining size
    oid: int
    timestamp: int
    orig_sz: Decimal
    cloid: str | None = None

    def __post_init__(self) -> None:
        _finite_dec(self.limit_px, self.sz, self.orig_sz)
        if self.side not in ("A", "B"):
            raise ValueError(f"side must be 'A' or 'B', got {self.side!r}")


class WsOrder(msgspec.Struct, frozen=True, rename="camel"):
    order: WsBasicOrder
    status: str
    status_timestamp: int


class WsFill(msgspec.Struct, frozen=True, rename="camel"):
    coin: str
    px: Decimal
    sz: Decimal
    side: str
    time: int
    oid: int
    tid: int
    fee: Decimal
    closed_pnl: Decimal = Decimal(0)
    crossed: bool = False
    hash: str = ""
    start_position: Decimal | None = None
    dir: str | None = None
    cloid: str | None = None
    fee_token: str | None = None
    builder_fee: Decimal | None = None
    twap_id: int | None = None
    liquidation: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _finite_dec(self.px, self.sz, self.fee, self.closed_pnl, self.start_position, self.builder_fee)
        if self.side not in ("A", "B"):
            raise ValueError(f"side must be 'A' or 'B', got {self.side!r}")


class WsUserFills(msgspec.Struct, frozen=True, rename="camel"):
    user: str
    fills: list[WsFill]
    is_snapshot: bool = False  # absent on live messages, which are never a snapshot


class WsSubscription(msgspec.Struct, frozen=True):
    type: str
    coin: str | None = None
    user: str | None = None
    dex: str | None = None


class _SubAckData(msgspec.Struct, frozen=True):
    method: str
    subscription: WsSubscription


# ---------------------------------------------------------------- frames (tag = "channel")


class ChannelFrame(msgspec.Struct, frozen=True, tag_field="channel"):
    """A frame told apart by its ``channel`` field."""


class BboFrame(ChannelFrame, frozen=True, tag="bbo"):
    data: WsBbo


class ActiveAssetCtxFrame(ChannelFrame, frozen=True, tag="activeAssetCtx"):
    data: WsActiveAssetCtx


class L2BookFrame(ChannelFrame, frozen=True, tag="l2Book"):
    data: WsBook


class UserFillsFrame(ChannelFrame, frozen=True, tag="userFills"):
    data: WsUserFills


class SubscriptionResponseFrame(ChannelFrame, frozen=True, tag="subscriptionResponse"):
    data: _SubAckData

    @property
    def method(self) -> str:
        return self.data.method

    @property
    def subscription(self) -> WsSubscription:
        return self.data.subscription


class PongFrame(ChannelFrame, frozen=True, tag="pong"):
    pass


class ErrorFrame(ChannelFrame, frozen=True, tag="error"):
    data: str


class OrderUpdatesFrame(msgspec.Struct, frozen=True):
    """The decoded elements of one orderUpdates frame; ``bad`` elements were skipped (and counted)."""

    orders: list[WsOrder]
    bad: int = 0


class PostResponse(msgspec.Struct, frozen=True):
    """Answer to a WS post. ``type``: "action" (``exchange`` set), "info" (``info`` = the REST body, any
    JSON), "error" (``error`` = the string payload mirroring the HTTP error), or, set by the client,
    "timeout" / "disconnected" / "unknown" (an action answer it could not parse, or an answer type the
    protocol does not have; counted as ``bad:post``): outcome unknown."""

    id: int
    type: str
    exchange: ExchangeResponse | None = None
    info: Any = None
    error: str | None = None


class PostFrame(msgspec.Struct, frozen=True):
    response: PostResponse


Frame = (
    BboFrame
    | ActiveAssetCtxFrame
    | L2BookFrame
    | OrderUpdatesFrame
    | UserFillsFrame
    | SubscriptionResponseFrame
    | PongFrame
    | ErrorFrame
    | PostFrame
)


def order_update_msgs(frame: OrderUpdatesFrame, recv_ns: int) -> list[OrderUpdate]:
    """One ``hip3.messages.OrderUpdate`` per element of an orderUpdates frame."""
    return [
        OrderUpdate(
            coin=update.order.coin,
            oid=update.order.oid,
            cloid=update.order.cloid,
            is_buy=update.order.side == "B",
            limit_px=update.order.limit_px,
            sz=update.order.sz,
            orig_sz=update.order.orig_sz,
            status=update.status,
            status_ms=update.status_timestamp,
            recv_ns=recv_ns,
        )
        for update in frame.orders
    ]


def user_fill_msgs(frame: UserFillsFrame, recv_ns: int) -> list[UserFill]:
    """One ``hip3.messages.UserFill`` per fill; snapshot fills are flagged: they never move positions
    (replaying the snapshot at start-up once brought closed positions back)."""
    snap = frame.data.is_snapshot
    return [
        UserFill(
            coin=fill.coin,
            px=fill.px,
            sz=fill.sz,
            is_buy=fill.side == "B",
            time_ms=fill.time,
            oid=fill.oid,
            tid=fill.tid,
            cloid=fill.cloid,
            fee=fill.fee,
            closed_pnl=fill.closed_pnl,
            crossed=fill.crossed,
            is_snapshot=snap,
            recv_ns=recv_ns,
        )
        for fill in frame.data.fills
    ]

"""Messages from the exchange's streams, published by the feed: market data (latest wins per market)
and the account's order updates and fills (never dropped silently)."""

from __future__ import annotations

from decimal import Decimal

from hip3.messages.base import Msg

# --------------------------------------------------------------------------------------------------
# Market data (feed -> detector, exit_watcher, executor, recorder). Latest wins per market.
# --------------------------------------------------------------------------------------------------


class Bbo(Msg, frozen=True, tag="bbo"):
    """Best bid and offer of one market. A missing side has price and size 0.0."""

    coin: str
    bid_px: float
    bid_sz: float
    ask_px: float
    ask_sz: float
    exch_ms: int  # the exchange's `time` field (ms since epoch)
    recv_ns: int  # monotonic_ns when the feed received the frame


class AssetCtx(Msg, frozen=True, tag="ctx"):
    """activeAssetCtx of one market: oracle and mark. A missing optional value is 0.0."""

    coin: str
    oracle_px: float
    mark_px: float
    mid_px: float
    funding: float
    open_interest: float
    recv_ns: int


class FeedState(Msg, frozen=True, tag="feed"):
    """The feed's connection state (a state stream: published on change and periodically).

    ``conn_id`` increases on every (re)connect, so consumers can tell that a resync is needed.
    ``market_data_ready``: connected, every market acked and at least one bbo and one ctx since connect.
    ``user_ready``: orderUpdates and userFills acked for the account (trading modes only).
    """

    state: str  # "connecting" | "connected" | "disconnected"
    conn_id: int
    market_data_ready: bool
    user_ready: bool
    since_ns: int


class ExchangeClock(Msg, frozen=True, tag="xclk"):
    """The feed's estimate of the exchange's clock (``hip3.account.exchange_clock``): a state stream on ``md``.

    ``offset_mono_ms`` = exchange ms minus ``time.monotonic_ns() // 1e6`` (comparable across processes on
    one host): the executor signs with ``monotonic + offset``. ``skew_ms`` = exchange minus the feed
    host's wall clock when published (positive: the host is behind). ``samples``: exchange timestamps
    folded in so far; ``last_sample_age_ms``: since the newest one.
    """

    offset_mono_ms: int
    skew_ms: int
    samples: int
    last_sample_age_ms: int


# --------------------------------------------------------------------------------------------------
# Account events from the exchange's user streams (feed -> position_tracker, executor, recorder).
# Never dropped silently.
# --------------------------------------------------------------------------------------------------


class OrderUpdate(Msg, frozen=True, tag="oupd"):
    """One element of an orderUpdates frame. ``sz`` is the remaining size."""

    coin: str
    oid: int
    cloid: str | None
    is_buy: bool
    limit_px: Decimal
    sz: Decimal
    orig_sz: Decimal
    status: str
    status_ms: int
    recv_ns: int


class UserFill(Msg, frozen=True, tag="ufill"):
    """One fill from the userFills stream. Snapshot fills (``is_snapshot``) never change positions."""

    coin: str
    px: Decimal
    sz: Decimal
    is_buy: bool
    time_ms: int
    oid: int
    tid: int
    cloid: str | None
    fee: Decimal
    closed_pnl: Decimal
    crossed: bool
    is_snapshot: bool
    recv_ns: int

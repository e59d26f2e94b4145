"""The position tracker's state streams: positions and open orders, the dex's collateral, closes,
the markets' terms, and the exchange's request budget."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from hip3.messages.base import Msg

# --------------------------------------------------------------------------------------------------
# Positions (position_tracker -> exit_watcher, executor, detector, supervisor). A state stream.
# --------------------------------------------------------------------------------------------------


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """One open position. ``size`` > 0; ``is_long`` gives the side."""

    coin: str
    asset: int
    is_long: bool
    size: Decimal
    entry_px: Decimal
    opened_ms: int
    entry_edge_bps: float = 0.0
    entry_cloid: str | None = None
    # Whose it is (``hip3.positions.ownership``): "hip3" (hip3's own fills), "adopted" (opened outside hip3 on a
    # configured market, managed by hip3: ``manual_positions = "adopt"``), "manual" (opened outside hip3
    # on a configured market and left alone), "unconfigured" (a market hip3 does not trade).
    owner: str = "hip3"


class OpenOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One order resting at the exchange."""

    coin: str
    asset: int
    oid: int
    cloid: str | None
    is_buy: bool
    limit_px: Decimal
    sz: Decimal
    reduce_only: bool


class DexCollateral(msgspec.Struct, frozen=True, kw_only=True):
    """The account's collateral on the traded HIP-3 dex, from the tracker's last REST sync.

    Each HIP-3 dex margins separately: USDC on the validator perp dex ("") does not back an order on the
    builder dex until it is moved there (``sendAsset``) or the account's dex abstraction pulls it. From
    ``clearinghouseState`` with the dex: ``account_value`` (marginSummary.accountValue), ``withdrawable``
    (free collateral), ``margin_used`` (marginSummary.totalMarginUsed); ``perp_withdrawable`` is the
    validator perp dex's withdrawable (where a deposit lands; -1 when that read failed); ``time_ms`` the
    answer's exchange time (0 if absent). ``hip3.account.collateral`` decides whether entries may use it.
    """

    dex: str
    account_value: Decimal
    withdrawable: Decimal
    margin_used: Decimal
    perp_withdrawable: Decimal
    time_ms: int = 0


class PositionSnapshot(Msg, frozen=True, tag="pos"):
    """The whole book: published on every change and periodically, so late joiners catch up.

    ``synced`` is False until the first REST sync succeeded (and again while a resync after a
    reconnect is pending): entries wait for it. ``feed_conn_id`` is the feed connection
    (``FeedState.conn_id``) whose user streams the feed had reported acked (``user_ready``) when the
    tracker asked for its last completed REST sync (0: none): entries after a reconnect wait for a synced
    snapshot of the current connection, so no fill between the reconnect and the acks is missed.
    """

    version: int
    synced: bool
    positions: tuple[Position, ...]
    open_orders: tuple[OpenOrder, ...]
    realized_pnl_usd: Decimal
    fees_usd: Decimal
    pending_flatten: tuple[str, ...] = ()  # coins with a reduce-only order in flight
    feed_conn_id: int = 0
    # What hip3 does not manage (``hip3.positions.ownership``): ``positions`` and ``open_orders`` above hold only
    # what hip3's exits and hard stop act on; these are the account's other positions (owner "manual" or
    # "unconfigured") and orders, shown to the operator and never exited, flattened or cancelled by hip3.
    outside: tuple[Position, ...] = ()
    outside_orders: tuple[OpenOrder, ...] = ()
    # The dex's collateral as of the last REST sync (None: not read yet, or an older tracker).
    collateral: DexCollateral | None = None


class PositionClosed(Msg, frozen=True, tag="pclose"):
    """Exactly one per close, whichever path (post response or userFills) reported the closing fill."""

    coin: str
    is_long: bool
    size: Decimal
    entry_px: Decimal
    exit_px: Decimal
    pnl_usd: Decimal
    fees_usd: Decimal
    hold_ms: int
    exit_reason: str
    closed_ms: int
    # The position's owner before it closed (``Position.owner``): only "hip3" closes feed hip3's loss
    # limits and entry throttles, and count as hip3's trades in the status.
    owner: str = "hip3"


# --------------------------------------------------------------------------------------------------
# Market terms (position_tracker -> detector, executor, recorder). A state stream on ``positions``.
# --------------------------------------------------------------------------------------------------


class MarketTerm(msgspec.Struct, frozen=True, kw_only=True):
    """One market's fees for this account and its open-interest cap, as the exchange reported them.

    ``fee_source``: "exchange" (userFees and the market's deployer fee scale), "exchange_worst_scale" (the
    exchange gave no scale for it: the largest one is assumed), "tier0_assumed" (no account to ask:
    observe mode). ``oi_cap_usd`` 0 means the exchange listed no per-asset cap.
    """

    coin: str
    taker_fee_bps: float
    maker_fee_bps: float
    deployer_fee_scale: float
    scale_source: str  # "meta" | "perpDexs" | "worst_case"
    growth_mode: bool
    fee_source: str
    oi_cap_usd: float = 0.0
    oi_usd: float = 0.0  # open interest x mark at the last full read
    at_oi_cap: bool = False  # listed by perpsAtOpenInterestCap, or the dex's total cap reached


class MarketTerms(Msg, frozen=True, tag="terms"):
    """Fees and open-interest caps of the configured markets (``hip3.account.market_terms``).

    ``fees_ms``/``caps_ms``: wall time (ms) of the last successful full read and of the last "at cap" list
    (0: never). Consumers refuse entries when either is older than the configured maximum age, and use
    a stated worst-case fee meanwhile. ``error`` is the last failed read's reason ("" after a success).
    """

    fees_ms: int
    caps_ms: int
    user_cross_rate: float
    user_add_rate: float
    referral_discount: float
    dex_oi_cap_usd: float
    dex_oi_usd: float
    markets: tuple[MarketTerm, ...]
    error: str = ""


class RequestBudgetReading(Msg, frozen=True, tag="rlim"):
    """The account's address-based request budget as the exchange reports it (``userRateLimit``), read by
    the position tracker over REST and published on ``positions`` (state ``request_budget``). Every L1
    action counts against it (a batch of n orders or cancels counts n); the executor adds what it sent
    since ``requested_ms`` and keeps headroom for flattens and cancels (``hip3.execution.admission``)."""

    cum_vlm_usd: Decimal  # lifetime traded volume: the budget grows by one request per USDC
    n_requests_used: int
    n_requests_cap: int
    n_requests_surplus: int  # requests bought with reserveRequestWeight and not yet used
    requested_ms: int  # wall-clock ms when the read was asked for (what the executor sent since is not in it)

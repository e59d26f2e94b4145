"""Every message that crosses the bus, in one tagged union.

Rules (architecture.md, conventions.md):

* Every message is a frozen msgspec ``Struct`` with a short tag (the ``t`` field on the wire) and is
  encoded as a msgpack map, so fields can be appended in later versions and older readers still decode.
  Fields are only ever appended, never reordered or renamed.
* Every message carries its publisher's sequence number ``seq`` and name ``src``. The bus stamps both
  when it sends (``hip3.runtime.bus``), so receivers can count gaps: PUB/SUB drops silently.
* Every message that descends from an exchange frame carries that frame's receive time
  (``time.monotonic_ns()`` in the feed; comparable across processes on one host), so tick-to-trade is
  measured, not guessed.
* Market data carries floats (hot-path comparisons only). Anything that reaches the wire or the books
  (limit prices, sizes, fills, positions, PnL) is an exact ``Decimal`` (a decimal string on the bus).

Encoders and decoders are created once per socket by ``hip3.runtime.bus``; ``DECODER``/``ENCODER`` below are
shared instances for code that is not attached to a socket.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec


class Msg(msgspec.Struct, frozen=True, kw_only=True, tag_field="t"):
    """Base of every bus message. ``seq`` and ``src`` are stamped by the sending socket."""

    seq: int = 0
    src: str = ""


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


# --------------------------------------------------------------------------------------------------
# Intents (detector / exit_watcher -> executor, PUSH/PULL). Each carries an id and a deadline:
# PUSH queues for dead peers, so the executor drops expired intents and never sends one twice.
# --------------------------------------------------------------------------------------------------


class EntryIntent(Msg, frozen=True, tag="entry"):
    """Open a position: an IOC, never reduce-only. ``px``/``sz`` are already wire-valid for the asset."""

    intent_id: str
    coin: str
    asset: int
    is_buy: bool
    px: Decimal
    sz: Decimal
    reduce_only: bool
    valid_until_ns: int  # monotonic_ns deadline; the executor drops it after this
    origin_recv_ns: int  # receive time of the exchange frame that caused it
    created_ns: int
    edge_bps: float
    signal_id: str
    # The per-leg taker fee the detector assumed for this market (bps of notional; a round trip pays it on
    # the entry and on the exit) and where it came from (``hip3.account.market_terms``: "exchange", "worst_case",
    # ...). It travels to the order and the journal, so the report compares it with the fees paid.
    taker_fee_bps: float = 0.0
    fee_source: str = ""


class FlattenIntent(Msg, frozen=True, tag="flat"):
    """Close a position: a reduce-only IOC for the full size. One per market at a time (flatten claim)."""

    intent_id: str
    coin: str
    asset: int
    is_buy: bool
    px: Decimal
    sz: Decimal
    reduce_only: bool
    valid_until_ns: int
    origin_recv_ns: int
    created_ns: int
    reason: str  # exit reason: "mark_regression", "time_stop", "oracle_reversal", ...


# --------------------------------------------------------------------------------------------------
# Order lifecycle (executor -> position_tracker, exit_watcher, detector, recorder).
# --------------------------------------------------------------------------------------------------


class OrderSubmitted(Msg, frozen=True, tag="osub"):
    """A signed order frame was written to the exchange connection."""

    cloid: str
    intent_id: str
    coin: str
    asset: int
    is_buy: bool
    px: Decimal
    sz: Decimal
    reduce_only: bool
    tif: str
    kind: str  # "entry" | "flatten" | "hardstop"
    reason: str  # exit reason for flattens, "" for entries
    nonce: int
    post_id: int
    origin_recv_ns: int  # 0 if not caused by an exchange frame
    sent_ns: int
    edge_bps: float = 0.0  # the entry signal's raw edge (0 for flattens), kept with the position
    # Stage times for tick-to-trade attribution (monotonic_ns; 0 if unknown): when the detector or exit
    # watcher created the intent, and when the executor received it.
    intent_created_ns: int = 0
    intent_recv_ns: int = 0
    # Entries: the detector's assumed per-leg taker fee (bps) and its source, from the intent (0, "" for
    # flattens: a trade's assumption is its entry's, applied to both legs).
    assumed_fee_bps: float = 0.0
    fee_source: str = ""


class OrderAcked(Msg, frozen=True, tag="oack"):
    """The exchange accepted the order and it rests (``resting``) or was accepted (ALO ``success``)."""

    cloid: str
    oid: int
    coin: str
    recv_ns: int


class OrderFilled(Msg, frozen=True, tag="ofill"):
    """A post response reported a fill (the authoritative total for that order). Terminal for IOC."""

    cloid: str
    oid: int
    coin: str
    is_buy: bool
    total_sz: Decimal
    avg_px: Decimal
    reduce_only: bool
    recv_ns: int


class OrderRejected(Msg, frozen=True, tag="orej"):
    """The order reached a terminal state without a fill: rejected, IOC miss, send failure, timeout."""

    cloid: str
    coin: str
    reason: str
    benign: bool  # benign rejections never count toward the hard stop (lessons B23)
    reduce_only: bool
    recv_ns: int
    # The intent the order came from: lets the exit watcher release a flatten claim even when the order
    # was given up before any frame was written (no OrderSubmitted ever linked its cloid).
    intent_id: str = ""


class OrderCancelled(Msg, frozen=True, tag="ocxl"):
    """An order was cancelled (by us, by scheduleCancel, or by the exchange)."""

    cloid: str
    oid: int
    coin: str
    reason: str
    recv_ns: int


class Fill(Msg, frozen=True, tag="fill"):
    """A fill as the position tracker applies it (from a post response or the userFills stream)."""

    coin: str
    cloid: str | None
    oid: int
    tid: int  # 0 when the fill came from a post response (no trade id there)
    is_buy: bool
    px: Decimal
    sz: Decimal
    fee: Decimal
    source: str  # "post" | "stream"
    time_ms: int
    recv_ns: int


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


# --------------------------------------------------------------------------------------------------
# Signals (detector -> recorder). Observe mode records these and sends nothing.
# --------------------------------------------------------------------------------------------------


class Signal(Msg, frozen=True, tag="sig"):
    signal_id: str
    coin: str
    is_buy: bool
    raw_edge_bps: float
    net_edge_bps: float
    threshold_bps: float
    oracle_px: float
    best_px: float
    book_sz: float
    suggested_sz: float
    confidence: float
    recv_ns: int
    time_ms: int
    # The per-leg taker fee in the threshold (bps; twice that is the round trip) and its source.
    taker_fee_bps: float = 0.0
    fee_source: str = ""


class SignalFollowup(Msg, frozen=True, tag="sigf"):
    signal_id: str
    coin: str
    offset_ms: int
    oracle_px: float
    best_px: float
    edge_bps: float
    edge_change_bps: float
    time_ms: int
    # The opposite touch at the horizon (the bid after a buy signal, the ask after a sell): the price a
    # taker would have exited at, so the analysis can score the whole round trip, spread included.
    # 0.0 = unknown (a message from before this field).
    exit_px: float = 0.0


# --------------------------------------------------------------------------------------------------
# Control plane (supervisor <-> every actor).
# --------------------------------------------------------------------------------------------------


class HardStopState(Msg, frozen=True, tag="hs"):
    """The latch. Broadcast on change and periodically; a higher ``epoch`` always wins."""

    latched: bool
    reason: str | None
    epoch: int
    since_ms: int | None


class HardStopRequest(Msg, frozen=True, tag="hsreq"):
    """An actor (or the CLI) asks the supervisor to latch the hard stop."""

    reason: str
    source: str


class HardStopAck(Msg, frozen=True, tag="hsack"):
    """An actor has applied hard-stop ``epoch`` locally."""

    actor: str
    epoch: int


class HardStopProgress(Msg, frozen=True, tag="hsprog"):
    """The executor's flatten sequence: ``done`` once positions (``dust`` aside) and open orders are zero."""

    epoch: int
    positions: int
    open_orders: int
    attempts: int
    done: bool
    alert: bool
    # Positions left open because the exchange refuses their close as below its minimum order value
    # ("xyz:GOLD 0.002"): "done" then means nothing more can be done, and a person must close them.
    dust: tuple[str, ...] = ()


class Heartbeat(Msg, frozen=True, tag="hb"):
    actor: str
    pid: int
    ready: bool
    hardstop_epoch: int
    stats: dict[str, int] = {}


class Ready(Msg, frozen=True, tag="ready"):
    """An actor's READY changed (also implied by heartbeats)."""

    actor: str
    pid: int
    ready: bool
    detail: str


class Shutdown(Msg, frozen=True, tag="bye"):
    reason: str


class Alert(Msg, frozen=True, tag="alert"):
    level: str  # "warning" | "critical"
    actor: str
    text: str


class MarketLine(msgspec.Struct, frozen=True, kw_only=True):
    """One market as the detector sees it, for the operator's views (not for decisions)."""

    coin: str
    mid_px: float  # 0: no valid book
    oracle_px: float  # 0: no ctx yet
    mark_px: float
    dislocation_bps: float  # (mid - oracle) / oracle; 0 without both
    edge_bps: float  # the better side's raw takeable edge vs the oracle (negative: nothing to take)
    gate: str  # the last gate verdict (``GateVerdict`` name, lower case)
    bbo_age_ms: int  # -1: never received
    ctx_age_ms: int


class MarketView(Msg, frozen=True, tag="mview"):
    """The detector's low-rate market summary to the supervisor's inbox (once a second, from a timer)."""

    actor: str
    markets: tuple[MarketLine, ...]


Message = (
    Bbo
    | AssetCtx
    | FeedState
    | ExchangeClock
    | OrderUpdate
    | UserFill
    | EntryIntent
    | FlattenIntent
    | OrderSubmitted
    | OrderAcked
    | OrderFilled
    | OrderRejected
    | OrderCancelled
    | Fill
    | PositionSnapshot
    | PositionClosed
    | MarketTerms
    | Signal
    | SignalFollowup
    | HardStopState
    | HardStopRequest
    | HardStopAck
    | HardStopProgress
    | Heartbeat
    | Ready
    | Shutdown
    | Alert
    | RequestBudgetReading
    | MarketView
)

def wire_prefix(cls: type[Msg]) -> bytes:
    """The first bytes of every encoded ``cls`` message: the map header and the tag (encoded first).

    ZeroMQ SUB sockets filter by prefix at the publisher, so a subscriber can ask for some message
    types only (``hip3.runtime.bus.Bus.subscriber(..., only=...)``) and is never woken for the others. The
    prefixes of the union's types are distinct and none is a prefix of another (tested). Publisher and
    subscriber must run the same message definitions (the header counts the fields).
    """
    n = len(cls.__struct_fields__) + 1  # the fields and the tag
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    tag = str(cls.__struct_config__.tag).encode()
    return head + b"\xa1t" + bytes([0xA0 | len(tag)]) + tag


ENCODER = msgspec.msgpack.Encoder(decimal_format="string")
DECODER: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode(msg: Msg) -> bytes:
    """Encode one message with the shared encoder."""
    return ENCODER.encode(msg)


def decode(data: bytes) -> Message:
    """Decode one message with the shared decoder; raises ``msgspec.DecodeError`` on bad input."""
    return DECODER.decode(data)

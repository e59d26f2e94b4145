"""Intents to the executor and the executor's order lifecycle events."""

from __future__ import annotations

from decimal import Decimal

from hip3.messages.base import Msg

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
    # Benign rejections never count toward the hard stop: routine refusals such as iocCancelRejected, a
    # reduce-only order that would increase the position, or one below the minimum notional.
    benign: bool
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

"""The exchange's error strings and order statuses, and how hip3 classifies them.

Guards against:

* Pending orders leaked on statuses like ``perpMarginRejected``/``marginCanceled``/
  ``scheduledCancel``. Every status except ``open``/``triggered`` is terminal, unknown ones included.
* Routine taker rejections (IOC found no liquidity, reduce-only would increase, below the $10
  minimum, zero size) counted toward the HardStop. ``is_benign_rejection`` names the benign ones.
* the open-interest cap of builder-deployed markets counted toward the HardStop: the exchange's
  refusals at the cap (``is_oi_cap_rejection``) are the market's state, benign for the hard stop.
* Error strings carry suffixes such as `` asset=110027``: match by prefix / substring, never equality.
* An insufficient-margin refusal (``Insufficient margin to place order.`` / ``perpMarginRejected``) says
  the dex's collateral is short, not that the order was wrong: benign for the hard stop's rejection
  trigger (an unfunded HIP-3 dex would otherwise latch it with every entry refused); entries stop on the
  collateral check instead (``hip3.account.collateral``).

The simulator emits these exact constants; the executor classifies with the functions below.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Literal

__all__ = [
    "BENIGN_STATUSES",
    "ERR_BAD_ALO_PX",
    "ERR_BAD_TRIGGER_PX",
    "ERR_CANCEL_MISSING_ORDER",
    "ERR_INVALID_NONCE_DUPLICATE",
    "ERR_INVALID_NONCE_TOO_LOW",
    "ERR_IOC_CANCEL",
    "ERR_MARKET_NO_LIQUIDITY",
    "ERR_MIN_TRADE_NTL",
    "ERR_MUST_DEPOSIT",
    "ERR_OI_CAP",
    "ERR_OI_INCREASE",
    "ERR_ORACLE",
    "ERR_PERP_MARGIN",
    "ERR_PERP_MAX_POSITION",
    "ERR_RATE_LIMIT_PREFIX",
    "ERR_REDUCE_ONLY",
    "ERR_SCHEDULE_CANCEL_DAILY_PREFIX",
    "ERR_SCHEDULE_CANCEL_VOLUME_PREFIX",
    "ERR_TICK",
    "ERR_TOO_AGGRESSIVE_AT_OI_CAP",
    "ERR_USER_NOT_EXIST_PREFIX",
    "ERR_WS_ALREADY_SUBSCRIBED",
    "ERR_WS_BAD_REQUEST",
    "ERR_WS_INVALID_SUBSCRIPTION_PREFIX",
    "ERR_ZERO_SIZE",
    "LIVE_STATUSES",
    "OI_CAP_STATUSES",
    "OrderStatusKind",
    "bad_alo_px_error",
    "duplicate_nonce_error",
    "is_benign_rejection",
    "is_margin_rejection",
    "is_min_value_rejection",
    "is_nonce_error",
    "is_oi_cap_rejection",
    "is_rate_limit_error",
    "nonce_too_low_error",
    "order_status_kind",
    "parse_rate_limit_error",
    "parse_schedule_cancel_volume_error",
    "rate_limit_error",
    "schedule_cancel_daily_error",
    "schedule_cancel_volume_error",
]

# ---- order-level errors (post-response `{"error": ...}` statuses) [DOCS] ----
ERR_TICK = "Price must be divisible by tick size."
ERR_MIN_TRADE_NTL = "Order must have minimum value of $10."
ERR_PERP_MARGIN = "Insufficient margin to place order."
ERR_REDUCE_ONLY = "Reduce only order would increase position."
_ERR_BAD_ALO_PX_PREFIX = "Post only order would have immediately matched, bbo was"
ERR_BAD_ALO_PX = _ERR_BAD_ALO_PX_PREFIX + " {bbo}."
ERR_IOC_CANCEL = "Order could not immediately match against any resting orders."
ERR_BAD_TRIGGER_PX = "Invalid TP/SL price."
ERR_MARKET_NO_LIQUIDITY = "No liquidity available for market order."
ERR_OI_CAP = "Order would increase open interest while open interest is capped"
ERR_TOO_AGGRESSIVE_AT_OI_CAP = "Order rejected due to price more aggressive than oracle while at open interest cap"
ERR_OI_INCREASE = "Order would increase open interest too quickly"
ERR_ORACLE = "Order price too far from oracle"
ERR_PERP_MAX_POSITION = "Order would cause position to exceed margin tier limit at current leverage"
ERR_CANCEL_MISSING_ORDER = "Order was never placed, already canceled, or filled."
# Seen in the Rust original's logs (a size below the lot); exact punctuation [UNVERIFIED].
ERR_ZERO_SIZE = "Order has zero size"

# ---- whole-request errors (`{"status":"err","response": ...}`) ----
# [OBS] identical in several independent bots.
ERR_RATE_LIMIT_PREFIX = "Too many cumulative requests sent"
_ERR_RATE_LIMIT_FMT = (
    "Too many cumulative requests sent ({used} > {cap}) for cumulative volume traded ${vlm}. "
    "Place taker orders to free up 1 request per USDC traded."
)
# The dead man's switch (``scheduleCancel`` with a time) is refused below a lifetime traded volume.
# [OBS] verbatim in ccxt's hyperliquid, the nktkas SDK's tests and several bots' live logs (testnet and
# mainnet, 2025-2026): "Cannot set scheduled cancel time until enough volume traded. Required: $1000000.
# Traded: $373.47205." The traded figure is written without trailing zeros.
ERR_SCHEDULE_CANCEL_VOLUME_PREFIX = "Cannot set scheduled cancel time until enough volume traded"
_ERR_SCHEDULE_CANCEL_VOLUME_FMT = ERR_SCHEDULE_CANCEL_VOLUME_PREFIX + ". Required: ${required}. Traded: ${traded}."
# At most 10 triggers per UTC day [DOCS]; the refusal's wording is known only by its start (a string table
# read out of the node binary): "Too many scheduled cancels triggered for the day. Limit is ..."; the
# rest of the sentence here is [UNVERIFIED]. Match by prefix.
ERR_SCHEDULE_CANCEL_DAILY_PREFIX = "Too many scheduled cancels triggered for the day"
_ERR_SCHEDULE_CANCEL_DAILY_FMT = ERR_SCHEDULE_CANCEL_DAILY_PREFIX + ". Limit is {limit}."
# [OBS] nonce refusals.
ERR_INVALID_NONCE_DUPLICATE = "Invalid nonce: duplicate nonce"
ERR_INVALID_NONCE_TOO_LOW = "Invalid nonce: nonce too low"
# [DOCS] the wrong-signature symptom (the server recovered another signer): followed by an address.
ERR_USER_NOT_EXIST_PREFIX = "L1 error: User or API Wallet"
ERR_MUST_DEPOSIT = "Must deposit before performing actions. User:"

# ---- WebSocket-level [OBS] ----
ERR_WS_BAD_REQUEST = "Error parsing JSON into valid websocket request"
ERR_WS_INVALID_SUBSCRIPTION_PREFIX = "Invalid subscription"
ERR_WS_ALREADY_SUBSCRIBED = "Already subscribed"


def bad_alo_px_error(bbo: str) -> str:
    return f"{_ERR_BAD_ALO_PX_PREFIX} {bbo}."


def rate_limit_error(used: int, cap: int, vlm: str) -> str:
    return _ERR_RATE_LIMIT_FMT.format(used=used, cap=cap, vlm=vlm)


def parse_rate_limit_error(text: str) -> tuple[int, int] | None:
    """``(requests, cap)`` from "Too many cumulative requests sent (A > B) ...", or None. ``A`` is the count
    the refused request would have reached, ``B`` the address's cap at that moment."""
    if not is_rate_limit_error(text):
        return None
    try:
        inner = text[text.index("(") + 1:text.index(")")]
        a, b = inner.split(">")
        return int(a.strip()), int(b.strip())
    except ValueError:
        return None


def schedule_cancel_volume_error(required_usd: int, traded_usd: str) -> str:
    return _ERR_SCHEDULE_CANCEL_VOLUME_FMT.format(required=required_usd, traded=traded_usd)


def parse_schedule_cancel_volume_error(text: str) -> Decimal | None:
    """The required lifetime volume (USD) named in the dead man's switch's volume refusal, or None (not
    that refusal, or a wording this parser does not know)."""
    if not isinstance(text, str) or not text.startswith(ERR_SCHEDULE_CANCEL_VOLUME_PREFIX):
        return None
    _, sep, rest = text.partition("Required: $")
    if not sep:
        return None
    figure = rest.split()[0].rstrip(".") if rest.split() else ""
    try:
        value = Decimal(figure)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


def schedule_cancel_daily_error(limit: int) -> str:
    return _ERR_SCHEDULE_CANCEL_DAILY_FMT.format(limit=limit)


def duplicate_nonce_error(nonce: int) -> str:
    return f"{ERR_INVALID_NONCE_DUPLICATE} {nonce}"


def nonce_too_low_error(nonce: int, min_nonce: int) -> str:
    return f"{ERR_INVALID_NONCE_TOO_LOW} {nonce} < {min_nonce}"


def is_rate_limit_error(text: str) -> bool:
    return isinstance(text, str) and text.startswith(ERR_RATE_LIMIT_PREFIX)


def is_nonce_error(text: str) -> bool:
    return isinstance(text, str) and text.startswith("Invalid nonce")


# ---- order statuses (orderUpdates `status`) [DOCS] ----
LIVE_STATUSES = frozenset({"open", "triggered"})
BENIGN_STATUSES = frozenset({"iocCancelRejected", "reduceOnlyRejected", "minTradeNtlRejected",
                             "perpMarginRejected"})
# Substrings of benign error texts. Suffixes (" asset=110027") and a missing final period are tolerated.
_BENIGN_SUBSTRINGS = (
    "could not immediately match",
    "Reduce only order would increase position",
    "Order has zero size",
    "Order must have minimum value of $10",
    "Insufficient margin to place order",
)

# The exchange refuses an order because of a market's open-interest cap (builder-deployed markets):
# the market's state, not a fault of the order or of hip3. They never count toward the HardStop; the
# executor stops entries in that market for a while instead (hip3.account.market_terms).
OI_CAP_STATUSES = frozenset({
    "positionIncreaseAtOpenInterestCapRejected",
    "positionFlipAtOpenInterestCapRejected",
    "tooAggressiveAtOpenInterestCapRejected",
    "openInterestIncreaseRejected",
    "openInterestCapCanceled",
})
_OI_CAP_SUBSTRINGS = (
    "increase open interest while open interest is capped",  # position increase / flip at the cap
    "more aggressive than oracle while at open interest cap",
    "increase open interest too quickly",
)

OrderStatusKind = Literal["open", "filled", "cancelled", "rejected"]


def is_oi_cap_rejection(text_or_status: object) -> bool:
    """True for a refusal because of an open-interest cap (status or error text, suffixes tolerated)."""
    if not isinstance(text_or_status, str):
        return False
    return text_or_status in OI_CAP_STATUSES or any(sub in text_or_status for sub in _OI_CAP_SUBSTRINGS)


def is_margin_rejection(text_or_status: object) -> bool:
    """The dex's collateral is short (post-response text, ``OrderRejected.reason`` or orderUpdates status)."""
    return isinstance(text_or_status, str) and (
        "Insufficient margin to place order" in text_or_status or text_or_status.endswith("perpMarginRejected"))


def is_min_value_rejection(text_or_status: object) -> bool:
    """Refused as below the exchange's minimum order value ($10), whatever the suffix or the source."""
    return isinstance(text_or_status, str) and (
        "Order must have minimum value of $10" in text_or_status or text_or_status.endswith("minTradeNtlRejected"))


def is_benign_rejection(text_or_status: object) -> bool:
    """True for routine taker rejections that must never count toward the HardStop.

    Accepts either an orderUpdates status (``iocCancelRejected``, ``reduceOnlyRejected``,
    ``minTradeNtlRejected``) or an error text from a post response (prefix/substring match).
    """
    if not isinstance(text_or_status, str):
        return False
    if text_or_status in BENIGN_STATUSES:
        return True
    return any(sub in text_or_status for sub in _BENIGN_SUBSTRINGS) or is_oi_cap_rejection(text_or_status)


def order_status_kind(status: str) -> OrderStatusKind:
    """Classify an order status; every unknown status is terminal ("cancelled"): a status taken for
    non-terminal leaks a pending order."""
    if status in LIVE_STATUSES:
        return "open"
    if status == "filled":
        return "filled"
    if status == "rejected" or status.endswith("Rejected"):
        return "rejected"
    # "canceled", "*Canceled", "scheduledCancel" and anything unknown: terminal, nothing filled by it.
    return "cancelled"

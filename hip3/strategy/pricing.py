"""Float market data -> exact wire-valid Decimal prices and sizes for intents.

Guards against unformatted or zero sizes reaching the exchange (the Rust original sent sizes with 28
decimals, and orders of zero size below the lot): the detector and exit
watcher compare floats on the hot path, but every price/size they put in an intent goes through
``Decimal`` and the protocol library's rounding rules (``hip3.hyperliquid.wire``) first.
"""

from __future__ import annotations

import math
from decimal import Decimal

from hip3.hyperliquid.wire import floor_size, round_price

__all__ = ["ZERO", "ceil_to_decimals", "float_to_decimal", "floor_to_decimals", "to_valid_price"]

ZERO = Decimal(0)
_ONE = Decimal(1)
_BIG = Decimal(10) ** 15


def float_to_decimal(x: float) -> Decimal:
    """The shortest decimal that round-trips ``x`` (``repr``): 2650.5 stays 2650.5, 100.0 becomes 100."""
    d = Decimal(repr(x))
    return d.quantize(_ONE) if d == d.to_integral_value() and d.is_finite() and abs(d) < _BIG else d


def floor_to_decimals(x: float, sz_decimals: int) -> Decimal:
    """Floor a float size to ``sz_decimals`` decimals (never more exposure than intended); may be 0."""
    if not math.isfinite(x) or x <= 0.0:
        return ZERO
    return floor_size(float_to_decimal(x), sz_decimals)


def ceil_to_decimals(x: float, sz_decimals: int) -> Decimal:
    """Smallest multiple of 10^-sz_decimals that is ≥ ``x`` (used to reach the minimum notional)."""
    if not math.isfinite(x) or x <= 0.0:
        return ZERO
    d = float_to_decimal(x)
    out = floor_size(d, sz_decimals)
    if out < d:
        out += Decimal(1).scaleb(-sz_decimals)
    return out


def to_valid_price(px: float, sz_decimals: int, is_buy: bool) -> Decimal | None:
    """Round ``px`` to a valid price on the aggressive side (buy up, sell down); None if impossible."""
    if not math.isfinite(px) or px <= 0.0:
        return None
    try:
        return round_price(float_to_decimal(px), sz_decimals, is_buy)
    except ValueError:
        return None

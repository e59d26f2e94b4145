"""Exact wire formatting of prices, sizes and actions.

Guards against unformatted numbers (sizes like ``0.1928733304402333767298326824`` sent because nothing
formatted them) and the signing failures where the server recovers another signer: trailing zeros in
``p``/``s``, a ``null`` instead of an omitted ``c`` key, or the wrong key order all make the server recover
a random signer. Everything here is ``Decimal`` arithmetic; no float ever reaches the wire. A value that
would need rounding to be written is refused (``ValueError``), never silently changed: rounding is a
deliberate step (``round_price``, ``floor_size``) done by the caller, in the direction it chose.

Key orders (mandatory, they are hashed): order wire ``a, b, p, s, r, t`` then ``c`` if present; order
action ``type, orders, grouping``; cancels ``a, o``; cancelByCloid ``asset, cloid``.
"""

from __future__ import annotations

import decimal
import re
import secrets
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

__all__ = [
    "HIP3_CLOID_PREFIX",
    "MAX_WIRE_DECIMALS",
    "cancel_action",
    "cancel_by_cloid_action",
    "decimal_to_wire",
    "floor_size",
    "is_hip3_cloid",
    "is_valid_cloid",
    "is_valid_price",
    "is_valid_size",
    "new_cloid",
    "noop_action",
    "order_action",
    "order_wire",
    "price_tick",
    "round_price",
    "schedule_cancel_action",
    "update_leverage_action",
]

# The SDK formats numbers with 8 decimals and refuses anything that would round.
MAX_WIRE_DECIMALS = 8
# Perp prices: at most 5 significant figures and at most (6 - szDecimals) decimals (the exchange's
# tick and lot size rules).
MAX_PRICE_SIG_FIGS = 5
PERP_MAX_PRICE_DECIMALS = 6
_TIFS = frozenset({"Alo", "Ioc", "Gtc"})
_GROUPINGS = frozenset({"na", "normalTpsl", "positionTpsl"})
_CLOID_RE = re.compile(r"0x[0-9a-f]{32}")
# Enough precision that quantize never fails on any realistic price/size.
_CTX = decimal.Context(prec=60, traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])


def _stripped(x: Decimal) -> tuple[int, tuple[int, ...], int]:
    """(sign, digits, exponent) of a finite Decimal with trailing zeros of the fraction removed."""
    sign, digits, exp = x.as_tuple()
    assert isinstance(exp, int)
    n = len(digits)
    while exp < 0 and n > 1 and digits[n - 1] == 0:
        n -= 1
        exp += 1
    return sign, digits[:n], exp


def decimal_to_wire(x: Decimal) -> str:
    """Plain decimal string: no exponent, no trailing zeros, ``-0`` → ``0``; exact or ``ValueError``.

    Refuses NaN/Infinity and values with more than 8 decimals (the wire's precision).
    """
    if not isinstance(x, Decimal):
        raise ValueError(f"decimal_to_wire needs a Decimal, got {type(x).__name__}: {x!r}")
    if not x.is_finite():
        raise ValueError(f"not a finite number: {x!r}")
    # Fast path for the common already-canonical value ("112.95", "3"): str() is plain and minimal.
    text = str(x)
    if "E" not in text and text != "-0":
        dot = text.find(".")
        if dot < 0 or (text[-1] != "0" and len(text) - dot - 1 <= MAX_WIRE_DECIMALS):
            return text
    sign, digits, exp = _stripped(x)
    if not any(digits):
        return "0"
    if exp < -MAX_WIRE_DECIMALS:
        raise ValueError(f"{x} has more than {MAX_WIRE_DECIMALS} decimals; round it explicitly first")
    coeff = "".join(map(str, digits)).lstrip("0") or "0"
    if exp >= 0:
        text = coeff + "0" * exp
    else:
        frac_len = -exp
        coeff = coeff.rjust(frac_len + 1, "0")
        text = coeff[:-frac_len] + "." + coeff[-frac_len:]
    return "-" + text if sign else text


def _max_price_decimals(sz_decimals: int) -> int:
    return max(0, PERP_MAX_PRICE_DECIMALS - sz_decimals)


def is_valid_price(px: Decimal, sz_decimals: int) -> bool:
    """> 0, and either an integer or ≤ 5 significant figures with ≤ (6 − szDecimals) decimals."""
    if not isinstance(px, Decimal) or not px.is_finite() or px <= 0:
        return False
    _sign, digits, exp = _stripped(px)
    if exp >= 0:
        return True  # integer prices are always valid
    return len(digits) <= MAX_PRICE_SIG_FIGS and -exp <= _max_price_decimals(sz_decimals)


def is_valid_size(sz: Decimal, sz_decimals: int) -> bool:
    """> 0 with at most ``sz_decimals`` decimals (a zero size is rejected: "Order has zero size")."""
    if not isinstance(sz, Decimal) or not sz.is_finite() or sz <= 0:
        return False
    _sign, _digits, exp = _stripped(sz)
    return -exp <= sz_decimals


def price_tick(px: Decimal, sz_decimals: int) -> Decimal:
    """The price quantum in ``px``'s decade: 10^-max(0, min(4 − e, 6 − szDecimals)), e = floor(log10 px).

    [UNVERIFIED derivation; it follows from the exchange's documented tick rules.]
    """
    if not px.is_finite() or px <= 0:
        raise ValueError(f"price must be finite and > 0, got {px!r}")
    e = px.adjusted()
    decimals = max(0, min(MAX_PRICE_SIG_FIGS - 1 - e, _max_price_decimals(sz_decimals)))
    return Decimal(1).scaleb(-decimals)


def round_price(px: Decimal, sz_decimals: int, is_buy: bool) -> Decimal:
    """Nearest valid price on the aggressive side: a buy rounds UP, a sell rounds DOWN.

    A valid price is returned unchanged (in value). Raises ``ValueError`` if no valid price exists on that
    side (a sell below the smallest tick).
    """
    if not isinstance(px, Decimal) or not px.is_finite() or px <= 0:
        raise ValueError(f"price must be a finite Decimal > 0, got {px!r}")
    if is_valid_price(px, sz_decimals):
        return px
    tick = price_tick(px, sz_decimals)
    # Multiples of the tick inside px's decade are valid, and so are both decade boundaries.
    out = px.quantize(tick, rounding=ROUND_CEILING if is_buy else ROUND_FLOOR, context=_CTX)
    if out <= 0:
        raise ValueError(f"no valid sell price at or below {px} (szDecimals={sz_decimals})")
    return out


def floor_size(sz: Decimal, sz_decimals: int) -> Decimal:
    """Round a size toward zero to ``sz_decimals`` decimals (exposure never exceeds intent); may be 0."""
    if not isinstance(sz, Decimal) or not sz.is_finite():
        raise ValueError(f"size must be a finite Decimal, got {sz!r}")
    out = sz.quantize(Decimal(1).scaleb(-sz_decimals), rounding=ROUND_DOWN, context=_CTX)
    return out if out != 0 else Decimal(0)


# Every client order id hip3 makes starts with these 6 bytes ("hip3" in ASCII, then a format version), so
# a fill or an order seen at the exchange tells by itself whether hip3 sent it: its own fills are told
# from an operator's (no cloid, or another tool's) without any local state, across restarts
# (``hip3.positions.ownership``). A foreign random cloid carries this prefix with odds of 2^-48; the 10 random bytes
# that follow make two of hip3's own collide only after about 10^12 orders.
HIP3_CLOID_PREFIX = "0x686970330001"


def new_cloid() -> str:
    """A client order id: ``0x`` + 32 lower-case hex digits, hip3's 6-byte prefix then 10 random bytes."""
    return HIP3_CLOID_PREFIX + secrets.token_hex(10)


def is_hip3_cloid(cloid: object) -> bool:
    """True if ``cloid`` is one that ``new_cloid`` makes (hip3 sent the order)."""
    return isinstance(cloid, str) and len(cloid) == 34 and cloid.startswith(HIP3_CLOID_PREFIX)


def is_valid_cloid(s: object) -> bool:
    """``0x`` + exactly 32 lower-case hex digits."""
    return isinstance(s, str) and _CLOID_RE.fullmatch(s) is not None


def _check_asset(asset: int) -> None:
    if isinstance(asset, bool) or not isinstance(asset, int) or asset < 0:
        raise ValueError(f"asset id must be a non-negative int, got {asset!r}")


def order_wire(
    asset: int,
    is_buy: bool,
    px: Decimal,
    sz: Decimal,
    reduce_only: bool,
    tif: str = "Ioc",
    cloid: str | None = None,
) -> dict[str, object]:
    """One limit order wire, keys ``a, b, p, s, r, t`` then ``c`` only when a cloid is given.

    ``px``/``sz`` must already be exact (see ``round_price``/``floor_size``) and > 0; the asset-specific
    validity (tick, lot) is the caller's check, since the wire does not know szDecimals.
    """
    _check_asset(asset)
    if tif not in _TIFS:
        raise ValueError(f"tif must be one of {sorted(_TIFS)}, got {tif!r}")
    p = decimal_to_wire(px)
    s = decimal_to_wire(sz)
    if px <= 0:
        raise ValueError(f"price must be > 0, got {px}")
    if sz <= 0:
        raise ValueError(f"size must be > 0, got {sz}")
    wire: dict[str, object] = {
        "a": asset,
        "b": bool(is_buy),
        "p": p,
        "s": s,
        "r": bool(reduce_only),
        "t": {"limit": {"tif": tif}},
    }
    if cloid is not None:
        if not is_valid_cloid(cloid):
            raise ValueError(f"cloid must be 0x + 32 lower-case hex digits, got {cloid!r}")
        wire["c"] = cloid
    return wire


def order_action(wires: list[dict[str, object]], grouping: str = "na") -> dict[str, object]:
    """``{"type": "order", "orders": [...], "grouping": ...}`` (no builder field)."""
    if not wires:
        raise ValueError("an order action needs at least one order")
    if grouping not in _GROUPINGS:
        raise ValueError(f"grouping must be one of {sorted(_GROUPINGS)}, got {grouping!r}")
    return {"type": "order", "orders": wires, "grouping": grouping}


def cancel_action(cancels: list[tuple[int, int]]) -> dict[str, object]:
    """``{"type": "cancel", "cancels": [{"a": asset, "o": oid}, ...]}``."""
    if not cancels:
        raise ValueError("a cancel action needs at least one cancel")
    out: list[dict[str, object]] = []
    for asset, oid in cancels:
        _check_asset(asset)
        if isinstance(oid, bool) or not isinstance(oid, int) or oid < 0:
            raise ValueError(f"oid must be a non-negative int, got {oid!r}")
        out.append({"a": asset, "o": oid})
    return {"type": "cancel", "cancels": out}


def cancel_by_cloid_action(cancels: list[tuple[int, str]]) -> dict[str, object]:
    """``{"type": "cancelByCloid", "cancels": [{"asset": asset, "cloid": cloid}, ...]}``."""
    if not cancels:
        raise ValueError("a cancelByCloid action needs at least one cancel")
    out: list[dict[str, object]] = []
    for asset, cloid in cancels:
        _check_asset(asset)
        if not is_valid_cloid(cloid):
            raise ValueError(f"cloid must be 0x + 32 lower-case hex digits, got {cloid!r}")
        out.append({"asset": asset, "cloid": cloid})
    return {"type": "cancelByCloid", "cancels": out}


def schedule_cancel_action(time_ms: int | None) -> dict[str, object]:
    """Dead man's switch; ``time_ms=None`` removes the schedule (the key is then omitted, not null)."""
    if time_ms is None:
        return {"type": "scheduleCancel"}
    if isinstance(time_ms, bool) or not isinstance(time_ms, int) or time_ms <= 0:
        raise ValueError(f"time_ms must be a positive int, got {time_ms!r}")
    return {"type": "scheduleCancel", "time": time_ms}


def noop_action() -> dict[str, object]:
    """``{"type": "noop"}``: burns a nonce (cancels an in-flight action signed with the same nonce)."""
    return {"type": "noop"}


def update_leverage_action(asset: int, leverage: int, is_cross: bool = False) -> dict[str, object]:
    """``{"type":"updateLeverage","asset":A,"isCross":false,"leverage":N}``; HIP-3 is isolated-only."""
    _check_asset(asset)
    if isinstance(leverage, bool) or not isinstance(leverage, int) or leverage < 1:
        raise ValueError(f"leverage must be an int >= 1, got {leverage!r}")  # a float gives HTTP 422
    return {"type": "updateLeverage", "asset": asset, "isCross": bool(is_cross), "leverage": leverage}

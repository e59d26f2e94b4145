"""Simulated accounts: USDC collateral, signed positions with VWAP entry, realised PnL, fees, fills.

Exchange behaviour reproduced: ``szi`` is signed (long > 0); the entry price is the VWAP of the opening
fills; a closing fill books ``closedPnl`` (fee excluded); fees are charged per fill at the HIP-3 rates
(2 × the base tier-0 fees by default: taker 0.09 %, maker 0.03 %); ``dir`` is the exchange's display
string ("Open Long", "Close Short", "Long > Short", ...); ``userFills`` is newest first.

A balance per perp dex, as on the exchange (each HIP-3 dex margins separately): ``balance`` is the USDC
collateral on the builder dex, which backs its markets and books their PnL and fees; ``perp_balance`` is
the validator perp dex's ("", where a real deposit lands), where the simulator trades nothing. Orders on
the builder dex see only ``balance`` (an unfunded dex refuses them: ``Insufficient margin to place
order.``); ``sendAsset`` moves USDC between the two (``hip3.sim.transfers``). ``clearinghouseState``
with the builder dex reports ``balance`` and the HIP-3 positions; without a dex, ``perp_balance``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hip3.sim.book import Order, fmt_units

_FEE_Q = Decimal("0.000001")
_ZERO = Decimal(0)
MAX_FILLS_KEPT = 2000


def dstr(x: Decimal) -> str:
    """A Decimal as the exchange writes numbers: plain notation, no exponent, integral values as ``X.0``."""
    s = format(x.normalize(), "f")
    if "." not in s:
        s += ".0"
    return "0.0" if s in ("-0.0", "-0") else s


class Position:
    """One market's position: ``szi`` in signed lots, ``entry_px`` a Decimal (None when flat)."""

    __slots__ = ("entry_px", "szi")

    def __init__(self) -> None:
        self.szi = 0
        self.entry_px: Decimal | None = None


class Account:
    """One master account (or sub-account / vault)."""

    def __init__(self, address: str, balance: Decimal, perp_balance: Decimal = _ZERO) -> None:
        self.address = address
        self.balance = balance  # collateral on the builder dex
        self.perp_balance = perp_balance  # on the validator perp dex ("")
        self.positions: dict[int, Position] = {}
        self.open_orders: dict[int, Order] = {}
        self.fills: list[dict[str, Any]] = []  # oldest first; the info call reverses
        self.schedule_cancel_ms: int | None = None
        self.leverage: dict[int, int] = {}
        self.cum_vlm = _ZERO


def fill_dir(start: int, is_buy: bool, end: int) -> str:
    """The exchange's ``dir`` display string for a fill that moves the position from start to end."""
    if start == 0 or (start > 0) == is_buy:
        return "Open Long" if is_buy else "Open Short"
    if end == 0 or (end > 0) == (start > 0):
        return "Close Short" if is_buy else "Close Long"
    return "Short > Long" if is_buy else "Long > Short"


def apply_fill(
    acct: Account,
    asset: int,
    coin: str,
    sz_decimals: int,
    is_buy: bool,
    px: int,
    lots: int,
    fee_rate: Decimal,
    crossed: bool,
    order: Order,
    tid: int,
    tx_hash: str,
    now_ms: int,
) -> dict[str, Any]:
    """Book one fill on ``acct`` (position, entry, balance, volume) and return the WsFill dict."""
    px_dec = 6 - sz_decimals
    px_d = Decimal(px).scaleb(-px_dec)
    sz_d = Decimal(lots).scaleb(-sz_decimals)
    pos = acct.positions.get(asset)
    if pos is None:
        pos = acct.positions[asset] = Position()
    start = pos.szi
    signed = lots if is_buy else -lots
    end = start + signed
    closed_pnl = _ZERO
    if start == 0 or (start > 0) == is_buy:
        old = Decimal(abs(start)).scaleb(-sz_decimals)
        entry = pos.entry_px or _ZERO
        pos.entry_px = (old * entry + sz_d * px_d) / (old + sz_d)
    else:
        closed_lots = min(lots, abs(start))
        entry = pos.entry_px or px_d
        direction = 1 if start > 0 else -1
        closed_pnl = Decimal(closed_lots).scaleb(-sz_decimals) * (px_d - entry) * direction
        if end == 0:
            pos.entry_px = None
        elif (end > 0) != (start > 0):
            pos.entry_px = px_d
    pos.szi = end
    notional = px_d * sz_d
    fee = (notional * fee_rate).quantize(_FEE_Q)
    acct.balance += closed_pnl - fee
    acct.cum_vlm += notional
    fill: dict[str, Any] = {
        "coin": coin,
        "px": fmt_units(px, px_dec),
        "sz": fmt_units(lots, sz_decimals),
        "side": "B" if is_buy else "A",
        "time": now_ms,
        "startPosition": fmt_units(start, sz_decimals),
        "dir": fill_dir(start, is_buy, end),
        "closedPnl": dstr(closed_pnl.quantize(_FEE_Q)),
        "hash": tx_hash,
        "oid": order.oid,
        "crossed": crossed,
        "fee": dstr(fee),
        "tid": tid,
        "feeToken": "USDC",
        "twapId": None,
    }
    if order.cloid is not None:
        fill["cloid"] = order.cloid
    acct.fills.append(fill)
    if len(acct.fills) > MAX_FILLS_KEPT:
        del acct.fills[: len(acct.fills) - MAX_FILLS_KEPT]
    return fill


def position_margin(pos: Position, sz_decimals: int, mark: Decimal, leverage: int) -> Decimal:
    return abs(Decimal(pos.szi).scaleb(-sz_decimals)) * mark / leverage


def unrealized(pos: Position, sz_decimals: int, mark: Decimal) -> Decimal:
    if pos.szi == 0 or pos.entry_px is None:
        return _ZERO
    return Decimal(pos.szi).scaleb(-sz_decimals) * (mark - pos.entry_px)


def order_dict(o: Order, coin: str, sz_decimals: int, frontend: bool = False) -> dict[str, Any]:
    """An open order as ``openOrders`` (or, with ``frontend``, ``frontendOpenOrders``) lists it."""
    d: dict[str, Any] = {
        "coin": coin,
        "side": "B" if o.is_buy else "A",
        "limitPx": fmt_units(o.px, 6 - sz_decimals),
        "sz": fmt_units(o.sz, sz_decimals),
        "oid": o.oid,
        "timestamp": o.timestamp,
        "origSz": fmt_units(o.orig_sz, sz_decimals),
    }
    if o.cloid is not None:
        d["cloid"] = o.cloid
    if frontend:
        d.update(
            {
                "orderType": "Limit",
                "tif": o.tif,
                "reduceOnly": o.reduce_only,
                "isTrigger": False,
                "triggerPx": "0.0",
                "triggerCondition": "N/A",
                "isPositionTpsl": False,
                "children": [],
            }
        )
    return d


def ws_order(o: Order, coin: str, sz_decimals: int, status: str, now_ms: int) -> dict[str, Any]:
    """One ``WsOrder`` for the orderUpdates channel: ``sz`` is the remaining size."""
    order: dict[str, Any] = {
        "coin": coin,
        "side": "B" if o.is_buy else "A",
        "limitPx": fmt_units(o.px, 6 - sz_decimals),
        "sz": fmt_units(o.sz, sz_decimals),
        "oid": o.oid,
        "timestamp": o.timestamp,
        "origSz": fmt_units(o.orig_sz, sz_decimals),
    }
    if o.cloid is not None:
        order["cloid"] = o.cloid
    return {"order": order, "status": status, "statusTimestamp": now_ms}

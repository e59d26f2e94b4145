"""Per-market limit order book with price-time priority, in exact integer units.

Every valid perp price has at most ``6 - szDecimals`` decimals and every valid size at most ``szDecimals``,
so the book stores prices as integer *ticks of 10^-(6-szDecimals)* and sizes as integer *lots of
10^-szDecimals*. Their product is then the notional in micro-USD, exactly: no float noise can reach a
fill, a position or a fee (the exchange rejects such noise too).

The book holds both the market model's maker quotes (``owner is None``) and users' resting orders.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import deque
from collections.abc import Iterator
from decimal import Decimal

MAKER: None = None  # owner of the market model's quotes


@functools.lru_cache(maxsize=1 << 16)  # the publish hot path formats the same prices over and over
def fmt_units(v: int, dec: int) -> str:
    """Integer units of 10^-dec as the exchange's decimal string (integral values keep a trailing ``.0``)."""
    if dec == 0:
        return f"{v}.0"
    neg = v < 0
    q, r = divmod(-v if neg else v, 10**dec)
    s = f"{q}.0" if r == 0 else f"{q}.{r:0{dec}d}".rstrip("0")
    return "-" + s if neg else s


def to_units(x: Decimal, dec: int) -> int | None:
    """Exact integer units of 10^-dec, or None if ``x`` has more decimals than that."""
    scaled = x.scaleb(dec)
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def round_px_units(x: float, sz_decimals: int, up: bool) -> int:
    """A float price rounded (up or down) to a valid perp price, as integer units of 10^-(6-szDecimals)."""
    px_dec = 6 - sz_decimals
    e = math.floor(math.log10(x)) if x > 0 else 0
    tick_exp = 0 if e >= 5 else max(e - 4, -px_dec)
    tick_u: int = 10 ** (tick_exp + px_dec)
    q = x * 10**px_dec / tick_u
    n = math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)
    return int(max(n, 1) * tick_u)


class Order:
    """One resting (or incoming) order. ``px`` in ticks, ``sz``/``orig_sz`` in lots."""

    __slots__ = (
        "asset",
        "cloid",
        "is_buy",
        "oid",
        "orig_sz",
        "owner",
        "px",
        "reduce_only",
        "sz",
        "tif",
        "timestamp",
    )

    def __init__(
        self,
        oid: int,
        owner: str | None,
        asset: int,
        is_buy: bool,
        px: int,
        sz: int,
        timestamp: int,
        tif: str = "Gtc",
        cloid: str | None = None,
        reduce_only: bool = False,
    ) -> None:
        self.oid = oid
        self.owner = owner
        self.asset = asset
        self.is_buy = is_buy
        self.px = px
        self.sz = sz
        self.orig_sz = sz
        self.timestamp = timestamp
        self.tif = tif
        self.cloid = cloid
        self.reduce_only = reduce_only


class Fill:
    """One match between the incoming (taker) order and a resting (maker) order."""

    __slots__ = ("maker", "px", "sz")

    def __init__(self, maker: Order, px: int, sz: int) -> None:
        self.maker = maker
        self.px = px
        self.sz = sz


class Book:
    """Price levels (FIFO queues) on each side; ``bid_px`` and ``ask_px`` are ascending price lists."""

    __slots__ = ("ask_px", "asks", "bid_px", "bids")

    def __init__(self) -> None:
        self.bids: dict[int, deque[Order]] = {}
        self.asks: dict[int, deque[Order]] = {}
        self.bid_px: list[int] = []
        self.ask_px: list[int] = []

    def add(self, o: Order) -> None:
        side, prices = (self.bids, self.bid_px) if o.is_buy else (self.asks, self.ask_px)
        q = side.get(o.px)
        if q is None:
            q = side[o.px] = deque()
            bisect.insort(prices, o.px)
        q.append(o)

    def remove(self, o: Order) -> bool:
        side, prices = (self.bids, self.bid_px) if o.is_buy else (self.asks, self.ask_px)
        q = side.get(o.px)
        if q is None:
            return False
        try:
            q.remove(o)
        except ValueError:
            return False
        if not q:
            del side[o.px]
            prices.remove(o.px)
        return True

    def remove_owner(self, owner: str | None) -> None:
        """Remove every order of one owner (the model's requote)."""
        for side, prices in ((self.bids, self.bid_px), (self.asks, self.ask_px)):
            for px in list(prices):
                q = side[px]
                kept = deque(o for o in q if o.owner != owner)
                if kept:
                    side[px] = kept
                else:
                    del side[px]
                    prices.remove(px)

    def best_bid(self) -> int | None:
        return self.bid_px[-1] if self.bid_px else None

    def best_ask(self) -> int | None:
        return self.ask_px[0] if self.ask_px else None

    def level(self, is_bid: bool, px: int) -> tuple[int, int]:
        """(total lots, number of orders) at one price."""
        q = (self.bids if is_bid else self.asks)[px]
        return sum(o.sz for o in q), len(q)

    def levels(self, is_bid: bool, depth: int) -> Iterator[tuple[int, int, int]]:
        """Best-first (px, lots, n) for up to ``depth`` levels."""
        prices = reversed(self.bid_px) if is_bid else iter(self.ask_px)
        for i, px in enumerate(prices):
            if i >= depth:
                return
            sz, n = self.level(is_bid, px)
            yield px, sz, n

    def crosses(self, is_buy: bool, px: int) -> bool:
        """Would an order at ``px`` match immediately?"""
        if is_buy:
            return bool(self.ask_px) and self.ask_px[0] <= px
        return bool(self.bid_px) and self.bid_px[-1] >= px

    def match(self, is_buy: bool, px: int, sz: int, owner: str | None) -> tuple[list[Fill], list[Order]]:
        """Take up to ``sz`` lots at prices no worse than ``px``, best price first, oldest first.

        Returns the fills and the taker's own resting orders that were cancelled instead of traded
        against (self-trade prevention: the exchange expires the resting maker order).
        """
        fills: list[Fill] = []
        self_cancels: list[Order] = []
        side, prices = (self.asks, self.ask_px) if is_buy else (self.bids, self.bid_px)
        while sz > 0 and prices:
            best = prices[0] if is_buy else prices[-1]
            if (is_buy and best > px) or (not is_buy and best < px):
                break
            q = side[best]
            while sz > 0 and q:
                maker = q[0]
                if owner is not None and maker.owner == owner:
                    q.popleft()
                    self_cancels.append(maker)
                    continue
                take = maker.sz if maker.sz < sz else sz
                maker.sz -= take
                sz -= take
                fills.append(Fill(maker, best, take))
                if maker.sz == 0:
                    q.popleft()
            if not q:
                del side[best]
                if is_buy:
                    prices.pop(0)
                else:
                    prices.pop()
        return fills, self_cancels

    def orders(self) -> Iterator[Order]:
        for q in self.bids.values():
            yield from q
        for q in self.asks.values():
            yield from q

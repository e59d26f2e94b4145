"""The simulated exchange's shared pieces: a market, the outbox of what changed, the answers every action
handler builds, and ``Exchange``, the engine as its action handlers (``orders``, ``transfers``, ``terms``)
see it. They sit below ``hip3.sim.engine``, which calls those handlers, so no handler imports the engine.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from hip3.hyperliquid.assets import asset_id
from hip3.sim.book import Book, fmt_units
from hip3.sim.model import MarketModel
from hip3.sim.params import MarketSpec, SimParams

if TYPE_CHECKING:
    from hip3.sim.accounts import Account
    from hip3.sim.auth import NonceStore
    from hip3.sim.orderlog import OrderLog

PERP_DEX_INDEX = 1  # the builder dex is perpDexs[1]
OK_DEFAULT: dict[str, Any] = {"status": "ok", "response": {"type": "default"}}


class BadRequest(ValueError):
    """The body does not deserialize into a valid request (HTTP 422 / WS error on the exchange)."""


def err(text: str) -> dict[str, Any]:
    return {"status": "err", "response": text}


class Market:
    """One tradable HIP-3 market: spec, book, model and the day statistics for its context."""

    __slots__ = (
        "asset",
        "book",
        "coin",
        "day_base_lots",
        "day_ntl_micro",
        "index",
        "last_trade_px",
        "model",
        "px_dec",
        "spec",
        "szd",
    )

    def __init__(self, index: int, spec: MarketSpec, model: MarketModel) -> None:
        self.index = index
        self.asset = asset_id(PERP_DEX_INDEX, index)  # the same rule as hip3's registry
        self.spec = spec
        self.coin = spec.name
        self.szd = spec.sz_decimals
        self.px_dec = 6 - spec.sz_decimals
        self.book = Book()
        self.model = model
        self.last_trade_px: int | None = None
        self.day_ntl_micro = 0
        self.day_base_lots = 0

    def px_str(self, px: int) -> str:
        return fmt_units(px, self.px_dec)

    def sz_str(self, sz: int) -> str:
        return fmt_units(sz, self.szd)

    def mid(self) -> int | None:
        """Mid in price units (may fall between ticks: integer division, the exchange also rounds)."""
        b, a = self.book.best_bid(), self.book.best_ask()
        if b is None or a is None:
            return None
        return (b + a) // 2

    def mark(self) -> int:
        """Median of oracle, best bid and best ask (falls back to the oracle when a side is empty)."""
        b, a = self.book.best_bid(), self.book.best_ask()
        o = self.model.oracle_px
        if b is None or a is None:
            return o
        return sorted((o, b, a))[1]

    def mark_dec(self) -> Decimal:
        return Decimal(self.mark()).scaleb(-self.px_dec)


class Outbox:
    """What changed since the server last published."""

    def __init__(self) -> None:
        self.books: set[int] = set()
        self.ctxs: set[int] = set()
        self.order_updates: dict[str, list[dict[str, Any]]] = {}
        self.fills: dict[str, list[dict[str, Any]]] = {}

    def order_update(self, user: str, upd: dict[str, Any]) -> None:
        self.order_updates.setdefault(user, []).append(upd)

    def fill(self, user: str, f: dict[str, Any]) -> None:
        self.fills.setdefault(user, []).append(f)

    def drain(self) -> Outbox:
        out = Outbox()
        out.books, self.books = self.books, out.books
        out.ctxs, self.ctxs = self.ctxs, out.ctxs
        out.order_updates, self.order_updates = self.order_updates, out.order_updates
        out.fills, self.fills = self.fills, out.fills
        return out


class Terms(Protocol):
    """The fee and open-interest rules as an order sees them (``hip3.sim.terms.SimTerms``)."""

    def rate(self, m: Market, crossed: bool) -> Decimal: ...
    def check_order(self, m: Market, is_buy: bool, px: int, opening_lots: int) -> str | None: ...


class Exchange(Protocol):
    """The engine (``hip3.sim.engine.Engine``) as the action handlers read and change it."""

    @property
    def p(self) -> SimParams: ...
    @property
    def markets(self) -> list[Market]: ...
    @property
    def by_asset(self) -> dict[int, Market]: ...
    @property
    def by_coin(self) -> dict[str, Market]: ...
    @property
    def accounts(self) -> dict[str, Account]: ...
    @property
    def nonces(self) -> NonceStore: ...
    @property
    def order_log(self) -> OrderLog: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def terms(self) -> Terms: ...
    @property
    def min_notional_micro(self) -> int: ...

    def new_oid(self) -> int: ...
    def new_tid(self) -> int: ...
    def fund(self, address: str, usd: Decimal, on: str | None = None) -> Account: ...
    def leverage_of(self, acct: Account, m: Market) -> int: ...

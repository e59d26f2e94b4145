"""Dust: a position whose close the exchange refuses as below its minimum order value. Say it, stop retrying.

The exchange refuses an order worth less than $10 (``Order must have minimum value of $10.``). Whether a
reduce-only order that closes the whole position is exempt is not documented ([UNVERIFIED],
``hip3.hyperliquid.rules``); hip3's exits always close the whole position, which is the exchange's way
out of a small remainder if it takes such orders at all. If it refuses one, retrying cannot help: the
exit watcher released its claim and fired again at the next market update, the hard-stop flattener every
second, each retry one more refused request from the address budget, forever and silently (the refusal
is benign, so nothing counted it).

``DustBook`` remembers such a position with its size when the refusal came: until the position changes
(a fill, a resync with another size, the close) nothing tries to close it again; the owner says so once
(WARNING and an alert naming the coin and size), and the hard stop ends in a defined state ("done, with
this dust left") instead of spinning. A person closes it (the app, or a larger position that later
closes whole), or a change of size lets hip3 try again.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from hip3.hyperliquid.errors import is_min_value_rejection
from hip3.hyperliquid.rules import MIN_ORDER_VALUE_USD

__all__ = ["DustBook", "dust_line"]


def dust_line(coin: str, size: Decimal, reason: str) -> str:
    """The one line that says what happened and what to do."""
    return (f"{coin}: the exchange refused to close {size.normalize():f} (below its ${MIN_ORDER_VALUE_USD} "
            f"minimum order value: {reason.removeprefix('exchange: ')[:120]}); left open as dust and not retried "
            f"until the position changes: close it by hand")


class DustBook:
    """Coins whose whole-position reduce-only close was refused for the minimum value, with that size."""

    __slots__ = ("_stuck", "new")

    def __init__(self) -> None:
        self._stuck: dict[str, Decimal] = {}
        self.new: list[str] = []  # lines for coins that became stuck since the owner last took them

    def on_rejected(self, coin: str, position_size: Decimal | None, reason: str) -> bool:
        """A reduce-only order for ``coin`` was refused with ``reason`` while the position held
        ``position_size`` (None: unknown). True if that makes it newly stuck."""
        if position_size is None or position_size <= 0 or not is_min_value_rejection(reason):
            return False
        if self._stuck.get(coin) == position_size:
            return False
        self._stuck[coin] = position_size
        self.new.append(dust_line(coin, position_size, reason))
        return True

    def observe(self, coin: str, size: Decimal | None) -> bool:
        """The position's current size (None: flat). A change releases the coin; True if released."""
        held = self._stuck.get(coin)
        if held is None or held == size:
            return False
        del self._stuck[coin]
        return True

    def observe_all(self, sizes: Iterable[tuple[str, Decimal]]) -> list[str]:
        """Every position of a synced view (coin, size); a stuck coin absent from it is flat. Released coins."""
        current = dict(sizes)
        return [c for c in list(self._stuck) if self.observe(c, current.get(c))]

    def is_stuck(self, coin: str) -> bool:
        return coin in self._stuck

    def stuck(self) -> dict[str, Decimal]:
        return dict(self._stuck)

    def take_new(self) -> list[str]:
        out, self.new = self.new, []
        return out

    def describe(self) -> tuple[str, ...]:
        """``("xyz:GOLD 0.002", ...)`` for progress messages and status."""
        return tuple(f"{c} {s.normalize():f}" for c, s in sorted(self._stuck.items()))

"""The trades of a session, from the executor's ``exec`` stream: what a replay prints and what a live
run is compared with. A trade is one filled order: coin, side, size, average price, and why (``entry``
or the exit reason of the flatten, ``hardstop``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from hip3.messages import Message, OrderFilled, OrderSubmitted


class Trade(msgspec.Struct, frozen=True):
    coin: str
    side: str  # "buy" | "sell"
    size: Decimal
    price: Decimal
    reason: str  # "entry", an exit reason, or "hardstop"

    def key(self) -> tuple[str, str, str, str, str]:
        """Normalised for comparison (``1.50`` == ``1.5``)."""
        return (self.coin, self.side, str(self.size.normalize()), str(self.price.normalize()), self.reason)


class TradeLog:
    """Feed it every ``exec`` message; ``trades`` lists the fills in the order they were reported."""

    def __init__(self) -> None:
        self._why: dict[str, str] = {}
        self.trades: list[Trade] = []

    def on_message(self, msg: Message) -> None:
        if isinstance(msg, OrderSubmitted):
            self._why[msg.cloid] = "entry" if msg.kind == "entry" else (msg.reason or msg.kind)
        elif isinstance(msg, OrderFilled) and msg.total_sz > 0:
            self.trades.append(Trade(coin=msg.coin, side="buy" if msg.is_buy else "sell", size=msg.total_sz,
                                     price=msg.avg_px, reason=self._why.get(msg.cloid, "unknown")))

    def keys(self) -> list[tuple[str, str, str, str, str]]:
        return [t.key() for t in self.trades]

    def as_list(self) -> list[dict[str, Any]]:
        return [{"coin": t.coin, "side": t.side, "size": str(t.size), "price": str(t.price), "reason": t.reason}
                for t in self.trades]

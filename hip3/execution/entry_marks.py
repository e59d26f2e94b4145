"""The entries the executor has in flight, for its gates: pending orders and fills not yet in a snapshot.

* A market must never stay "pending" for ever because its mark was counted twice (an order that took a
  slow path was marked again): ``PendingMarks`` holds at most one mark per market, keyed by intent id,
  and marking and releasing are idempotent, so each happens exactly once.
* A filled entry releases its pending mark at once, but the position reaches the ``PositionSnapshot``
  one bus round trip later: ``FilledAwaitingSnapshot`` keeps the market blocked, its filled notional
  counted in the caps, until a snapshot seen since the fill shows it (or the position's close is seen),
  so a second entry cannot slip into the gap.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from hip3.messages import PositionSnapshot

__all__ = ["FilledAwaitingSnapshot", "PendingMarks"]


class PendingMarks:
    """Markets with a new (non-reduce-only) order pending; at most one per market (the one-pending-entry
    gate), marked and released exactly once per order."""

    def __init__(self) -> None:
        self._by_coin: dict[str, tuple[str, Decimal]] = {}
        self._coin_of: dict[str, str] = {}

    def try_mark(self, coin: str, intent_id: str, sz: Decimal) -> bool:
        """Mark ``coin`` pending for ``intent_id``; False if the market already has a pending order."""
        if coin in self._by_coin:
            return False
        self._by_coin[coin] = (intent_id, sz)
        self._coin_of[intent_id] = coin
        return True

    def release(self, intent_id: str) -> bool:
        """Release the mark held by ``intent_id``; idempotent (True only the first time)."""
        coin = self._coin_of.pop(intent_id, None)
        if coin is None:
            return False
        del self._by_coin[coin]
        return True

    def is_pending(self, coin: str) -> bool:
        return coin in self._by_coin

    def items(self) -> list[tuple[str, Decimal]]:
        """(coin, size) of every pending new order."""
        return [(coin, sz) for coin, (_i, sz) in self._by_coin.items()]

    def __len__(self) -> int:
        return len(self._by_coin)


class _Filled(msgspec.Struct):
    """An entry fill not yet visible in the position snapshot."""

    sz: Decimal
    is_long: bool
    after_version: int  # the snapshot version known at the fill: that one or a later one must show it


class FilledAwaitingSnapshot:
    """Markets whose entry filled but whose position no snapshot has shown yet (no pyramiding, and the caps).

    Cleared for a market when a snapshot observed at or after the fill shows its position (from then on
    the snapshot itself blocks, and a later flat snapshot means a later close), or when its
    ``PositionClosed`` arrives after the fill. (The tracker may have applied the fill from userFills
    before the post response reached us, so the snapshot current at the fill can already show it; a
    snapshot that does not show it never clears anything.) A snapshot version that goes down is a
    restarted position tracker: its next snapshot that shows the position clears the block. An entry that
    ends without a fill never gets here."""

    def __init__(self) -> None:
        self._by_coin: dict[str, _Filled] = {}
        self._version = -1  # the latest snapshot version observed

    def observe(self, snapshot: PositionSnapshot | None) -> None:
        if snapshot is None:
            return
        if snapshot.version < self._version:  # a restarted tracker numbers again from 0
            for filled in self._by_coin.values():
                filled.after_version = -1
        self._version = snapshot.version
        if self._by_coin:
            held = {position.coin for position in snapshot.positions}
            shown = [coin for coin, filled in self._by_coin.items()
                     if coin in held and snapshot.version >= filled.after_version]
            for coin in shown:
                del self._by_coin[coin]

    def on_entry_filled(self, coin: str, is_buy: bool, sz: Decimal) -> None:
        filled = self._by_coin.get(coin)
        if filled is None:
            self._by_coin[coin] = _Filled(sz=sz, is_long=is_buy, after_version=self._version)
        else:  # the same order reported twice (post total and orderUpdate), or a later partial fill
            filled.sz, filled.after_version = max(filled.sz, sz), self._version

    def on_position_closed(self, coin: str) -> None:
        self._by_coin.pop(coin, None)

    def get(self, coin: str) -> _Filled | None:
        return self._by_coin.get(coin)

    def items(self) -> list[tuple[str, _Filled]]:
        return list(self._by_coin.items())

    def __contains__(self, coin: object) -> bool:
        return coin in self._by_coin

    def __len__(self) -> int:
        return len(self._by_coin)

"""Closes waiting for the order that names their exit reason.

The exit reason travels on the executor's ``OrderSubmitted``; the closing fill can reach the tracker first
on the feed's user stream (two publishers, nothing orders them). A close by one of hip3's cloids whose
``OrderSubmitted`` has not arrived is held here (owner already tagged) until it comes.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from hip3.messages import PositionClosed

__all__ = ["HeldCloses"]


class HeldCloses:
    """Closes waiting for the ``OrderSubmitted`` that names their exit reason, at most ``hold_ms`` (then
    published as they are, "external") and at most ``max_held`` at once (the oldest goes first)."""

    def __init__(self, hold_ms: int = 2000, max_held: int = 1000) -> None:
        self.hold_ms = hold_ms
        self.max_held = max_held
        self._held: OrderedDict[str, tuple[PositionClosed, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, cloid: str, closed: PositionClosed, now_ms: int) -> list[PositionClosed]:
        """Hold ``closed``; returns what must go now to stay within ``max_held``."""
        self._held[cloid] = (closed, now_ms + self.hold_ms)
        out = []
        while len(self._held) > self.max_held:
            out.append(self._held.popitem(last=False)[1][0])
        return out

    def release(self, cloid: str, reason: str) -> PositionClosed | None:
        """The held close of ``cloid`` with its exit reason, or None."""
        item = self._held.pop(cloid, None)
        return None if item is None else msgspec.structs.replace(item[0], exit_reason=reason)

    def expire(self, now_ms: int) -> list[PositionClosed]:
        """Closes held past their time: their ``OrderSubmitted`` never came (published as "external")."""
        out = []
        while self._held:
            cloid, (closed, until) = next(iter(self._held.items()))
            if until > now_ms:
                break
            del self._held[cloid]
            out.append(closed)
        return out

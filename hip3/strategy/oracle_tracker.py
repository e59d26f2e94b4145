"""Oracle movement tracker: consecutive meaningful oracle moves and the last move's size.

Guards against signals blocked by a per-check comparison: with bbo updates ~100×/s and the oracle moving
every few seconds, "change since the previous evaluation" is ~0 on 99 % of checks and blocked 41+ bps
signals. Direction and velocity come
from this tracker, which only advances on ctx messages whose oracle moved by ≥ ``min_move_bps``; smaller
moves reset velocity but move the reference, so slow creeps never register.
"""

from __future__ import annotations

__all__ = ["OracleTracker"]


class OracleTracker:
    """Per-market tracker. ``update`` is called on every ctx message with a valid oracle price."""

    __slots__ = ("down", "last_px", "min_move_bps", "up", "velocity_bps")

    def __init__(self, min_move_bps: float) -> None:
        self.min_move_bps = min_move_bps
        self.last_px = 0.0  # 0 = no oracle seen yet
        self.up = 0
        self.down = 0
        self.velocity_bps = 0.0

    def update(self, px: float) -> int:
        """Feed a new oracle; returns +1 (up move), -1 (down move) or 0 (no meaningful move)."""
        last = self.last_px
        if px == last:
            return 0
        if last <= 0.0:
            self.last_px = px
            return 0
        self.last_px = px
        move_bps = (px - last) / last * 1e4
        if move_bps >= self.min_move_bps:
            self.up += 1
            self.down = 0
            self.velocity_bps = move_bps
            return 1
        if -move_bps >= self.min_move_bps:
            self.down += 1
            self.up = 0
            self.velocity_bps = -move_bps
            return -1
        self.velocity_bps = 0.0
        return 0

    def with_count(self, is_long: bool) -> int:
        """Consecutive moves in the position's favour (up for a long, down for a short)."""
        return self.up if is_long else self.down

    def against_count(self, is_long: bool) -> int:
        """Consecutive moves against the position."""
        return self.down if is_long else self.up

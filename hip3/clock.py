"""The process's clock: ``monotonic_ns()``, ``time_ns()``, ``monotonic()``, replaceable for a replay.

Live, these names ARE ``time.monotonic_ns`` / ``time.time_ns`` / ``time.monotonic`` (module attributes,
so a call ``clock.monotonic_ns()`` costs exactly what ``time.monotonic_ns()`` costs: one global and one
attribute lookup; nothing is wrapped). Actors and the Actor base's timers read time through this module
so that ``hip3.replay`` can install a ``VirtualClock`` for the whole process and drive a recorded session
deterministically and faster than real time.

Call sites must use ``clock.monotonic_ns()`` (attribute lookup at call time), never
``from hip3.clock import monotonic_ns`` (that would bind the live function for good).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

monotonic_ns: Callable[[], int] = time.monotonic_ns
time_ns: Callable[[], int] = time.time_ns
monotonic: Callable[[], float] = time.monotonic


def wall_ms() -> int:
    """Wall-clock milliseconds since the epoch (the exchange's ``time`` fields, nonces, expiresAfter)."""
    return time_ns() // 1_000_000


class VirtualClock:
    """A clock that moves only when told (``advance_to``). Wall time = monotonic + a fixed offset, so a
    recorded session's receive times (monotonic) and the exchange's times (wall) keep their relation."""

    def __init__(self, start_ns: int, wall_offset_ns: int) -> None:
        self.now_ns = start_ns
        self.wall_offset_ns = wall_offset_ns

    def monotonic_ns(self) -> int:
        return self.now_ns

    def time_ns(self) -> int:
        return self.now_ns + self.wall_offset_ns

    def monotonic(self) -> float:
        return self.now_ns / 1e9

    def advance_to(self, t_ns: int) -> None:
        """Move forward to ``t_ns`` (never backwards)."""
        if t_ns > self.now_ns:
            self.now_ns = t_ns


_lock = threading.Lock()
_installed: VirtualClock | None = None


def install(vc: VirtualClock) -> None:
    """Make ``vc`` the process's clock (replay only: one per process at a time)."""
    global monotonic_ns, time_ns, monotonic, _installed
    with _lock:
        if _installed is not None:
            raise RuntimeError("a virtual clock is already installed in this process")
        _installed = vc
        monotonic_ns, time_ns, monotonic = vc.monotonic_ns, vc.time_ns, vc.monotonic


def restore() -> None:
    """Back to the real clock."""
    global monotonic_ns, time_ns, monotonic, _installed
    with _lock:
        _installed = None
        monotonic_ns, time_ns, monotonic = time.monotonic_ns, time.time_ns, time.monotonic

"""Restart policy, as in Erlang/OTP: exponential backoff with jitter, and an intensity limit.

A crashed (or hung) actor is restarted after ``initial × 2^(n−1)`` ms (capped at ``max``), scaled by
a random factor in ``[1 − jitter, 1 + jitter]``, where ``n`` counts its restarts within the last
``period_s``. One more failure once ``max_restarts`` restarts happened within the period means the
actor is crash-looping: the supervisor stops restarting it and latches the hard stop.
Pure: the clock and the random source are injected.
"""

from __future__ import annotations

import random
from collections import deque


class RestartPolicy:
    def __init__(self, initial_ms: float, max_ms: float, jitter: float, max_restarts: int, period_s: float,
                 rng: random.Random | None = None) -> None:
        self.initial_ms = initial_ms
        self.max_ms = max_ms
        self.jitter = jitter
        self.max_restarts = max_restarts
        self.period_s = period_s
        self._rng = rng or random.Random()
        self._history: deque[float] = deque()

    def recent(self, now_s: float) -> int:
        """Restarts within the period ending at ``now_s``."""
        while self._history and now_s - self._history[0] >= self.period_s:
            self._history.popleft()
        return len(self._history)

    def on_failure(self, now_s: float) -> float | None:
        """A failure at ``now_s``: the delay in seconds before the restart, or None to give up."""
        n = self.recent(now_s)
        if n >= self.max_restarts:
            return None
        self._history.append(now_s)
        base = min(self.max_ms, self.initial_ms * float(2**n))
        factor = 1.0 + self.jitter * (2.0 * self._rng.random() - 1.0)
        return max(0.0, base * factor) / 1000.0

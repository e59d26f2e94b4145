"""The restart policy with an injected clock and random source."""

from __future__ import annotations

import random

import pytest

from hip3.runtime.restart import RestartPolicy


def test_backoff_doubles_and_caps_without_jitter() -> None:
    p = RestartPolicy(initial_ms=100, max_ms=500, jitter=0.0, max_restarts=10, period_s=60)
    delays = [p.on_failure(float(i)) for i in range(5)]
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_jitter_stays_within_bounds() -> None:
    p = RestartPolicy(initial_ms=100, max_ms=100, jitter=0.2, max_restarts=1000, period_s=1, rng=random.Random(7))
    delays = [p.on_failure(float(i) * 2) for i in range(200)]  # each failure outside the previous period
    assert all(0.08 <= d <= 0.12 for d in delays if d is not None)
    assert len({round(d, 6) for d in delays if d is not None}) > 50  # really random


def test_gives_up_past_the_limit_within_the_period() -> None:
    p = RestartPolicy(initial_ms=10, max_ms=1000, jitter=0.0, max_restarts=3, period_s=60)
    assert p.on_failure(0.0) is not None
    assert p.on_failure(1.0) is not None
    assert p.on_failure(2.0) is not None
    assert p.on_failure(3.0) is None


def test_old_failures_leave_the_window_and_backoff_resets() -> None:
    p = RestartPolicy(initial_ms=10, max_ms=1000, jitter=0.0, max_restarts=3, period_s=60)
    for t in (0.0, 1.0, 2.0):
        p.on_failure(t)
    assert p.recent(61.5) == 1
    assert p.on_failure(62.5) == pytest.approx(0.01)  # back to the initial delay

"""hip3.clock: the real clock by default, a virtual one installed for a replay, restored after."""

from __future__ import annotations

import time

import pytest

from hip3 import clock

pytestmark = pytest.mark.timeout(10)


def test_live_the_clock_is_the_time_module() -> None:
    assert clock.monotonic_ns is time.monotonic_ns and clock.time_ns is time.time_ns
    assert clock.monotonic is time.monotonic
    assert abs(clock.wall_ms() - time.time_ns() // 1_000_000) < 1000


def test_a_virtual_clock_moves_only_forward_and_only_when_told() -> None:
    vc = clock.VirtualClock(5_000_000_000, 1_700_000_000_000_000_000)
    clock.install(vc)
    try:
        assert clock.monotonic_ns() == 5_000_000_000 and clock.monotonic() == 5.0
        assert clock.wall_ms() == 1_700_000_005_000
        vc.advance_to(6_000_000_000)
        vc.advance_to(5_500_000_000)  # never backwards
        assert clock.monotonic_ns() == 6_000_000_000 and clock.time_ns() == 1_700_000_006_000_000_000
        with pytest.raises(RuntimeError, match="already installed"):
            clock.install(clock.VirtualClock(0, 0))
    finally:
        clock.restore()
    assert clock.monotonic_ns is time.monotonic_ns

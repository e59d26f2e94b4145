"""The supervisor's own stalls (GC, swap, a slow disk, SIGSTOP) are not its actors' fault.

The supervisor core runs here with fake actors and an injected clock: a stall is the clock jumping
between two turns with the heartbeats sent meanwhile not yet readable (after a SIGSTOP they are still in
the kernel). Before the fix every healthy actor was killed after such a stall and each kill counted toward
the restart limit; a hung actor must still be caught. The end-to-end version (SIGSTOP of the real
supervisor process) is ``tests/faults/test_supervisor_stall_e2e.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hip3.runtime import hardstop
from hip3.runtime.liveness import LoopWatch, judge, stall_allowance_ms
from tests.supervisor_harness import Core

ACTORS = ("feed", "position_tracker", "executor", "detector")
# max_restarts = 1 within 60 s: two kills of one actor would latch the hard stop.
EXTRA = """heartbeat_interval_ms = 100
heartbeat_timeout_ms = 1000
ready_timeout_ms = 2000
restart_backoff_initial_ms = 50
restart_backoff_max_ms = 200
max_restarts = 1
restart_period_s = 60.0
"""


@pytest.fixture
def core(run_dir: Path) -> Iterator[Core]:
    c = Core(run_dir, ACTORS, EXTRA)
    try:
        yield c
    finally:
        c.close()


def _turns(core: Core, n: int, ms: float, alive: tuple[str, ...] = ACTORS) -> None:
    """``n`` healthy turns of ``ms``: the ``alive`` actors heartbeat before each."""
    for _ in range(n):
        core.clock.advance_ms(ms)
        core.heartbeat(*alive)
        core.step()


def _restarts(core: Core) -> dict[str, int]:
    return {n: s.restarts for n, s in core.sup.slots.items()}


def test_a_stall_of_the_supervisor_kills_no_healthy_actor_and_counts_no_restart(core: Core) -> None:
    core.start_all()
    pids = {n: core.pid(n) for n in ACTORS}
    _turns(core, 10, 50)
    for stall_ms in (5_000, 30_000):  # twice: a second kill of any actor would latch the stop
        core.clock.advance_ms(stall_ms)  # the heartbeats of the stall are not readable yet
        core.step()
        assert core.kills() == [], f"killed after a {stall_ms} ms stall of the supervisor: {core.kills()}"
        _turns(core, 40, 50)  # 2 s of normal turns: the heartbeats flow again
    assert core.kills() == []
    assert {n: core.pid(n) for n in ACTORS} == pids
    assert _restarts(core) == dict.fromkeys(ACTORS, 0)
    st = core.sup.status()
    assert not st["hard_stop"]["latched"]
    assert st["supervisor"]["stalls"] == 2 and st["supervisor"]["longest_stall_ms"] >= 30_000
    assert all(a["state"] == "running" and a["ready"] for a in st["actors"])


def test_a_really_hung_actor_is_still_killed_after_a_stall(core: Core) -> None:
    core.start_all()
    _turns(core, 10, 50)
    core.clock.advance_ms(5_000)
    core.step()
    healthy = tuple(a for a in ACTORS if a != "detector")
    turns = 0
    while "detector" not in core.kills():
        _turns(core, 1, 50, alive=healthy)  # the detector never heartbeats again
        turns += 1
        assert turns < 40, "a hung detector was not killed within 2 s of awake time"
    # Killed on awake time: the heartbeat timeout (1 s) less at most the stall allowance (0.1 s).
    assert 50 * turns >= 1000 - 100 - 50, turns
    assert core.kills() == ["detector"]
    _turns(core, 10, 50, alive=healthy)  # its restart after the backoff
    assert _restarts(core) == {"feed": 0, "position_tracker": 0, "executor": 0, "detector": 1}


def test_a_hung_actor_is_caught_even_if_the_supervisor_stalls_every_turn(core: Core) -> None:
    """A slow disk on every turn: the stall allowance still counts, so the hang is found."""
    core.start_all()
    healthy = tuple(a for a in ACTORS if a != "executor")
    turn = 0
    while "executor" not in core.kills() and turn < 30:
        _turns(core, 1, 400, alive=healthy)
        turn += 1
    assert core.kills() == ["executor"]
    assert 8 <= turn <= 12, turn  # 1 s at 0.1 s of counted time per turn
    assert core.sup.watch.stalls >= turn


def test_heartbeats_that_queued_during_a_slow_turn_are_read_before_judging(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drain, then judge: a slow latch write (90 ms, below the stall allowance, so no stall is counted)
    during which the detector reports READY, right at its READY deadline."""
    for name in ACTORS[:3]:
        core.step()
        core.ready(name)
        core.step()
    core.step()
    det = core.sup.slots["detector"]
    assert det.state == "starting"
    # Walk up to 40 ms before the detector's READY deadline (2 s after its start).
    while core.clock.now_ns + 90_000_000 < det.started_ns + 2_000_000_000:
        _turns(core, 1, 50, alive=ACTORS[:3])
    assert core.clock.now_ns + 90_000_000 > det.started_ns + 2_000_000_000 and det.state == "starting"

    real_write = hardstop.atomic_write

    def slow_write(path: Path, data: bytes) -> None:
        core.clock.advance_ms(90)
        core.ready("detector")  # arrives in the inbox while the supervisor writes
        core.heartbeat(*ACTORS[:3])
        real_write(path, data)

    monkeypatch.setattr(hardstop, "atomic_write", slow_write)
    reply: dict[str, Any] = core.ask({"cmd": "hardstop", "reason": "slow disk"})
    assert reply["ok"] and reply["hard_stop"]["persisted"]
    assert core.kills() == [], "the READY that queued during the write was judged as missing"
    assert det.state == "running" and det.ready
    assert core.sup.watch.stalls == 0


def test_loop_watch_and_judge_are_pure() -> None:
    assert stall_allowance_ms(200, 3000) == 200
    assert stall_allowance_ms(20, 3000) == 100  # never under a poll timeout's worth
    assert stall_allowance_ms(900, 1000) == 500  # an unseen stall plus an interval stays under the timeout
    w = LoopWatch(100_000_000, 0)
    assert w.observe(50_000_000) == 0 and w.watch_ns(50_000_000) == 50_000_000
    assert w.observe(3_050_000_000) == 3_000_000_000  # a 3 s gap: 2.9 s taken out
    assert w.watch_ns(3_050_000_000) == 150_000_000
    assert w.observe(3_000_000_000) == 0  # a reading from before the last one changes nothing
    assert (w.stalls, w.longest_stall_ns, w.stalled_ns) == (1, 3_000_000_000, 2_900_000_000)
    ms = 1_000_000
    assert judge("running", 0, 0, 1000 * ms, 1000, 2000) is None
    assert judge("running", 0, 0, 1001 * ms, 1000, 2000) == ("hung", 1001.0)
    assert judge("starting", None, 0, 2001 * ms, 1000, 2000) == ("not_ready", 2001.0)
    assert judge("starting", None, 0, 1999 * ms, 1000, 2000) is None
    assert judge("backoff", 0, 0, 10**12, 1000, 2000) is None
    assert judge("running", None, 0, 10**12, 1000, 2000) is None

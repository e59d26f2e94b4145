"""Fixtures of the fault-injection tests: a supervised paper session that never outlives its test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.restart_loop import start_simulator
from tests.faults.session import Session


@pytest.fixture
def make_session(run_dir: Path) -> Iterator[Callable[..., Session]]:
    """``make_session(**config)`` starts a paper session in ``run_dir``; it is stopped (and anything of the
    run directory still alive is killed) when the test ends, pass or fail. The test fails if a process
    of the run directory had to be killed: ``stop`` must leave nothing behind."""
    sessions: list[Session] = []

    def make(start: bool = True, **config: Any) -> Session:
        s = Session(run_dir, **config)
        sessions.append(s)
        if start:
            s.start()
        return s

    yield make
    leftovers = []
    for s in sessions:
        s.close()
        leftovers += s.leftover_processes()
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def external_sim(run_dir: Path) -> Iterator[tuple[str, str, str, str]]:
    """``python -m hip3.sim`` run by the test: (url, account, key, config path). Killed at the end."""
    sim = start_simulator(run_dir)
    try:
        yield sim.url, sim.account, sim.key, str(sim.config)
    finally:
        sim.stop()

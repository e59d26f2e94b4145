"""``kill -9`` of the supervisor: nothing of the run directory survives it, and a new supervisor picks up
the persisted latch and the positions the exchange still holds.

In paper mode the simulator is the supervisor's child and dies with it, so the second test runs the
simulator itself and a supervisor without one (``tests.faults.external_supervisor``): the exchange
keeps the dead bot's positions, as a real one would.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.session import Session, alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def _kill_supervisor(s: Session) -> None:
    pid = s.supervisor_pid()
    assert pid is not None
    before = s.run_dir_processes()
    titles = {s.title(p) for p in before}
    assert any("hip3:executor" in t for t in titles), titles  # process titles are set
    os.kill(pid, signal.SIGKILL)
    # Every actor, the forkserver and (in paper mode) the simulator notice and exit.
    assert wait_until(lambda: not s.run_dir_processes(), 10), s.leftover_processes()
    # A process in the middle of exiting has already lost its environment (so ``run_dir_processes`` no
    # longer sees it) but is not a zombie yet: give it the moment to finish (a CI run caught that window).
    assert wait_until(lambda: not any(alive(p) for p in before), 5), [p for p in before if alive(p)]


def test_paper_supervisor_kill_leaves_nothing_and_restarts(make_session: Callable[..., Session]) -> None:
    s = make_session()
    assert wait_until(lambda: s.status()["trading"]["entries"] >= 1, 30, 0.2)
    _kill_supervisor(s)
    # A new supervisor starts on the same run directory (lock, sockets, nonce state reusable) and trades.
    s.start()
    # ``start --detach`` returned on a status with every actor READY; the executor's READY may drop for a
    # moment right after, while the tracker resyncs once the new user streams are acked (by design).
    assert wait_until(s.all_ready, 20), s.status()["actors"]
    assert wait_until(lambda: s.status()["trading"]["entries"] >= 1, 30, 0.2)
    assert s.wait_books_agree(15) == ""


def test_supervisor_kill_resyncs_positions_and_keeps_the_latch(
        run_dir: Path, external_sim: tuple[str, str, str, str]) -> None:
    url, account, key, _ = external_sim
    s = Session(run_dir, exchange=(url, account))
    try:
        s.start_external(url, account, key)
        # 1. Killed with positions open: they stay at the exchange; a new supervisor's tracker finds them.
        assert wait_until(lambda: bool(s.sim_positions()), 40, 0.1), "no position opened"
        _kill_supervisor(s)
        held = s.sim_positions()
        assert held, "the exchange lost the positions"
        s.start_external(url, account, key)
        assert s.wait_books_agree(15) == ""

        # 2. Latched while the flatten cannot finish (the exchange rate-limits every action), then killed:
        #    the new supervisor starts latched (persisted) and flattens what the exchange still holds.
        assert wait_until(lambda: bool(s.sim_positions()), 40, 0.1), "no position opened"
        s.faults(rate_limit_actions=True)
        assert s.cli("hardstop", "--reason", "faults test").returncode == 0
        assert wait_until(lambda: s.status()["hard_stop"].get("flatten") is not None, 10)
        epoch = s.status()["hard_stop"]["epoch"]
        assert s.sim_positions(), "flattened despite the rate limit"
        _kill_supervisor(s)
        s.clear_faults()
        s.start_external(url, account, key)
        st = s.status()
        assert st["hard_stop"]["latched"] and st["hard_stop"]["epoch"] == epoch, st["hard_stop"]
        assert st["hard_stop"]["reason"] == "operator: faults test"

        assert wait_until(s.flat_after_hardstop, 40, 0.5), (s.status()["hard_stop"], s.sim_positions())
        assert s.doubled_cloids() == []
        assert s.orders_while_latched() == []
        assert s.orders_while_not_ready() == []
    finally:
        s.close()
        left = s.leftover_processes()
    assert not left, left

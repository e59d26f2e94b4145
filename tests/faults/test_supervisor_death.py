"""The supervisor dies (``kill -9``) with a position open; the service manager restarts it; the restarted
session's exit watcher closes hip3's position, and nothing is sent twice.

The supervisor runs as the systemd unit runs it (``deploy/hip3.service``): the ``hip3`` console script,
``start --log-format console``, ``NOTIFY_SOCKET`` bound by the test, restarted by a bounded loop that does
what the unit's ``Restart=on-failure`` / ``KillMode=mixed`` / ``RestartSec`` do (``tests.faults.restart_loop``).

The exchange must outlive the supervisor, as a real one does. In paper mode the simulator is the supervisor's
child and dies with it (its positions with it), so this test runs the simulator itself (``python -m hip3.sim``,
the ``external_sim`` fixture) and points the paper config at it (``exchange.rest_url``); the supervisor then
starts none and signs with the account's key from ``HIP3_SIM_KEY``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.hyperliquid.wire import is_hip3_cloid
from tests.faults.restart_loop import HIP3, ServiceRun, Simulator, seconds, start_simulator, unit_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(not HIP3.exists(), reason="no hip3 console script: pip install -e .")]


@pytest.fixture
def service(run_dir: Path) -> Iterator[ServiceRun]:
    sim: Simulator = start_simulator(run_dir)
    run = ServiceRun(run_dir, sim, seconds(unit_settings()["RestartSec"][-1]))
    try:
        yield run
    finally:
        run.close()
        sim.stop()
    left = run.s.leftover_processes()
    assert not left, left


def test_a_killed_supervisor_is_restarted_and_its_exit_watcher_closes_hip3s_position(service: ServiceRun) -> None:
    s, loop = service.s, service.loop
    service.start()  # the console script under the restart loop; READY=1 on the notify socket; every actor READY

    # A position that the tracker's ledger (run/ownership.json) says is all hip3's; kill -9 of the supervisor
    # while the exchange holds it. The actors follow their supervisor; the restart loop waits RestartSec.
    kill = service.kill_with_position()
    assert kill.ledger.get(kill.coin) == kill.size  # the ledger as the dead tracker left it: hip3's
    assert kill.restarted - kill.actors_gone >= loop.restart_sec - 0.05
    assert loop.events[-1].kind == "started" and loop.restarts >= 1

    # The restarted exit watcher closed it: the fills that took it to zero are hip3's orders (its cloid prefix),
    # for flatten intents of the new exit watcher (its pid is in the intent id, via the executor's journal),
    # sent after the restart, and exactly the held size: not closed twice.
    journal = s.journal()
    for f in kill.fills:
        assert is_hip3_cloid(f.get("cloid")), f
        assert float(f["time"]) / 1000 > kill.restarted, f
        assert journal.get(str(f["cloid"]), "").startswith(f"x{kill.exit_watcher_pid}-"), (f, journal)
    assert abs(sum(float(f["sz"]) for f in kill.fills) - abs(kill.size)) < 1e-12
    # Nothing was sent twice across the death and the restart, and hip3's book is the exchange's.
    assert s.doubled_cloids() == []
    assert s.wait_books_agree(15) == ""
    assert kill.exits_resumed > kill.restarted
    print(f"\nsupervisor death, RestartSec {loop.restart_sec:g} s: {kill.figures()} (s after the kill)")

"""The hard-stop latch file cannot be written during a paper session (real processes, the simulator).

Before the fix the supervisor died on the OSError: every actor stopped with the positions open at the
exchange, the operator's ``hardstop`` said "did not answer", and the next start traded again. Now: the
latch holds in memory, every actor gets it, the executor flattens the account, the operator is told in one
line, the write is retried until it sticks, and a start on a file it cannot write is refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from hip3.runtime.hardstop import LATCH_FILE, read_latch
from tests.faults.session import Session, wait_until
from tests.fs_faults import immutable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_latch_that_cannot_be_written_still_flattens_and_is_saved_once_repaired(
        make_session: Callable[..., Session]) -> None:
    s = make_session()
    sup_pid = s.supervisor_pid()
    assert wait_until(lambda: bool(s.sim_positions()), 40, 0.1), "no position opened"
    # A directory where the file should be: the rename that writes the latch fails (EISDIR).
    path = s.run_dir / LATCH_FILE
    path.unlink(missing_ok=True)
    path.mkdir()
    (path / "junk").write_text("x")

    r = s.cli("hardstop", "--reason", "drill")
    line = _one_line(r.stdout)
    assert r.returncode == 1 and "did not answer" not in r.stdout + r.stderr, r
    assert "LATCHED IN MEMORY ONLY" in line and str(path) in line and "Is a directory (EISDIR)" in line, line

    # The supervisor lives on, every actor has the latch, and the executor flattens the account.
    assert s.supervisor_pid() == sup_pid
    assert wait_until(s.flat_after_hardstop, 40, 0.2), (s.status()["hard_stop"], s.sim_positions())
    st = s.status()
    hs = st["hard_stop"]
    assert hs["latched"] and hs["persisted"] is False and "EISDIR" in hs["persist_error"], hs
    assert all(a["hardstop_epoch_acked"] == hs["epoch"] for a in st["actors"]), st["actors"]
    assert any(a["level"] == "critical" and "in memory only" in a["text"] for a in st["alerts"]), st["alerts"]
    assert s.orders_while_latched() == []
    status_text = s.cli("status").stdout
    assert "NOT SAVED" in status_text and "EISDIR" in status_text, status_text

    # Repaired: the supervisor's next retry (at most 10 s apart) writes it.
    shutil.rmtree(path)
    assert wait_until(lambda: s.status()["hard_stop"]["persisted"], 15, 0.2), s.status()["hard_stop"]
    rec = read_latch(path)
    assert rec.latched and rec.reason == "operator: drill" and rec.epoch == hs["epoch"]
    # ... so a restarted supervisor starts latched.
    assert s.cli("stop", timeout=60).returncode == 0
    s.start()
    st = s.status()
    assert st["hard_stop"]["latched"] and st["hard_stop"]["reason"] == "operator: drill"


def test_immutable_latch_file_is_reported_at_stop_and_refuses_the_next_start(
        make_session: Callable[..., Session]) -> None:
    s = make_session()
    path = s.run_dir / LATCH_FILE
    assert path.exists()  # written by the start's check that the latch file can be written
    with immutable(path):
        r = s.cli("hardstop", "--reason", "drill")
        assert r.returncode == 1 and "Operation not permitted (EPERM)" in _one_line(r.stdout), r
        assert wait_until(s.flat_after_hardstop, 30, 0.2), s.status()["hard_stop"]
        # A reset that cannot be written is refused: the latch stays.
        r = s.cli("reset-hardstop")
        assert r.returncode == 2 and "NOT reset" in _one_line(r.stderr), r
        assert s.status()["hard_stop"]["latched"]

        assert s.cli("stop", timeout=60).returncode == 0
        out = (s.run_dir / "logs" / "supervisor.out").read_text()
        assert "HARD STOP NOT SAVED" in out, out[-2000:]
        assert any(e.get("event") == "hardstop_lost_at_stop" for e in s.actor_log("supervisor"))

        # The next start, detached or not, is refused in one line naming the file; nothing starts.
        for args in (("start", "--detach"), ("start",)):
            r = s.cli(*args, timeout=60)
            line = _one_line(r.stderr)
            assert r.returncode == 2 and line.startswith(f"error: cannot write the hard-stop latch {path}: "), r
            assert "Operation not permitted (EPERM)" in line and "does not start" in line, line
            assert s.supervisor_pid() is None and not s.run_dir_processes()

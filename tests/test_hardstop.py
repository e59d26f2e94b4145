"""The durable latch: persisted before broadcast, survives restarts, fails safe on corruption."""

from __future__ import annotations

from pathlib import Path

from hip3.hardstop import LATCH_FILE, Latch


def test_latch_persists_and_keeps_first_reason(run_dir: Path) -> None:
    latch = Latch(run_dir)
    assert not latch.state.latched and latch.state.epoch == 0
    assert latch.latch("first", now_ms=5)
    assert not latch.latch("second")
    again = Latch(run_dir)  # a restarted supervisor
    assert again.state.latched and again.state.reason == "first" and again.state.epoch == 1
    assert again.state.since_ms == 5


def test_only_reset_clears_and_epoch_always_grows(run_dir: Path) -> None:
    latch = Latch(run_dir)
    latch.latch("x")
    assert latch.reset()
    assert not latch.reset()
    assert Latch(run_dir).state.epoch == 2 and not Latch(run_dir).state.latched
    latch.latch("y")
    assert Latch(run_dir).state.epoch == 3


def test_corrupt_latch_file_reads_as_latched(run_dir: Path) -> None:
    (run_dir / LATCH_FILE).write_text("{not json")
    st = Latch.load(run_dir)
    assert st.latched and "unreadable" in (st.reason or "")


def test_latch_file_is_private(run_dir: Path) -> None:
    Latch(run_dir).latch("x")
    assert (run_dir / LATCH_FILE).stat().st_mode & 0o077 == 0

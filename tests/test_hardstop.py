"""The durable latch: persisted before broadcast, survives restarts, fails safe on corruption."""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hip3.runtime import hardstop
from hip3.runtime.hardstop import LATCH_FILE, Latch, LatchFileError, read_latch
from hip3.runtime.hardstop import atomic_write as hardstop_atomic_write
from tests.fs_faults import as_other_user


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


# -------------------------------------------------------------------------------------------------
# The file fails: writes (the latch still holds, in memory) and reads (unknown, never guessed as clear)
# -------------------------------------------------------------------------------------------------


def _failing_write(err: int) -> Callable[[Path, bytes], None]:
    def write(path: Path, data: bytes) -> None:
        raise OSError(err, os.strerror(err))

    return write


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EPERM, errno.EIO, errno.EISDIR])
def test_latch_holds_in_memory_when_the_write_fails(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                    err: int) -> None:
    latch = Latch(run_dir)
    monkeypatch.setattr(hardstop, "atomic_write", _failing_write(err))
    assert latch.latch("disk trouble", now_ms=7)  # no OSError: the latch holds
    assert latch.state.latched and latch.state.epoch == 1 and latch.state.reason == "disk trouble"
    assert not latch.persisted and errno.errorcode[err] in (latch.persist_error or "")
    assert os.strerror(err) in (latch.persist_error or "")
    assert not latch.latch("second")  # still the first reason


def test_a_failed_latch_write_is_retried_with_backoff_until_it_sticks(run_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    latch = Latch(run_dir)
    calls: list[int] = []

    def write(path: Path, data: bytes) -> None:
        calls.append(len(data))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hardstop, "atomic_write", write)
    latch.latch("x")
    assert len(calls) == 1
    t = 1_000_000_000
    assert latch.retry(t) is None  # schedules the first retry
    assert latch.retry(t + hardstop.RETRY_BASE_NS - 1) is None and len(calls) == 1
    assert latch.retry(t + hardstop.RETRY_BASE_NS) is False and len(calls) == 2
    # The delay doubles, up to the maximum.
    due = t + hardstop.RETRY_BASE_NS
    delays = []
    for _ in range(12):
        before = len(calls)
        step = 1_000_000
        now = due
        while latch.retry(now) is None:
            now += step
        assert len(calls) == before + 1
        delays.append(now - due)
        due = now
    assert delays[0] >= 2 * hardstop.RETRY_BASE_NS - 1_000_000
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert max(delays) <= hardstop.RETRY_MAX_NS + 1_000_000 and delays[-1] >= hardstop.RETRY_MAX_NS
    assert latch.failed_writes == 14
    # The disk is back: the next due retry writes the latched state, and a restart sees it.
    monkeypatch.setattr(hardstop, "atomic_write", hardstop_atomic_write)
    while (wrote := latch.retry(now)) is None:
        now += 1_000_000
    assert wrote is True and latch.persisted and latch.failed_writes == 0
    again = Latch(run_dir)
    assert again.state.latched and again.state.reason == "x" and again.state.epoch == 1


def test_a_reset_that_cannot_be_written_is_refused_and_the_latch_stays(run_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    latch = Latch(run_dir)
    latch.latch("x")
    monkeypatch.setattr(hardstop, "atomic_write", _failing_write(errno.EROFS))
    with pytest.raises(LatchFileError, match=r"NOT reset.*Read-only file system") as exc:
        latch.reset()
    assert str(latch.path) in str(exc.value) and "\n" not in str(exc.value)
    assert latch.state.latched and latch.state.epoch == 1
    monkeypatch.setattr(hardstop, "atomic_write", hardstop_atomic_write)
    assert latch.reset() and not Latch(run_dir).state.latched


def test_check_writable_refuses_a_latch_file_that_cannot_be_written(run_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    Latch(run_dir).check_writable()  # a fine directory: writes the clear state
    assert (run_dir / LATCH_FILE).exists()
    monkeypatch.setattr(hardstop, "atomic_write", _failing_write(errno.ENOSPC))
    with pytest.raises(LatchFileError, match=r"cannot write the hard-stop latch .*No space left on device \(ENOSPC\)"):
        Latch(run_dir).check_writable()


def _unreadable_cases(run_dir: Path) -> dict[str, Callable[[], None]]:
    path = run_dir / LATCH_FILE
    return {
        "directory": lambda: path.mkdir(),
        "garbage": lambda: path.write_bytes(b"\xff\xfe not json"),
        "not an object": lambda: path.write_text("[1, 2]"),
        "wrong type": lambda: path.write_text('{"latched": 1, "epoch": 3}'),
        "negative epoch": lambda: path.write_text('{"latched": false, "epoch": -5}'),
        "fifo": lambda: os.mkfifo(path),
        "huge": lambda: path.write_text('{"reason": "' + "x" * 100_000 + '"}'),
    }


@pytest.mark.parametrize("case", list(_unreadable_cases(Path("/nonexistent"))))
def test_an_unreadable_latch_file_is_one_clear_error_and_never_read_as_clear(run_dir: Path, case: str) -> None:
    _unreadable_cases(run_dir)[case]()
    path = run_dir / LATCH_FILE
    with pytest.raises(LatchFileError) as exc:
        read_latch(path)
    line = str(exc.value)
    assert line.startswith(f"unreadable hard-stop latch {path}: ") and "\n" not in line and len(line) < 300
    with pytest.raises(LatchFileError):
        Latch(run_dir)  # the supervisor's constructor: refuses
    # An actor assumes latched, with an epoch below any the supervisor broadcasts (so it is replaced).
    rec = Latch.load(run_dir)
    assert rec.latched and rec.epoch == -1 and rec.reason == line


def test_a_latch_file_without_read_permission_is_unreadable_for_its_user(run_dir: Path) -> None:
    """Root reads any file, so the read runs as another uid (a forked child: skipped unless root)."""
    os.chmod(run_dir, 0o755)
    path = run_dir / LATCH_FILE
    Latch(run_dir).latch("x")
    os.chmod(path, 0o600)  # root's, not readable by the other uid
    with pytest.raises(LatchFileError, match=r"Permission denied \(EACCES\)"):
        as_other_user(lambda: read_latch(path))
    rec = as_other_user(lambda: Latch.load(run_dir))
    assert rec.latched and rec.epoch == -1 and "Permission denied" in (rec.reason or "")


def test_atomic_write_leaves_no_temporary_file_when_the_rename_fails(run_dir: Path) -> None:
    (run_dir / LATCH_FILE).mkdir()  # os.replace(file, directory) fails
    with pytest.raises(OSError):
        hardstop_atomic_write(run_dir / LATCH_FILE, b"{}")
    assert [p.name for p in run_dir.iterdir()] == [LATCH_FILE]

"""The executor's two files on a full disk: the nonce ceiling (``NonceManager``) and the sent-intent journal
(``SentIntentJournal``). Before the fix both raised an ``OSError`` out of the send path once the disk was
full (the nonce ceiling about 2 s into it): the executor crash-looped and could never flatten.

Now an entry is refused (``NonceStorageError``, ``JournalWriteError``) while a reduce-only order or a cancel
still gets its nonce and leaves, its journal line kept until the disk takes it; ``storage_problem`` and
``problem`` say why in one line; a write that succeeds again clears them. Real ENOSPC from a small tmpfs
(skipped with its reason where one cannot be mounted) and monkeypatched errors for the others.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hip3.execution.journal import FILE_NAME, JournalWriteError, SentIntentJournal
from hip3.hyperliquid.nonce import NonceManager, NonceStorageError
from tests.fs_faults import full_tmpfs

T0 = 1_769_594_065_700


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None], Callable[[], None]]]:
    """(directory on a 256 KiB tmpfs, fill it to ENOSPC, free it again)."""
    where = tmp_path / "run"
    with full_tmpfs(where) as fill:
        def free() -> None:
            for p in where.glob(".filler*"):
                p.unlink()
        yield where, fill, free


# ---------------------------------------------------------------------------------------------- nonces


def test_full_disk_past_the_ceiling_flattens_sign_and_entries_are_refused(
        disk: tuple[Path, Callable[[], None], Callable[[], None]]) -> None:
    where, fill, free = disk
    nm = NonceManager(where / "nonce", reserve_ms=2000)
    first = nm.next(T0)
    fill()
    assert nm.next(T0 + 1000) == T0 + 1000  # under the persisted ceiling: nothing to write
    # Past the ceiling (2 s into the full disk): an entry's nonce needs the new ceiling on disk...
    with pytest.raises(NonceStorageError, match=r"cannot write the nonce ceiling .*nonce: .*\(ENOSPC\)"):
        nm.next(T0 + 2500)
    assert nm.storage_problem is not None and "ENOSPC" in nm.storage_problem
    # ...a flatten's does not: strictly increasing all the same, in memory.
    flat = [nm.next(T0 + 2500, durable=False) for _ in range(3)]
    assert flat == [T0 + 2500, T0 + 2501, T0 + 2502] and first < flat[0]
    assert not nm.reserve_ahead(T0 + 2600)  # never raises; still refused
    assert nm.storage_problem is not None
    with pytest.raises(NonceStorageError):
        nm.next(T0 + 2600)
    free()
    assert nm.reserve_ahead(T0 + 2600)  # the disk takes it again: the problem is gone
    assert nm.storage_problem is None
    assert nm.next(T0 + 2700) == T0 + 2700
    nm.close()
    # A restart starts above every nonce handed out, the in-memory ones included.
    with NonceManager(where / "nonce") as again:
        assert again.next(T0) > T0 + 2700


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT])
def test_any_write_error_of_the_ceiling_is_kept_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          err: int) -> None:
    nm = NonceManager(tmp_path / "nonce", reserve_ms=10)
    nm.next(T0)
    real = os.fsync

    def failing(fd: int) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "fsync", failing)
    assert nm.next(T0 + 50, durable=False) == T0 + 50
    assert nm.storage_problem is not None and errno.errorcode[err] in nm.storage_problem
    with pytest.raises(NonceStorageError):
        nm.next(T0 + 100)
    monkeypatch.setattr(os, "fsync", real)
    assert nm.reserve_ahead(T0 + 100) and nm.storage_problem is None
    assert nm.next(T0 + 100) == T0 + 100
    nm.close()


# --------------------------------------------------------------------------------------------- journal


def _lines(directory: Path) -> list[str]:
    return (directory / FILE_NAME).read_text().splitlines()


def test_full_disk_refuses_an_entry_keeps_a_flatten_and_never_tears_the_file(
        disk: tuple[Path, Callable[[], None], Callable[[], None]]) -> None:
    where, fill, free = disk
    j = SentIntentJournal(where, now_ms=T0, retention_ms=600_000)
    j.record([("e1", "0x01")], T0)
    fill()
    # The file's last page still has room; then an entry line the disk refuses: raised, the id forgotten
    # (it is not sent), nothing torn.
    cloid = "0x" + "ab" * 32
    written = ["e1"]
    for i in range(2, 200):
        try:
            j.record([(f"e{i}", cloid)], T0, sync=False)
        except JournalWriteError as e:
            assert "cannot write the sent-intent journal" in str(e) and "(ENOSPC)" in str(e)
            refused = f"e{i}"
            break
        written.append(f"e{i}")
    else:
        pytest.fail("the full disk took every line")
    assert refused not in j and j.problem is not None
    # A flatten's line: not raised (the flatten leaves), kept for later.
    j.record([("f1", "0x03")], T0, sync=False, required=False)
    assert "f1" in j and j.problem is not None
    assert not j.retry()
    j.sync()  # nothing pending to fsync: never raises
    assert [line.split()[1] for line in _lines(where)] == written  # the refused writes were cut back off
    free()
    assert j.retry() and j.problem is None
    j.close()
    assert [line.split()[1] for line in _lines(where)] == [*written, "f1"]
    again = SentIntentJournal(where, now_ms=T0, retention_ms=600_000)
    assert "f1" in again and all(i in again for i in written) and refused not in again
    again.close()


def test_a_waiting_flatten_line_goes_out_with_the_next_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    j = SentIntentJournal(tmp_path, now_ms=T0, retention_ms=600_000)
    real = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    j.record([("f1", "0x01")], T0, required=False)
    with pytest.raises(JournalWriteError):
        j.record([("e1", "0x02")], T0)
    monkeypatch.setattr(os, "write", real)
    j.record([("e3", "0x03")], T0)
    assert j.problem is None
    assert _lines(tmp_path) == [f"{T0} f1 0x01", f"{T0} e3 0x03"]
    j.close()


def test_a_failed_fsync_is_kept_in_problem_and_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = SentIntentJournal(tmp_path, now_ms=T0, retention_ms=600_000)
    j.record([("e1", "0x01")], T0, sync=False)
    real = os.fsync

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    j.sync()  # must not raise out of the executor's timer
    assert j.problem is not None and "EIO" in j.problem
    monkeypatch.setattr(os, "fsync", real)
    assert j.retry() and j.problem is None
    j.close()
    assert _lines(tmp_path)[0] == f"{T0} e1 0x01"

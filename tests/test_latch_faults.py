"""The supervisor core when its latch file cannot be written, with real failures (root: a directory where
the file should be, ``chattr +i``, a read-only bind mount, a full tmpfs; each skips with its reason where
the machine cannot produce it).

Before the fix the supervisor raised the OSError out of its loop: every actor stopped, nothing was
flattened, and the next start traded again. Now the latch holds in memory: broadcast, an alert, the
operator told, the write retried with backoff until it sticks; a reset is refused; a new supervisor on the
broken file refuses to start. The end-to-end version (real processes, the account flattened at the
exchange) is ``tests/faults/test_latch_unwritable.py``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import pytest

from hip3.runtime.hardstop import LATCH_FILE, LatchFileError, read_latch
from tests.fs_faults import full_tmpfs, immutable, readonly_bind
from tests.supervisor_harness import Core

ACTORS = ("feed", "executor")


def _directory(run_dir: Path, stack: ExitStack) -> Callable[[], AbstractContextManager[None]]:
    @contextlib.contextmanager
    def broken() -> Iterator[None]:
        path = run_dir / LATCH_FILE
        path.unlink()
        path.mkdir()
        (path / "x").write_text("keeps rmdir away")  # a non-empty directory: os.replace cannot take it
        try:
            yield
        finally:
            shutil.rmtree(path)

    return broken


def _immutable(run_dir: Path, stack: ExitStack) -> Callable[[], AbstractContextManager[None]]:
    return lambda: immutable(run_dir / LATCH_FILE)


def _readonly(run_dir: Path, stack: ExitStack) -> Callable[[], AbstractContextManager[None]]:
    return lambda: readonly_bind(run_dir)


def _full(run_dir: Path, stack: ExitStack) -> Callable[[], AbstractContextManager[None]]:
    fill = stack.enter_context(full_tmpfs(run_dir))

    @contextlib.contextmanager
    def broken() -> Iterator[None]:
        fill()
        try:
            yield
        finally:
            for p in run_dir.glob(".filler*"):
                p.unlink()

    return broken


CASES: dict[str, tuple[Callable[[Path, ExitStack], Callable[[], AbstractContextManager[None]]], str]] = {
    "directory": (_directory, "EISDIR"),
    "immutable": (_immutable, "EPERM"),
    "read-only": (_readonly, "EROFS"),
    "full disk": (_full, "ENOSPC"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unwritable_latch_still_latches_broadcasts_alerts_and_is_retried(run_dir: Path, case: str) -> None:
    make_breaker, errno_name = CASES[case]
    with ExitStack() as stack:
        where = run_dir / "run"
        where.mkdir()
        breaker = make_breaker(where, stack)  # a tmpfs is mounted before the supervisor starts on it
        core = Core(where, ACTORS)
        stack.callback(core.close)
        core.start_all()
        core.broadcast_states()
        assert (where / LATCH_FILE).exists()  # the start check wrote the clear state

        with breaker():
            reply = core.ask({"cmd": "hardstop", "reason": "drill"})
            hs = reply["hard_stop"]
            # Latched and answered, not "did not answer": in memory, with the reason it is not on disk.
            assert reply["ok"] and reply["changed"] and hs["latched"] and hs["epoch"] == 1
            assert hs["persisted"] is False and errno_name in hs["persist_error"], hs
            assert hs["path"] == str(where / LATCH_FILE)
            states = core.broadcast_states()
            assert states and states[-1].latched and states[-1].epoch == 1  # every actor is told: flatten
            st = core.sup.status()
            assert st["hard_stop"]["latched"] and not st["hard_stop"]["persisted"]
            assert any(a["level"] == "critical" and "in memory only" in a["text"] and errno_name in a["text"]
                       for a in st["alerts"])
            # Retried with backoff while broken: the loop keeps running, and a reset is refused.
            for _ in range(20):
                core.clock.advance_ms(100)
                core.heartbeat(*ACTORS)
                core.step()
            assert core.sup.latch.failed_writes >= 3 and not core.sup.latch.persisted
            refused = core.ask({"cmd": "reset-hardstop"})
            assert not refused["ok"] and "NOT reset" in refused["error"] and errno_name in refused["error"]
            assert core.sup.latch.state.latched
            # A later start on this run directory is refused while the file stays broken.
            with pytest.raises(LatchFileError) as exc:
                Core(where, ACTORS)
            assert str(where / LATCH_FILE) in str(exc.value)
            assert core.kills() == []  # no actor paid for it

        # Repaired: the next due retry writes the latch, and a restart would find it.
        for _ in range(200):
            core.clock.advance_ms(100)
            core.heartbeat(*ACTORS)
            core.step()
            if core.sup.latch.persisted:
                break
        assert core.sup.latch.persisted, core.sup.latch.persist_error
        rec = read_latch(where / LATCH_FILE)
        assert rec.latched and rec.reason == "operator: drill" and rec.epoch == 1
        assert any("now written" in a["text"] for a in core.sup.status()["alerts"])

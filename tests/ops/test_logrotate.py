"""hip3.ops.logrotate: size rotation by one rename, nothing lost or repeated, the oldest files pruned."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT
from hip3.ops import logrotate
from hip3.ops.logrotate import RotatingLineHandler, ensure_spare, prune, prune_dir, rotated_files, spare_path
from hip3.runtime.logs import _JsonFormatter
from hip3.ui.logtail import LogTail


def _record(i: int, level: int = logging.WARNING, pad: int = 0) -> logging.LogRecord:
    rec = logging.LogRecord("hip3.feed", level, __file__, 1, f"e{i}", None, None)
    rec.fields = {"i": i, "pad": "x" * pad}
    rec.actor = "feed"
    return rec


def _handler(path: Path, max_bytes: int, keep: int = 0) -> RotatingLineHandler:
    h = RotatingLineHandler(path, max_bytes, keep)
    h.setFormatter(_JsonFormatter())
    return h


def _all_lines(path: Path) -> list[dict[str, object]]:
    """Every line of the log, rotated copies first (oldest first), then the current file."""
    out = []
    for p in [*rotated_files(path), path]:
        out.extend(json.loads(line) for line in p.read_text().splitlines())
    return out


@pytest.fixture
def log_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "feed.log"


def test_rotates_at_the_size_into_numbered_files_oldest_first(log_path: Path) -> None:
    h = _handler(log_path, max_bytes=1000)
    for i in range(100):
        h.emit(_record(i, pad=20))
    h.close()
    rotated = rotated_files(log_path)
    assert [p.name for p in rotated[:3]] == ["feed.log.000001", "feed.log.000002", "feed.log.000003"]
    assert h.rotations == len(rotated) >= 5
    for p in [*rotated, log_path]:
        assert 0 < p.stat().st_size <= 1000, p  # never past the size, and never an empty file rotated
    # Every line once, in order, each whole (a line is never split between two files).
    assert [r["i"] for r in _all_lines(log_path)] == list(range(100))


def test_a_restarted_writer_continues_the_numbering_and_the_file(log_path: Path) -> None:
    h = _handler(log_path, max_bytes=500)
    for i in range(30):
        h.emit(_record(i))
    h.close()
    before = rotated_files(log_path)
    h = _handler(log_path, max_bytes=500)  # a restarted actor: appends, numbers after the last
    for i in range(30, 60):
        h.emit(_record(i))
    h.close()
    after = rotated_files(log_path)
    assert after[: len(before)] == before and len(after) > len(before)
    assert [r["i"] for r in _all_lines(log_path)] == list(range(60))


class _Calls:
    """Every file-system call the handler makes (os.*, and its no-replace rename), with os.open's flags."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("write", "rename", "stat", "fstat", "lstat", "listdir", "unlink", "open", "close"):
            real = getattr(os, name)

            def wrapped(*a: object, _real: object = real, _name: str = name, **k: object) -> object:
                if _name == "open":
                    self.calls.append("create" if int(a[1]) & os.O_CREAT else "open")  # type: ignore[call-overload]
                else:
                    self.calls.append(_name)
                return _real(*a, **k)  # type: ignore[operator]

            monkeypatch.setattr(logrotate.os, name, wrapped)
        real_nr = logrotate.rename_noreplace

        def noreplace(src: Path, dst: Path) -> None:
            self.calls.append("rename")
            real_nr(src, dst)

        monkeypatch.setattr(logrotate, "rename_noreplace", noreplace)


def test_a_line_costs_one_write_and_a_rotation_two_renames(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path's cost: no stat, tell or listing per line (the stdlib's RotatingFileHandler stats the path
    and formats each record twice); a rotation renames the file aside and the spare into place, opens it
    (an existing file: nothing is created) and deletes nothing. Without a spare it creates the file."""
    h = _handler(log_path, max_bytes=2000)
    for i in range(3):
        h.emit(_record(i))
    calls = _Calls(monkeypatch)
    h.emit(_record(3))
    assert calls.calls == ["write"]
    while h.rotations == 0:
        calls.calls.clear()
        h.emit(_record(4, pad=300))
    assert calls.calls == ["rename", "rename", "open", "close", "write"]
    # The next rotation, before the supervisor made a new spare: the file is created on the spot.
    while h.rotations == 1:
        calls.calls.clear()
        h.emit(_record(5, pad=300))
    assert calls.calls == ["rename", "rename", "create", "fstat", "close", "write"]
    monkeypatch.undo()
    assert ensure_spare(log_path) and spare_path(log_path).exists()  # the supervisor's housekeeping
    while h.rotations == 2:
        h.emit(_record(6, pad=300))
    assert not spare_path(log_path).exists()  # it became the log
    h.close()
    assert [r["i"] for r in _all_lines(log_path)][:4] == [0, 1, 2, 3]


def test_the_oldest_files_are_pruned_off_the_writer_and_at_open(tmp_path: Path) -> None:
    log = tmp_path / "feed.log"
    h = _handler(log, max_bytes=300, keep=3)
    for i in range(60):
        h.emit(_record(i))
    assert len(rotated_files(log)) > 3  # the writer itself deletes nothing
    other = tmp_path / "executor.log"
    for n in range(1, 6):
        (tmp_path / f"executor.log.{n:06d}").write_text(f"{n}\n")
    newest = rotated_files(log)[-3:]
    removed = prune_dir(tmp_path, keep=3)
    assert rotated_files(log) == newest
    assert [p.name for p in rotated_files(other)] == ["executor.log.000003", "executor.log.000004",
                                                      "executor.log.000005"]
    assert len(removed) >= 2 + 1
    h.close()
    # A process opening its log prunes what an earlier one left (an actor run alone has no supervisor).
    for n in range(6, 12):
        (tmp_path / f"executor.log.{n:06d}").write_text(f"{n}\n")
    _handler(other, max_bytes=300, keep=2).close()
    assert [p.name for p in rotated_files(other)] == ["executor.log.000010", "executor.log.000011"]
    assert prune(other, 2) == []


def test_a_failed_rename_keeps_every_line_and_retries_later(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = _handler(log_path, max_bytes=400)

    def refuse(*_a: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(logrotate, "rename_noreplace", refuse)
    i = 0
    while h.rotate_errors == 0 and i < 1000:
        h.emit(_record(i))
        i += 1
    for _ in range(3):  # not tried again on every line: after another max_bytes
        h.emit(_record(i))
        i += 1
    assert h.rotate_errors == 1 and h.rotations == 0
    monkeypatch.undo()
    for j in range(i, 30):
        h.emit(_record(j))
    h.close()
    assert h.rotations >= 1
    assert [r["i"] for r in _all_lines(log_path)] == list(range(30))


def test_never_renames_over_or_away_a_file_it_does_not_own(log_path: Path) -> None:
    h = _handler(log_path, max_bytes=400)
    # A file with the next number appeared meanwhile (another writer rotated): it is kept as it is.
    (log_path.parent / "feed.log.000001").write_text("someone else's\n")
    for i in range(12):
        h.emit(_record(i))
    assert (log_path.parent / "feed.log.000001").read_text() == "someone else's\n"
    assert (log_path.parent / "feed.log.000002").exists()
    # The path was moved by someone else and a file put there: this handler's lines stay in its own file until
    # it rotates; then that file is moved aside (not replaced) and the spare takes the path. Nothing is lost.
    os.rename(log_path, log_path.parent / "elsewhere.log")
    log_path.write_text("someone else's\n")
    n_rotated = len(rotated_files(log_path))
    for i in range(12, 30):
        h.emit(_record(i))
    h.close()
    lines = [json.loads(x)["i"] for x in (log_path.parent / "elsewhere.log").read_text().splitlines()]
    assert lines == sorted(lines) and lines[-1] < 30
    assert len(rotated_files(log_path)) > n_rotated
    assert any(p.read_text() == "someone else's\n" for p in rotated_files(log_path))
    later = [json.loads(x)["i"] for p in [*rotated_files(log_path), log_path] for x in p.read_text().splitlines()
             if x.startswith("{")]
    assert sorted(lines + later) == list(range(30))  # every line once, across all the files


@pytest.mark.parametrize("native", [True, False])
def test_rename_noreplace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    if not native:
        monkeypatch.setattr(logrotate, "_RENAMEAT2", None)  # a C library without renameat2: check, then rename
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        logrotate.rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a").read_text() == "a" and (tmp_path / "b").read_text() == "b"
    with pytest.raises(FileNotFoundError):
        logrotate.rename_noreplace(tmp_path / "absent", tmp_path / "c")
    logrotate.rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()


WRITER = textwrap.dedent("""
    import logging, sys
    from pathlib import Path
    from hip3.runtime.logs import _JsonFormatter
    from hip3.ops.logrotate import RotatingLineHandler
    h = RotatingLineHandler(Path(sys.argv[1]), int(sys.argv[2]), 0)
    h.setFormatter(_JsonFormatter())
    log = logging.getLogger("hip3.writer")
    log.addHandler(h)
    log.propagate = False
    for i in range(int(sys.argv[3])):
        log.warning("w", extra={"fields": {"i": i}, "actor": "feed"})
    print(h.rotations)
""")


def test_a_follower_sees_every_line_once_while_the_writer_rotates(tmp_path: Path) -> None:
    """The console follows an actor's file while the actor writes and rotates it as fast as it can (another
    process): every line reaches the follower once, in order, and every line is on disk once."""
    n = 20_000
    log = tmp_path / "feed.log"
    log.write_text("")
    tail = LogTail(tmp_path, max_bytes=64 * 1024)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(log), "20000", str(n)], cwd=str(REPO_ROOT),
                            stdout=subprocess.PIPE, text=True)
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (proc.poll() is None or len(seen) < n):
        got = tail.poll()
        seen.extend(int(r["i"]) for r in got)
        if not got:
            time.sleep(0.001)
    out, _ = proc.communicate(timeout=30)
    assert int(out) >= 50  # it did rotate, many times, while being followed
    assert seen == list(range(n))
    assert [r["i"] for r in _all_lines(log)] == list(range(n))

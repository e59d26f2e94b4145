"""hip3.ui.logtail: the actors' new warnings, from the end of their files, across rotation."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hip3.ui.logtail import LogTail


def _line(event: str, level: str = "warning") -> str:
    return json.dumps({"ts": 1.0, "level": level, "actor": "x", "event": event}) + "\n"


def test_new_warnings_only_partial_lines_wait_and_rotation_restarts(tmp_path: Path) -> None:
    (tmp_path / "feed.log").write_text(_line("before the start"))
    (tmp_path / "supervisor.log").write_text("")
    tail = LogTail(tmp_path)
    assert tail.poll() == []
    with open(tmp_path / "feed.log", "a") as f:
        f.write(_line("quiet", "info") + _line("stale market") + "not json\n" + _line("half")[:20])
    with open(tmp_path / "supervisor.log", "a") as f:
        f.write(_line("the supervisor's own: the console has it already"))
    (tmp_path / "executor.log").write_text(_line("a new actor's file is read from its start", "error"))
    got = tail.poll()
    assert [(r["proc"], r["event"]) for r in got] == [
        ("executor", "a new actor's file is read from its start"), ("feed", "stale market")]
    with open(tmp_path / "feed.log", "a") as f:
        f.write(_line("half")[20:])
    assert [r["event"] for r in tail.poll()] == ["half"]
    # Rotation: the file is renamed and a new one starts.
    os.rename(tmp_path / "feed.log", tmp_path / "feed.log.1")
    (tmp_path / "feed.log").write_text(_line("after rotation", "critical"))
    assert [r["event"] for r in tail.poll()] == ["after rotation"]
    # Truncation in place.
    (tmp_path / "feed.log").write_text(_line("truncated"))
    assert [r["event"] for r in tail.poll()] == ["truncated"]


def test_a_burst_is_read_in_bounded_steps(tmp_path: Path) -> None:
    (tmp_path / "feed.log").write_text("")
    tail = LogTail(tmp_path, max_bytes=4096)
    with open(tmp_path / "feed.log", "a") as f:
        for i in range(200):
            f.write(_line(f"w{i}"))
    first = tail.poll()
    assert 0 < len(first) < 200
    rest: list[str] = []
    while len(first) + len(rest) < 200:
        got = tail.poll()
        assert got
        rest.extend(r["event"] for r in got)
    assert [r["event"] for r in first] + rest == [f"w{i}" for i in range(200)]


def test_lines_written_just_before_a_rotation_are_not_lost(tmp_path: Path) -> None:
    """The actor wrote to its file after the console's last read, then rotated it (hip3.ops.logrotate: one
    rename, then a new file): the renamed file's unread end comes first, then the new file, each line once.
    Before, the new file was read from its start and the old file's end was lost."""
    (tmp_path / "feed.log").write_text(_line("old"))
    tail = LogTail(tmp_path)
    with open(tmp_path / "feed.log", "a") as f:
        f.write(_line("a") + _line("b"))
    os.rename(tmp_path / "feed.log", tmp_path / "feed.log.000001")
    with open(tmp_path / "feed.log.000001", "a") as f:  # a writer still on the old file (its last line)
        f.write(_line("c"))
    (tmp_path / "feed.log").write_text(_line("d"))
    assert [r["event"] for r in tail.poll()] == ["a", "b", "c", "d"]
    # Two rotations between reads: both renamed files are finished, in order.
    with open(tmp_path / "feed.log", "a") as f:
        f.write(_line("e"))
    os.rename(tmp_path / "feed.log", tmp_path / "feed.log.000002")
    (tmp_path / "feed.log").write_text(_line("f"))
    os.rename(tmp_path / "feed.log", tmp_path / "feed.log.000003")
    (tmp_path / "feed.log").write_text(_line("g"))
    assert [r["event"] for r in tail.poll()] == ["e", "f", "g"]
    assert tail.poll() == []
    # The renamed file was already deleted (pruned): what remains is read from the new file's start.
    with open(tmp_path / "feed.log", "a") as f:
        f.write(_line("lost with its file"))
    os.rename(tmp_path / "feed.log", tmp_path / "feed.log.000004")
    os.unlink(tmp_path / "feed.log.000004")
    (tmp_path / "feed.log").write_text(_line("h"))
    assert [r["event"] for r in tail.poll()] == ["h"]


def test_a_rotated_backlog_is_read_in_bounded_steps_in_order(tmp_path: Path) -> None:
    (tmp_path / "feed.log").write_text("")
    tail = LogTail(tmp_path, max_bytes=2048)
    n = 0
    for part in range(1, 4):
        with open(tmp_path / "feed.log", "a") as f:
            for _ in range(50):
                f.write(_line(f"w{n}"))
                n += 1
        os.rename(tmp_path / "feed.log", tmp_path / f"feed.log.{part:06d}")
        (tmp_path / "feed.log").write_text("")
    got: list[str] = []
    for _ in range(100):
        batch = tail.poll()
        if not batch:
            break
        assert len(batch) < 50
        got.extend(r["event"] for r in batch)
    assert got == [f"w{i}" for i in range(n)]

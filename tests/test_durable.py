"""The one atomic durable write (``hip3.runtime.durable.atomic_write``): content, fsyncs, clean failure."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from hip3.runtime.durable import atomic_write


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    real = os.fsync
    calls: list[int] = []

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_replaces_the_content_private_by_default(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old content, longer than the new one")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "cache.json", b"{}", mode=0o666)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cache.json").stat().st_mode) == 0o644


@pytest.mark.parametrize(("kwargs", "fsyncs"), [({}, 2), ({"sync_dir": False}, 1), ({"fsync": False}, 0),
                                                 ({"fsync": False, "sync_dir": True}, 0)])
def test_fsyncs_the_file_then_the_directory_unless_told_not_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, bool], fsyncs: int) -> None:
    calls = _count_fsyncs(monkeypatch)
    atomic_write(tmp_path / "f", b"x", **kwargs)
    assert len(calls) == fsyncs
    assert (tmp_path / "f").read_bytes() == b"x"


def test_a_short_write_is_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write

    def three_bytes(fd: int, data: bytes) -> int:
        return real(fd, bytes(data[:3]))

    monkeypatch.setattr(os, "write", three_bytes)
    atomic_write(tmp_path / "f", b"0123456789")
    assert (tmp_path / "f").read_bytes() == b"0123456789"


def test_a_failed_fsync_raises_and_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nonce"
    path.write_bytes(b"100\n")

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(OSError) as info:
        atomic_write(path, b"200\n")
    assert info.value.errno == errno.EIO
    assert path.read_bytes() == b"100\n"
    assert [p.name for p in tmp_path.iterdir()] == ["nonce"]


def test_a_refused_rename_raises_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "latch").mkdir()  # os.replace(file, directory) fails
    with pytest.raises(OSError):
        atomic_write(tmp_path / "latch", b"{}", fsync=False)
    assert [p.name for p in tmp_path.iterdir()] == ["latch"]

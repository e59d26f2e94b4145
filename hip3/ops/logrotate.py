"""The JSON log files, rotated by size without slowing the process that writes them.

Each process appends to ``<run_dir>/logs/<actor>.log``. The executor, the feed and the exit watcher write
there from their hot loops, so the writer's side is kept to what a plain append costs:

* **One ``write(2)`` per line**, on a file opened ``O_APPEND`` (as ``logging.FileHandler`` plus its flush
  did), with the file's size counted in memory: no ``stat``, ``tell`` or second formatting per line (the
  standard ``RotatingFileHandler`` stats the path and formats every record twice).
* **Rotation is two renames.** When the next line would take the file past ``max_bytes``, the file is
  renamed to ``<actor>.log.<n>`` (``n`` one more than the highest there, six digits, so the names sort
  oldest first) and a spare, an empty file made beforehand (``.<actor>.log.spare``), is renamed into its
  place and opened (an existing file opens in a few microseconds; creating one costs a directory update
  measured here at about 150 us against 11 us for a rename: ``python -m bench.logrotate``). The standard
  scheme renames every older file up by one (``.1`` -> ``.2`` ...), deletes the last and creates the new
  file, all inside the log call that crossed the size.
* **Making spares and deleting the oldest files is not the writer's job.** The supervisor does both from
  its own loop every second (``housekeep``, from ``hip3.ops.service``): a spare for every log, ``keep``
  rotated files per log. Every process makes its log's spare and prunes it once when it opens it (an actor
  run alone, without a supervisor, then creates the file itself at its later rotations).
* **No line is lost or written twice by a rotation**: the line that triggers it goes to the new file,
  whole; a line is never split between two files. Readers that follow the files (the console,
  ``hip3.ui.logtail``) finish the renamed file before they read the new one.
* **Never over another file.** Both renames refuse to replace a file (``renameat2(RENAME_NOREPLACE)``): a
  rotated name taken (by a second writer) moves to the next number, a path that exists again is opened as
  it is. A path gone (deleted) is created again. A rotation that fails (read-only disk) leaves the line in
  the current file and is tried again after another ``max_bytes``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

__all__ = ["RotatingLineHandler", "ensure_spare", "housekeep", "prune", "prune_dir", "rotated_files", "spare_path"]

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_OPEN_EXISTING = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
_SEQ_DIGITS = 6


def _renameat2() -> Callable[[bytes, bytes], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int

    def call(src: bytes, dst: bytes) -> int:
        return int(fn(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_NOREPLACE))

    return call


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAMEAT2 = _renameat2()


def rename_noreplace(src: Path, dst: Path) -> None:
    """``rename(2)`` that never replaces ``dst`` (``FileExistsError``): one ``renameat2(RENAME_NOREPLACE)`` where
    the C library and the file system have it, else a check then a rename (racy only against a second writer,
    which hip3 does not have)."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(os.fsencode(src), os.fsencode(dst)) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):  # flags unsupported here: fall back below
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def _rotated_name(path: Path, seq: int) -> Path:
    return path.with_name(f"{path.name}.{seq:0{_SEQ_DIGITS}d}")


def rotated_files(path: Path) -> list[Path]:
    """The rotated copies of the log ``path`` (``<name>.<n>``), oldest first."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)$")
    found: list[tuple[int, Path]] = []
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return []
    for entry in entries:
        m = pattern.match(entry)
        if m:
            found.append((int(m.group(1)), path.parent / entry))
    return [p for _, p in sorted(found)]


def spare_path(path: Path) -> Path:
    """The empty file that becomes ``path`` at its next rotation: ``.<name>.spare`` (not a ``*.log`` that the
    console follows, not a rotated name that ``prune`` counts)."""
    return path.with_name(f".{path.name}.spare")


def ensure_spare(path: Path) -> bool:
    """Create the spare of the log ``path`` if it is missing; False if it cannot be (a full or read-only disk:
    the rotation then creates the file itself)."""
    try:
        os.close(os.open(spare_path(path), _FLAGS | os.O_EXCL, 0o600))
    except FileExistsError:
        return True
    except OSError:
        return False
    return True


def housekeep(logs_dir: Path, keep: int) -> None:
    """Off the writers' path (the supervisor's loop): a spare for every log, the rotated files beyond ``keep``
    deleted."""
    try:
        logs = [logs_dir / n for n in os.listdir(logs_dir) if n.endswith(".log")]
    except OSError:
        return
    for log in logs:
        ensure_spare(log)
    prune_dir(logs_dir, keep)


def prune(path: Path, keep: int) -> list[Path]:
    """Delete the oldest rotated copies of ``path`` beyond ``keep``; returns the deleted paths."""
    removed = []
    for old in rotated_files(path)[:-keep] if keep > 0 else rotated_files(path):
        try:
            old.unlink()
            removed.append(old)
        except FileNotFoundError:
            continue
        except OSError:
            break  # a read-only or unreadable directory: try again next time
    return removed


def prune_dir(logs_dir: Path, keep: int) -> list[Path]:
    """``prune`` every log of ``logs_dir`` (each ``*.log`` with rotated copies, present or not)."""
    try:
        names = os.listdir(logs_dir)
    except OSError:
        return []
    bases = {m.group(1) for n in names if (m := re.match(r"(.+\.log)\.\d+$", n))}
    removed: list[Path] = []
    for base in sorted(bases):
        removed.extend(prune(logs_dir / base, keep))
    return removed


class RotatingLineHandler(logging.Handler):
    """Appends each formatted record as one line; renames the file aside past ``max_bytes`` (0 = never).

    ``rotations`` and ``rotate_errors`` count what happened (tests and ``status`` read them).
    """

    def __init__(self, path: Path, max_bytes: int = 0, keep: int = 0) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        if keep > 0:
            prune(path, keep)  # at open, off any hot path: an actor run alone has no supervisor to do it
        self._fd = os.open(path, _FLAGS, 0o600)
        self._size = os.fstat(self._fd).st_size
        existing = rotated_files(path)
        self._next_seq = int(existing[-1].name.rsplit(".", 1)[1]) + 1 if existing else 1
        self.rotations = 0
        self.rotate_errors = 0
        self._spare = spare_path(path)
        if max_bytes > 0:
            ensure_spare(path)  # for the first rotation (the supervisor makes the next ones)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            view = memoryview(data)
            while view:  # a regular file takes it in one write; a full disk may take part of it
                view = view[os.write(self._fd, view):]
            self._size += len(data)
        except Exception:
            self.handleError(record)

    def _rotate(self) -> None:
        try:
            fd = -1
            while True:
                target = _rotated_name(self.path, self._next_seq)
                try:
                    rename_noreplace(self.path, target)
                except FileExistsError:  # never over a file someone else rotated
                    self._next_seq += 1
                    continue
                except FileNotFoundError:  # the path is gone (deleted, moved): it starts again below
                    break
                self._next_seq += 1
                break
            try:
                rename_noreplace(self._spare, self.path)  # the empty file made beforehand, if there is one
                fd = os.open(self.path, _OPEN_EXISTING)
                size = 0
            except (FileNotFoundError, FileExistsError):  # no spare ready, or the path exists again
                fd = os.open(self.path, _FLAGS, 0o600)
                size = os.fstat(fd).st_size
        except OSError:
            self.rotate_errors += 1
            self._size = 1  # keep writing here; try again after another max_bytes
            return
        os.close(self._fd)
        self._fd = fd
        self._size = size
        self.rotations += 1

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        finally:
            self.release()
            super().close()

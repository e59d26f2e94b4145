"""The JSON log files, rotated by size without slowing the process that writes them.

Each process appends to ``<run_dir>/logs/<actor>.log``. The executor, the feed and the exit watcher write
there from their hot loops, so the writer's side is kept to what a plain append costs:

* **One ``write(2)`` per line**, on a file opened ``O_APPEND`` (as ``logging.FileHandler`` plus its flush
  did), with the file's size counted in memory: no ``stat``, ``tell`` or second formatting per line (the
  standard ``RotatingFileHandler`` stats the path and formats every record twice).
* **Rotation is one rename.** When the next line would take the file past ``max_bytes``, the file is
  renamed to ``<actor>.log.<n>`` (``n`` one more than the highest there, six digits, so the names sort
  oldest first) and a new file is opened. The standard scheme renames every older file up by one
  (``.1`` -> ``.2`` ...) and deletes the last, all inside one log call of the hot path.
* **Deleting the oldest files is not the writer's job.** ``prune`` keeps ``keep`` rotated files per log;
  the supervisor runs it every few seconds from its own loop (``hip3.ops.service``), and every process
  runs it once when it opens its log (an actor run alone, without a supervisor).
* **No line is lost or written twice by a rotation**: the line that triggers it goes to the new file,
  whole; a line is never split between two files. Readers that follow the files (the console,
  ``hip3.ui.logtail``) finish the renamed file before they read the new one.
* **Never over another file.** The rename goes ahead only if the path still is this handler's file (the
  same inode) and the target name is free; otherwise (another process rotated it, or a second writer
  exists) the handler just opens the path again. A rename that fails (read-only disk) leaves the line in
  the current file and is tried again after another ``max_bytes``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

__all__ = ["RotatingLineHandler", "prune", "prune_dir", "rotated_files"]

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_SEQ_DIGITS = 6


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
            mine = os.fstat(self._fd)
            try:
                there = os.stat(self.path)
                ours = (there.st_ino, there.st_dev) == (mine.st_ino, mine.st_dev)
            except FileNotFoundError:
                ours = False
            if ours:
                target = _rotated_name(self.path, self._next_seq)
                while os.path.lexists(target):  # never over a file someone else rotated
                    self._next_seq += 1
                    target = _rotated_name(self.path, self._next_seq)
                os.rename(self.path, target)
                self._next_seq += 1
            fd = os.open(self.path, _FLAGS, 0o600)
        except OSError:
            self.rotate_errors += 1
            self._size = 1  # keep writing here; try again after another max_bytes
            return
        os.close(self._fd)
        self._fd = fd
        self._size = os.fstat(fd).st_size
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

"""Follows the actors' JSON log files for the console: their warnings, errors and critical lines.

The actors never write to the terminal in console mode (a paused or slow terminal would block a
hot-path actor's ``write``); their log files are the record, and this reads the new lines of each
``<run_dir>/logs/<actor>.log`` from the console's own thread. Costs the actors nothing.

* Starts at the end of the files that exist (an earlier session's lines are not news); a file that
  appears later is read from its start.
* Rotation (``hip3.ops.logrotate``: the file renamed to ``<actor>.log.<n>``, a new one started) loses
  nothing and repeats nothing: the renamed file is found by its inode (and first bytes: a freed inode is
  soon reused) and read to its end (with any file rotated after it), then the new file from its start.
  The position is checked on the file it opened (not on the path, which a rotation may move between a
  ``stat`` and an ``open``). A renamed file already deleted (more rotations than ``keep_files`` between
  two reads) cannot be finished: the new file is read from its start. A file truncated in place is read
  again from its start.
* Bounded work per poll (``max_bytes`` per file); INFO and DEBUG lines are skipped before any JSON is
  decoded; a line that is not a JSON object is ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from hip3.ops.logrotate import rotated_files

__all__ = ["LogTail"]

_QUIET = (b'"level":"info"', b'"level":"debug"')  # hip3's lines (msgspec: no spaces), skipped undecoded
_LOUD = ("warning", "error", "critical")
_DEC = msgspec.json.Decoder()


# A file is known by its inode and its first bytes: an inode freed by a deleted log is soon given to a new
# one, and the first line (its timestamp) tells the two apart.
_HEAD = 128


@dataclass
class _File:
    inode: int
    offset: int
    rest: bytes = b""
    head: bytes = b""


def _head(fh: IO[bytes]) -> bytes:
    return os.pread(fh.fileno(), _HEAD, 0)


class LogTail:
    def __init__(self, logs_dir: Path, skip: frozenset[str] = frozenset({"supervisor"}),
                 max_bytes: int = 256 * 1024) -> None:
        self.dir = logs_dir
        self.skip = skip
        self.max_bytes = max_bytes
        self._files: dict[str, _File] = {}
        for path in self._paths():
            try:
                with open(path, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    self._files[path.name] = _File(st.st_ino, st.st_size, head=_head(fh))
            except OSError:
                continue

    def _paths(self) -> list[Path]:
        try:
            return sorted(p for p in self.dir.glob("*.log") if p.stem not in self.skip)
        except OSError:
            return []

    def poll(self) -> list[dict[str, Any]]:
        """New WARNING-and-above records of every file, each with ``proc`` (the file's actor)."""
        out: list[dict[str, Any]] = []
        for path in self._paths():
            try:
                out.extend(self._read(path))
            except OSError:
                continue
        return out

    def _read(self, path: Path) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with open(path, "rb") as live:
            st = os.fstat(live.fileno())
            head = _head(live)
            f = self._files.get(path.name)
            if f is None:
                f = self._files[path.name] = _File(st.st_ino, 0)
            budget = self.max_bytes
            if f.inode != st.st_ino or not head.startswith(f.head):
                # Rotated since the last read: finish the renamed file, and any rotated after it, first.
                for older in self._after_rotation(path, f):
                    try:
                        with open(older, "rb") as fh:
                            ino = os.fstat(fh.fileno()).st_ino
                            if ino != f.inode:
                                f.inode, f.offset, f.rest = ino, 0, b""
                            f.head = _head(fh)
                            budget -= self._take(fh, f, budget, path.stem, out)
                            if budget <= 0:  # the rest of this file (or more) waits for the next poll
                                return out
                    except OSError:
                        continue
                f.inode, f.offset, f.rest = st.st_ino, 0, b""  # a torn last line of the old file is dropped
            elif st.st_size < f.offset:  # truncated in place
                f.offset, f.rest = 0, b""
            f.head = head
            self._take(live, f, budget, path.stem, out)
        return out

    @staticmethod
    def _after_rotation(path: Path, f: _File) -> list[Path]:
        """The rotated file that ``f`` was reading and every one rotated after it, oldest first; [] if it is
        gone (deleted: the new file is then read from its start)."""
        rotated = rotated_files(path)
        for i, p in enumerate(rotated):
            try:
                if p.stat().st_ino == f.inode:
                    with open(p, "rb") as fh:
                        if _head(fh).startswith(f.head):
                            return rotated[i:]
            except OSError:
                continue
        return []

    def _take(self, fh: IO[bytes], f: _File, budget: int, proc: str, out: list[dict[str, Any]]) -> int:
        """Read up to ``budget`` bytes of ``fh`` from ``f.offset``; the loud records go to ``out``. Returns
        the bytes read."""
        fh.seek(f.offset)
        chunk = fh.read(max(budget, 0))
        f.offset += len(chunk)
        data = f.rest + chunk
        lines = data.split(b"\n")
        f.rest = lines.pop()  # an incomplete last line waits for its end
        if len(f.rest) > self.max_bytes:  # a "line" this long is not one of ours
            f.rest = b""
        for line in lines:
            if not line or any(q in line for q in _QUIET):
                continue
            try:
                rec = _DEC.decode(line)
            except msgspec.DecodeError:
                continue
            if isinstance(rec, dict) and rec.get("level") in _LOUD:
                rec["proc"] = proc
                out.append(rec)
        return len(chunk)

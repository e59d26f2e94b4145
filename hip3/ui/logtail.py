"""Follows the actors' JSON log files for the console: their warnings, errors and critical lines.

The actors never write to the terminal in console mode (a paused or slow terminal would block a
hot-path actor's ``write``); their log files are the record, and this reads the new lines of each
``<run_dir>/logs/<actor>.log`` from the console's own thread. Costs the actors nothing.

* Starts at the end of the files that exist (an earlier session's lines are not news); a file that
  appears later is read from its start.
* A file replaced or truncated (rotation) is read again from its start.
* Bounded work per poll (``max_bytes`` per file); INFO and DEBUG lines are skipped before any JSON is
  decoded; a line that is not a JSON object is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["LogTail"]

_QUIET = (b'"level":"info"', b'"level":"debug"')  # hip3's lines (msgspec: no spaces), skipped undecoded
_LOUD = ("warning", "error", "critical")
_DEC = msgspec.json.Decoder()


@dataclass
class _File:
    inode: int
    offset: int
    rest: bytes = b""


class LogTail:
    def __init__(self, logs_dir: Path, skip: frozenset[str] = frozenset({"supervisor"}),
                 max_bytes: int = 256 * 1024) -> None:
        self.dir = logs_dir
        self.skip = skip
        self.max_bytes = max_bytes
        self._files: dict[str, _File] = {}
        for path in self._paths():
            st = path.stat()
            self._files[path.name] = _File(st.st_ino, st.st_size)

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
        st = path.stat()
        f = self._files.get(path.name)
        if f is None or f.inode != st.st_ino or st.st_size < f.offset:
            f = self._files[path.name] = _File(st.st_ino, 0)
        if st.st_size == f.offset:
            return []
        with open(path, "rb") as fh:
            fh.seek(f.offset)
            data = fh.read(self.max_bytes)
        f.offset += len(data)
        data = f.rest + data
        lines = data.split(b"\n")
        f.rest = lines.pop()  # an incomplete last line waits for its end
        if len(f.rest) > self.max_bytes:  # a "line" this long is not one of ours
            f.rest = b""
        out: list[dict[str, Any]] = []
        for line in lines:
            if not line or any(q in line for q in _QUIET):
                continue
            try:
                rec = _DEC.decode(line)
            except msgspec.DecodeError:
                continue
            if isinstance(rec, dict) and rec.get("level") in _LOUD:
                rec["proc"] = path.stem
                out.append(rec)
        return out

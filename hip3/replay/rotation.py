"""Recordings that rotate, compress, and say what each file covers.

A recording of a long session is one file per part, beside ``feed.record_path`` (``frames.rec`` ->
``frames.00001.rec.zst``, ``frames.00002.rec.zst``, ...) and an index, ``frames.index.jsonl``, listing each
part with what it covers: the receive times of its first and last frame (monotonic and wall), its frame
count, its markets and dex, its sizes, and whether it was closed properly. A part is a whole recording
(magic, header, frames): it can be replayed alone, or all parts in order as one session
(``read_recording`` of the index, or of ``frames.rec`` when only the index and parts exist).

The index is JSON Lines, appended to when a part opens and when it closes (the last line about a part
wins): an append costs the same after a year of hourly parts as after one, where rewriting a whole JSON
document would stall the feed's thread for longer every hour.

Why: one ever-growing file fills the disk and has to be read whole to find an hour; zstd makes market
data about 6x smaller. Rotation: when the part reaches ``record_rotate_mb`` on disk or
``record_rotate_minutes`` of age (checked at each flush, so a part may exceed the size by one flush).

What it guards against:

* **kill -9.** The part being written ends in a torn block or record: its readable part is read and the
  tail reported, as for an uncompressed file. Its last index line says ``closed: false``: the next feed
  that opens the recording scans such parts and appends their corrected entries before it starts a new
  part. A restarted feed never appends to an existing part (a torn zstd stream cannot be continued).
* **A torn last index line** (killed mid-append): skipped; the part it described is found on disk.
* **A lost or unreadable index, or parts it does not list**: the parts on disk are scanned
  (``rebuild_index``); a rebuilt index is written whole, to a temporary file renamed over the old one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hip3.replay.recording import FrameRecorder, Recording, RecordingError, read_file
from hip3.runtime.durable import atomic_write

INDEX_FORMAT = 1
_PART_RE = re.compile(r"^(?P<stem>.+)\.(?P<n>\d{5,})\.rec(?P<zst>\.zst)?$")


class Recorder(Protocol):
    """What the feed needs of a recording: ``FrameRecorder`` (one file) or ``RotatingRecorder``."""

    frames: int

    def write_frames(self, frames: Iterable[tuple[int, bytes]]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RotationParams:
    rotate_bytes: int = 0  # 0 = no rotation by size
    rotate_ns: int = 0  # 0 = no rotation by age
    zstd_level: int | None = 3  # None = uncompressed

    @property
    def single_file(self) -> bool:
        """Today's layout: one uncompressed file at ``record_path``, appended to by a restarted feed."""
        return self.zstd_level is None and not self.rotate_bytes and not self.rotate_ns


def stem_of(base: Path) -> str:
    name = base.name
    for suffix in (".rec.zst", ".rec", ".zst"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def index_path(base: Path) -> Path:
    """``dir/frames.rec`` -> ``dir/frames.index.jsonl``."""
    return base.parent / f"{stem_of(base)}.index.jsonl"


def base_of_index(path: Path) -> Path:
    """``dir/frames.index.jsonl`` -> ``dir/frames.rec``."""
    return path.parent / (path.name.removesuffix(".index.jsonl") + ".rec")


def part_path(base: Path, n: int, compressed: bool) -> Path:
    return base.parent / f"{stem_of(base)}.{n:05d}.rec{'.zst' if compressed else ''}"


def _wall_ms(header: dict[str, Any], t_ns: int) -> int:
    return (t_ns - int(header["started_mono_ns"]) + int(header["started_wall_ns"])) // 1_000_000


def entry_for(path: Path, n: int, rec: Recording, closed: bool) -> dict[str, Any]:
    """An index entry from a part as read back (the scan of a part its writer did not close)."""
    h = rec.header
    frames = rec.frames()
    first = frames[0][0] if frames else 0
    last = frames[-1][0] if frames else 0
    return {"file": path.name, "part": n, "compression": "zstd" if path.name.endswith(".zst") else "none",
            "closed": closed, "frames": len(frames), "first_t_ns": first, "last_t_ns": last,
            "first_wall_ms": _wall_ms(h, first) if frames else None,
            "last_wall_ms": _wall_ms(h, last) if frames else None,
            "markets": list(h.get("markets", [])), "dex": h.get("dex"), "segments": len(rec.segments),
            "bytes": path.stat().st_size, "torn_bytes": rec.torn_bytes, "torn_reason": rec.torn_reason}


def list_parts(base: Path) -> list[tuple[int, Path]]:
    """The part files of ``base`` on disk, in part order."""
    stem = stem_of(base)
    out = []
    if base.parent.is_dir():
        for p in base.parent.iterdir():
            m = _PART_RE.match(p.name)
            if m and m.group("stem") == stem:
                out.append((int(m.group("n")), p))
    return sorted(out)


def rebuild_index(base: Path) -> dict[str, Any]:
    """The index of ``base``'s parts, from the files themselves (unreadable parts are left out)."""
    parts = []
    for n, p in list_parts(base):
        try:
            parts.append(entry_for(p, n, read_file(p), closed=True))
        except (OSError, RecordingError):
            continue
    return {"format": INDEX_FORMAT, "stem": stem_of(base), "parts": parts}


def load_index(base: Path) -> dict[str, Any]:
    """The index of ``base``: its lines folded (the last about a part wins); rebuilt from the parts on disk
    if it is missing, unreadable, or does not list every part there."""
    parts: dict[int, dict[str, Any]] = {}
    try:
        with open(index_path(base), encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    parts[int(entry["part"])] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line (killed mid-append), or not an entry
    except OSError:
        pass
    if not parts or not {n for n, _ in list_parts(base)} <= set(parts):
        return {**rebuild_index(base), "rebuilt": True}
    return {"format": INDEX_FORMAT, "stem": stem_of(base), "parts": [parts[n] for n in sorted(parts)]}


def write_index(base: Path, index: dict[str, Any]) -> None:
    """Write the whole index (after a rebuild): to a temporary file renamed over the old one."""
    path = index_path(base)
    # No fsync: the index is rebuilt from the parts whenever it does not cover them.
    atomic_write(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in index["parts"]).encode(),
                 fsync=False, mode=0o666)


def append_index(base: Path, entry: dict[str, Any]) -> None:
    """One line: what a part covers now (on a line of its own after a torn one)."""
    path = index_path(base)
    line = json.dumps(entry, sort_keys=True).encode() + b"\n"
    with open(path, "ab") as f:
        if f.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    line = b"\n" + line
        f.write(line)


def read_index_recording(path: Path) -> Recording:
    """Every part an index lists, in order, as one recording (its segments one after another)."""
    index = load_index(base_of_index(path))
    if not index["parts"]:
        raise RecordingError(f"{path}: the index lists no readable part")
    segments = []
    torn = 0
    reasons = []
    for entry in sorted(index["parts"], key=lambda e: int(e["part"])):
        part = path.parent / str(entry["file"])
        if not part.exists():
            reasons.append(f"{entry['file']}: missing")
            continue
        rec = read_file(part)
        segments.extend(rec.segments)
        torn += rec.torn_bytes
        if rec.torn_reason:
            reasons.append(f"{entry['file']}: {rec.torn_reason}")
    if not segments:
        raise RecordingError(f"{path}: none of the listed parts exists")
    return Recording(segments, torn, "; ".join(reasons))


def read_recording(path: Path | str) -> Recording:
    """Read every whole record of a recording file (compressed or not) or of every part an index lists;
    a torn or corrupt tail is ignored and reported, never raised."""
    path = Path(path)
    if path.name.endswith(".index.jsonl"):
        return read_index_recording(path)
    if not path.exists() and index_path(path).exists():  # record_path of a rotated recording: its parts
        return read_index_recording(index_path(path))
    return read_file(path)


class RotatingRecorder:
    """Writes ``base``'s parts and appends to its index (see the module doc). Same interface as
    ``FrameRecorder``; ``now_ns`` is the feed's monotonic clock (part age)."""

    def __init__(self, base: Path, header: dict[str, Any], t_ns: int, params: RotationParams,
                 now_ns: Callable[[], int]) -> None:
        base.parent.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.header = header
        self.params = params
        self._now_ns = now_ns
        index = load_index(base)
        if index.get("rebuilt"):
            write_index(base, index)
        self._repair(index["parts"])
        on_disk = [n for n, _ in list_parts(base)]
        self._next = max([0, *on_disk, *(int(e["part"]) for e in index["parts"])]) + 1
        self.frames = 0  # through this recorder, all parts
        self.part: FrameRecorder
        self._entry: dict[str, Any] = {}
        self._open(t_ns)

    def _repair(self, parts: list[dict[str, Any]]) -> None:
        """Parts a killed feed left open: scanned, and their corrected entries appended."""
        for e in parts:
            if not e.get("closed"):
                path = self.base.parent / str(e["file"])
                try:
                    fixed = entry_for(path, int(e["part"]), read_file(path), closed=True)
                except (OSError, RecordingError) as err:
                    fixed = {**e, "closed": True, "torn_reason": f"unreadable: {err}"}
                append_index(self.base, fixed)

    def _open(self, t_ns: int) -> None:
        n = self._next
        self._next += 1
        path = part_path(self.base, n, self.params.zstd_level is not None)
        self.part = FrameRecorder(path, {**self.header, "part": n}, t_ns, self.params.zstd_level)
        self._opened_ns = self._now_ns()
        self._entry = {"file": path.name, "part": n,
                       "compression": "none" if self.params.zstd_level is None else "zstd",
                       "closed": False, "markets": list(self.header.get("markets", [])),
                       "dex": self.header.get("dex"), "segments": 1}
        self._append()

    def _append(self) -> None:
        p = self.part
        self._entry.update(frames=p.frames, first_t_ns=p.first_t_ns, last_t_ns=p.last_t_ns, bytes=p.bytes,
                           raw_bytes=p.raw_bytes,
                           first_wall_ms=_wall_ms(self.header, p.first_t_ns) if p.frames else None,
                           last_wall_ms=_wall_ms(self.header, p.last_t_ns) if p.frames else None)
        append_index(self.base, self._entry)

    def write_frames(self, frames: Iterable[tuple[int, bytes]]) -> None:
        part = self.part
        before = part.frames
        part.write_frames(frames)
        self.frames += part.frames - before
        if self.params.rotate_bytes and part.bytes >= self.params.rotate_bytes:
            self._rotate()

    def flush(self) -> None:
        """Write the buffer; rotate if the part is too big or too old."""
        self.part.flush()
        p = self.params
        if (p.rotate_bytes and self.part.bytes >= p.rotate_bytes) or (
                p.rotate_ns and self._now_ns() - self._opened_ns >= p.rotate_ns):
            self._rotate()

    def _rotate(self) -> None:
        self._finish()
        self._open(self._now_ns())

    def _finish(self) -> None:
        self.part.close()
        self._entry["closed"] = True
        self._append()

    def close(self) -> None:
        if not self.part.closed:
            self._finish()

    @property
    def closed(self) -> bool:
        return self.part.closed


def open_recorder(base: Path, header: dict[str, Any], t_ns: int, params: RotationParams,
                  now_ns: Callable[[], int]) -> Recorder:
    """The feed's recorder: one file as before (uncompressed, no rotation), else rotating parts."""
    if params.single_file:
        return FrameRecorder(base, header, t_ns)
    return RotatingRecorder(base, header, t_ns, params, now_ns)

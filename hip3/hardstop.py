"""The hard-stop latch and its durable record.

The latch is raised by any actor, the operator CLI or the supervisor (restart limit); the first
trigger's reason and time are kept. It is written to ``<run_dir>/hardstop.json`` atomically (temporary
file, fsync, rename, fsync of the directory) *before* it is broadcast, so a crash right after the
broadcast can never forget it, and it survives a supervisor restart. Only an explicit operator reset
clears it. Every change increments ``epoch``; receivers keep the state with the highest epoch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

from hip3.messages import HardStopState

LATCH_FILE = "hardstop.json"


class LatchRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    latched: bool = False
    reason: str | None = None
    epoch: int = 0
    since_ms: int | None = None

    def to_message(self) -> HardStopState:
        return HardStopState(latched=self.latched, reason=self.reason, epoch=self.epoch, since_ms=self.since_ms)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Latch:
    """The durable latch. ``latch()`` and ``reset()`` persist before they return."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LATCH_FILE
        self.state = self.load(run_dir)

    @staticmethod
    def load(run_dir: Path) -> LatchRecord:
        """Read the record; a missing file is 'not latched'. A corrupt file is treated as LATCHED."""
        path = run_dir / LATCH_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return LatchRecord()
        try:
            return msgspec.json.decode(data, type=LatchRecord)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # Fail safe: a latch we cannot read is a latch we must assume is set.
            return LatchRecord(latched=True, reason=f"unreadable latch file {path}", epoch=1_000_000,
                               since_ms=int(time.time() * 1000))

    def _save(self, rec: LatchRecord) -> None:
        atomic_write(self.path, msgspec.json.encode(rec))
        self.state = rec

    def latch(self, reason: str, now_ms: int | None = None) -> bool:
        """Latch with ``reason``. Returns False (and keeps the first reason) if already latched."""
        if self.state.latched:
            return False
        t = int(time.time() * 1000) if now_ms is None else now_ms
        self._save(LatchRecord(latched=True, reason=reason, epoch=self.state.epoch + 1, since_ms=t))
        return True

    def reset(self) -> bool:
        """Clear the latch (operator only). Returns False if it was not latched."""
        if not self.state.latched:
            return False
        self._save(LatchRecord(latched=False, reason=None, epoch=self.state.epoch + 1, since_ms=None))
        return True

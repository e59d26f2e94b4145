"""The hard-stop latch and its durable record.

The latch is raised by any actor, the operator CLI or the supervisor (restart limit); the first
trigger's reason and time are kept. It is written to ``<run_dir>/hardstop.json`` atomically (temporary
file, fsync, rename, fsync of the directory) before it is broadcast, so a crash right after the
broadcast can never forget it, and it survives a supervisor restart. Only an explicit operator reset
clears it. Every change increments ``epoch``; receivers keep the state with the highest epoch.

The file can fail us both ways, and each fails closed:

* it cannot be written (full disk, read-only or immutable file, a directory where the file should be,
  an I/O error): latching must still happen, because that is when the account is in danger. The latch
  holds in memory (``persisted`` is False, ``persist_error`` says why), the supervisor broadcasts and
  flattens as usual and ``retry`` writes it again with backoff until it sticks. A *reset* that cannot
  be written is refused (the latch stays), and a supervisor does not start on a latch file it cannot
  write (``check_writable``): it could not keep a hard stop across a restart.
* it cannot be read (a directory, no permission, not a latch record): whether the account was stopped
  is unknown. ``read_latch`` raises one line; the supervisor refuses to start on it and ``status``
  reports it. An actor (``Latch.load``) assumes the latch is set until the supervisor tells it
  otherwise.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from typing import Annotated

import msgspec

from hip3.messages import HardStopState
from hip3.runtime.durable import atomic_write

LATCH_FILE = "hardstop.json"
# A latch record is a few hundred bytes; reading more means the path is something else.
_MAX_RECORD_BYTES = 64 * 1024
# A write that failed is tried again after this long, doubling up to the maximum: a disk filled by a
# runaway log is usually freed within minutes, and the latch should be on disk within seconds of that.
RETRY_BASE_NS = 250_000_000
RETRY_MAX_NS = 10_000_000_000


class LatchFileError(Exception):
    """The latch file cannot be read or written. ``str()`` is one line for the operator."""


class LatchRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    latched: bool = False
    reason: str | None = None
    epoch: Annotated[int, msgspec.Meta(ge=0)] = 0
    since_ms: int | None = None

    def to_message(self) -> HardStopState:
        return HardStopState(latched=self.latched, reason=self.reason, epoch=self.epoch, since_ms=self.since_ms)


def describe_os_error(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the reason without the path the caller names anyway."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or type(exc).__name__
    return f"{text} ({name})" if name else text


def read_latch(path: Path) -> LatchRecord:
    """The record at ``path``; a missing file is 'not latched'. Anything else that is not a readable latch
    record raises ``LatchFileError`` (never guessed: the caller decides how to fail closed)."""
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return LatchRecord()
    except OSError as e:
        raise LatchFileError(f"unreadable hard-stop latch {path}: {describe_os_error(e)}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise LatchFileError(f"unreadable hard-stop latch {path}: it is a directory")
        if not stat.S_ISREG(mode):
            raise LatchFileError(f"unreadable hard-stop latch {path}: not a regular file")
        data = os.read(fd, _MAX_RECORD_BYTES + 1)
    except OSError as e:
        raise LatchFileError(f"unreadable hard-stop latch {path}: {describe_os_error(e)}") from None
    finally:
        os.close(fd)
    try:
        if len(data) > _MAX_RECORD_BYTES:
            raise msgspec.DecodeError("too large for a latch record")
        return msgspec.json.decode(data, type=LatchRecord)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise LatchFileError(f"unreadable hard-stop latch {path}: not a latch record ({str(e)[:80]})") from None


class Latch:
    """The latch. ``latch()`` persists before it returns when it can, and holds in memory when it cannot;
    ``reset()`` persists or refuses. Raises ``LatchFileError`` if the file exists but cannot be read."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LATCH_FILE
        self.state = read_latch(self.path)
        self.persist_error: str | None = None  # why the current state is not on disk (None: it is)
        self.failed_writes = 0  # failed writes of the current state, retries included
        self._retry_delay_ns = RETRY_BASE_NS
        self._retry_at_ns: int | None = None

    @property
    def persisted(self) -> bool:
        """True when the file holds the current state."""
        return self.persist_error is None

    @staticmethod
    def load(run_dir: Path) -> LatchRecord:
        """For an actor: the record, or, if the file cannot be read, a LATCHED record (fail safe) with the
        lowest epoch, so that any state the supervisor broadcasts replaces it."""
        try:
            return read_latch(run_dir / LATCH_FILE)
        except LatchFileError as e:
            return LatchRecord(latched=True, reason=str(e), epoch=-1, since_ms=None)

    def _write(self, rec: LatchRecord) -> str | None:
        """Persist ``rec``; the reason on failure."""
        try:
            atomic_write(self.path, msgspec.json.encode(rec))
        except OSError as e:
            return describe_os_error(e)
        return None

    def _written(self) -> None:
        self.persist_error = None
        self.failed_writes = 0
        self._retry_delay_ns = RETRY_BASE_NS
        self._retry_at_ns = None

    def check_writable(self) -> None:
        """Write the current state again; ``LatchFileError`` if the file cannot hold a latch (a supervisor
        that could not persist a hard stop must not start)."""
        err = self._write(self.state)
        if err is not None:
            raise LatchFileError(f"cannot write the hard-stop latch {self.path}: {err}")
        self._written()

    def latch(self, reason: str, now_ms: int | None = None) -> bool:
        """Latch with ``reason``. Returns False (and keeps the first reason) if already latched. Never fails:
        if the file cannot be written the latch holds in memory (``persisted`` False) until ``retry``."""
        if self.state.latched:
            return False
        t = int(time.time() * 1000) if now_ms is None else now_ms
        self.state = LatchRecord(latched=True, reason=reason, epoch=self.state.epoch + 1, since_ms=t)
        err = self._write(self.state)
        if err is None:
            self._written()
        else:
            self.persist_error = err
            self.failed_writes += 1
        return True

    def retry(self, now_ns: int) -> bool | None:
        """Write a state that is not on disk yet, when the backoff allows (monotonic ``now_ns``). None:
        nothing written (already persisted, or not due); True: written now; False: failed again."""
        if self.persist_error is None:
            return None
        if self._retry_at_ns is None:  # the first failure happened in latch(), which has no monotonic time
            self._retry_at_ns = now_ns + self._retry_delay_ns
            return None
        if now_ns < self._retry_at_ns:
            return None
        err = self._write(self.state)
        if err is None:
            self._written()
            return True
        self.persist_error = err
        self.failed_writes += 1
        self._retry_delay_ns = min(RETRY_MAX_NS, self._retry_delay_ns * 2)
        self._retry_at_ns = now_ns + self._retry_delay_ns
        return False

    def write_now(self) -> bool:
        """Write a state that is not on disk yet, now, whatever the backoff (a stopping supervisor's last
        try). True if the file holds the current state."""
        if self.persist_error is None:
            return True
        self._retry_at_ns = 0
        return bool(self.retry(0))

    def reset(self) -> bool:
        """Clear the latch (operator only). Returns False if it was not latched. Raises ``LatchFileError``
        (and stays latched) if the cleared state cannot be written: a reset that a restart would undo, or
        one that only memory knows, is no reset."""
        if not self.state.latched:
            return False
        rec = LatchRecord(latched=False, reason=None, epoch=self.state.epoch + 1, since_ms=None)
        err = self._write(rec)
        if err is not None:
            raise LatchFileError(f"hard stop NOT reset: cannot write {self.path}: {err}; it stays latched")
        self.state = rec
        self._written()
        return True

"""The loss limits' state, kept on disk so that a restarted executor starts where the crashed one stopped.

Incident this guards against: the risk monitor's and the soft gates' state (realised loss, losses in a
row, flatten failures, rejections this hour, the hourly drawdown, the tilt guard's cooldown, re-entry
delays...) lived only in the executor's memory. A crash and the supervisor's automatic restart re-armed
every loss limit, so a bot losing money and crashing could go on losing for ever.

Which record is authoritative: this file, written by the executor itself, the process that enforces the
limits. The recorder's SQLite journal is off the hot path: it may lag by its commit interval, may be down
or restarting, and it records what the bus carried, not what the executor counted. The sent-intent
journal knows orders, not their outcomes. So the executor persists exactly the state it acts on:

* when: at the end of the loop turn in which a limit's state changed (a close, a counted rejection, a
  flatten failure, a burst signal, a latch epoch), after any frame of that turn was written: never on
  the order send path. A SIGKILL after that turn loses nothing;
* how: two slot files (``risk_state.json.a`` / ``.b``) written in turn, in place, each with a sequence
  number, a CRC-32 and its length: a save overwrites the older slot, so the newest complete save always
  survives a write cut short. The fdatasync follows a few milliseconds later from a timer (as the
  sent-intent journal's fsync does). A save costs about 25 us of the loop (p99 about 0.1 ms), where the
  usual temporary file and rename cost about 210 us (p99 3.7 ms) on this ext4 (``python -m
  bench.risk_state``, indicative);
* what a restart does: every limit continues from the saved state. A hard-stop reason the monitor had
  fired is requested again if the latch is not set (the request may have died with the process); an
  operator reset that happened while the executor was down (a newer latch epoch) resets the limits as a
  live reset would; a hard-stop flatten in progress keeps its attempt count, so a crash-looping executor
  still reaches the slow cadence and its alert.

Fails closed: when no slot can be used (unreadable, torn, altered, impossible values, another schema),
or none exists in a run directory where an executor has run before (its sent-intent journal exists), the
executor says so in one line, refuses entries and requests the hard stop. The files are left in place.
Only the operator's reset of the hard stop starts the limits from zero, and moves the bad files aside
(``.unusable-<ms>``). One slot that fails its checks while the other is valid is what a write cut short
leaves: the executor continues from the other (one save older; the closes of the lost save come back from
the recorder's journal, ``hip3.execution.risk_catchup``) and says so in a warning line. A state that cannot
be written (full disk, read-only directory) requests the hard stop too, and is retried every second.
"""

from __future__ import annotations

import os
import zlib
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from hip3.execution.journal import FILE_NAME as SENT_JOURNAL_FILE

if TYPE_CHECKING:
    pass

__all__ = [
    "STATE_FILE",
    "RiskMonitorState",
    "RiskState",
    "RiskStateError",
    "RiskStateStore",
    "SoftGatesState",
]

STATE_FILE = "risk_state.json"
SCHEMA = 1
_MAX_FILE_BYTES = 4 * 1024 * 1024  # far above any real state (a few KiB); a bigger file is not ours
_MAGIC = b"hip3-risk-state"


class _S(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class RiskMonitorState(_S, frozen=True):
    """``hip3.execution.risk.RiskMonitor``: the hard-stop triggers."""

    reason: str | None = None  # the trigger that fired (first wins) since the last reset
    realized_usd: Decimal = Decimal(0)  # net of fees, since the last reset
    consecutive_losses: int = 0
    flatten_failures: int = 0
    rejection_bucket: int = -1
    rejections_in_bucket: int = 0
    slippage_streak: int = 0
    day: int = -1  # UTC day (epoch ms // 86_400_000) of ``daily_realized_usd``
    daily_realized_usd: Decimal = Decimal(0)
    recent_closes: tuple[str, ...] = ()  # keys (``close_key``) of the last closes counted, oldest first


class SoftGatesState(_S, frozen=True):
    """``hip3.execution.soft_gates.SoftGates``: the entry-throttling gates (times are epoch ms)."""

    dd_window_start_ms: int | None = None
    dd_sum_usd: Decimal = Decimal(0)
    close_times_ms: tuple[int, ...] = ()
    corr_until_ms: int = 0
    burst_times_ms: dict[str, tuple[int, ...]] = {}
    burst_until_ms: dict[str, int] = {}
    losses_in_row: int = 0
    tilt_until_ms: int = 0
    last_close_ms: dict[str, int] = {}
    outcomes: dict[str, tuple[Decimal, ...]] = {}
    disabled_since_ms: dict[str, int] = {}


class RiskState(_S, frozen=True):
    """Everything a restarted executor needs to arm its limits where the last one stopped."""

    schema: int
    saved_ms: int
    hardstop_epoch: int  # the latch epoch this executor had applied when it saved
    hardstop_latched: bool
    risk: RiskMonitorState
    soft: SoftGatesState
    flatten_epoch: int = 0  # the hard-stop flatten in progress (epoch, attempts), 0 if none
    flatten_attempts: int = 0


class RiskStateError(Exception):
    """The saved state cannot be used. ``str(e)`` is one line naming the file and the reason."""


def _decimals_ok(state: RiskState) -> bool:
    values = [state.risk.realized_usd, state.risk.daily_realized_usd, state.soft.dd_sum_usd]
    values += [d for ds in state.soft.outcomes.values() for d in ds]
    return all(d.is_finite() for d in values)


def _ints_ok(state: RiskState) -> bool:
    r = state.risk
    return min(r.consecutive_losses, r.flatten_failures, r.rejections_in_bucket, r.slippage_streak,
               state.soft.losses_in_row, state.flatten_attempts, state.hardstop_epoch) >= 0


class RiskStateStore:
    """Two slot files written in turn, in place: each save overwrites the older one (``pwrite`` of a header
    with sequence number, CRC-32 and length, then the JSON), so the newest complete save always survives a
    write cut short (a SIGKILL between two pages of the write, a host crash before the fsync). Load takes the
    valid slot with the highest sequence number; a slot that fails its checks while the other is valid is
    reported (``note``), as the torn write it almost certainly is. A new file and a rename per save cost
    about 210 us of the executor's loop on ext4 here, the in-place save about 25 us (``bench.risk_state``)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(run_dir)
        self.paths = (self.dir / f"{STATE_FILE}.a", self.dir / f"{STATE_FILE}.b")
        self.path = self.dir / f"{STATE_FILE}.{{a,b}}"  # for messages
        # An executor has run in this directory before if its sent-intent journal exists (every executor
        # creates it at start): then a missing state was lost, not never written. Checked here, before
        # this executor creates the journal.
        self.earlier_executor = (self.dir / SENT_JOURNAL_FILE).exists()
        self.seq = 0  # of the newest save (loaded or written)
        self.note = ""  # a slot that failed its checks at load while the other was used
        self._fds: list[int | None] = [None, None]
        self._unsynced: set[int] = set()
        self._created = False  # a slot file was created: the directory needs an fsync

    def _read(self, path: Path) -> tuple[int, RiskState] | str | None:
        """(seq, state) of a valid slot; None if there is no file; else why it is not valid."""
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            return f"cannot be read: {e.strerror or e}"
        if len(data) > _MAX_FILE_BYTES:
            return f"is larger than {_MAX_FILE_BYTES} bytes"
        head, sep, rest = data.partition(b"\n")
        parts = head.split(b" ")
        if not sep or len(parts) != 4 or parts[0] != _MAGIC or not all(p.isdigit() for p in parts[1:]):
            return "does not decode: no valid header"
        seq, crc, length = (int(p) for p in parts[1:])
        body = rest[:length]
        if len(body) != length or zlib.crc32(body) != crc:
            return "fails its checksum (torn or altered)"
        try:
            return seq, msgspec.json.decode(body, type=RiskState)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return f"does not decode: {str(e)[:200]}"

    def load(self) -> RiskState | None:
        """The newest valid save; None if there is none and none is expected. Raises ``RiskStateError``."""
        found = [(path, self._read(path)) for path in self.paths]
        valid = [r for _, r in found if isinstance(r, tuple)]
        bad = [(path, r) for path, r in found if isinstance(r, str)]
        if not valid:
            if bad:
                raise RiskStateError("; ".join(f"risk state {path} {why}" for path, why in bad))
            if self.earlier_executor:
                raise RiskStateError(f"risk state {self.path} is missing, but an executor ran in this run "
                                     f"directory before ({SENT_JOURNAL_FILE} exists)")
            return None
        self.seq, state = max(valid, key=lambda r: r[0])
        if bad:
            self.note = f"risk state {bad[0][0]} {bad[0][1]}: continuing from save {self.seq} in the other slot"
        if state.schema != SCHEMA:
            raise RiskStateError(f"risk state {self.path} has schema {state.schema}, this executor reads {SCHEMA}")
        if not _decimals_ok(state) or not _ints_ok(state):
            raise RiskStateError(f"risk state {self.path} holds impossible values (non-finite or negative)")
        return state

    def write(self, state: RiskState) -> None:
        """Overwrite the older slot in place (visible to a restarted process at once, even after SIGKILL);
        the fsync (host-crash durability) is ``sync``'s. Raises ``OSError``."""
        # In place, not ``hip3.runtime.durable.atomic_write``: a temporary file and rename per save costs the
        # loop about ten times more, and the two checksummed slots already survive a torn write.
        seq = self.seq + 1
        body = msgspec.json.encode(state)
        data = b"%s %d %d %d\n%s\n" % (_MAGIC, seq, zlib.crc32(body), len(body), body)
        slot = seq % 2
        fd = self._fds[slot]
        if fd is None:
            path = self.paths[slot]
            self._created = self._created or not path.exists()
            fd = self._fds[slot] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        view, offset = memoryview(data), 0
        while offset < len(data):  # a regular file takes it whole unless the disk is full (then it raises)
            offset += os.pwrite(fd, view[offset:], offset)
        self.seq = seq
        self._unsynced.add(slot)

    def sync(self) -> None:
        """fsync what ``write`` wrote (and the directory once a slot file was created). Raises ``OSError``."""
        while self._unsynced:
            fd = self._fds[self._unsynced.pop()]
            if fd is not None:
                os.fdatasync(fd)
        if self._created:
            self._created = False
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def set_aside(self, now_ms: int) -> list[Path]:
        """Move unusable slot files out of the way (kept for a post-mortem); the ones moved."""
        self.close()
        moved = []
        for path in self.paths:
            target = path.with_name(f"{path.name}.unusable-{now_ms}")
            try:
                os.replace(path, target)
            except OSError:
                continue  # none, or it cannot be moved: the next save overwrites it, or fails and says so
            moved.append(target)
        self.seq = 0
        return moved

    def close(self) -> None:
        for i, fd in enumerate(self._fds):
            if fd is not None:
                os.close(fd)
                self._fds[i] = None
        self._unsynced.clear()

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
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from hip3.execution.journal import FILE_NAME as SENT_JOURNAL_FILE
from hip3.execution.risk_catchup import LOOKBACK_MS, CatchUpError, missed_closes

if TYPE_CHECKING:
    from hip3.execution.hardstop import HardStopFlattener
    from hip3.execution.risk import RiskMonitor
    from hip3.execution.soft_gates import SoftGates
    from hip3.messages import HardStopState, PositionClosed

__all__ = [
    "STATE_FILE",
    "RiskKeeper",
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


def _reset_since(saved_epoch: int, now: HardStopState) -> bool:
    """Did an operator reset happen after ``saved_epoch``? Every latch and every reset is one epoch, and
    they alternate: a newer epoch that is not latched is a reset, and a latched one two or more epochs on
    had a reset in between."""
    return now.epoch > saved_epoch and (not now.latched or now.epoch >= saved_epoch + 2)


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


class RiskKeeper:
    """Ties the executor's limits (monitor, soft gates, hard-stop flattener) to the store.

    ``schedule`` is called once when the state changes from saved to unsaved: the executor defers a
    ``save`` to the end of the loop turn with it. Every public method returns a hard-stop reason to
    request (once per cause), or None."""

    def __init__(self, store: RiskStateStore, risk: RiskMonitor, soft: SoftGates,
                 flattener: HardStopFlattener | None = None, schedule: Callable[[], None] | None = None) -> None:
        self.store = store
        self.risk = risk
        self.soft = soft
        self.flattener = flattener
        self._schedule = schedule
        self._dirty = False
        self._epoch = 0
        self._latched = False
        self._saved_flatten = (0, 0)
        self._pending_flatten: tuple[int, int] | None = None  # restored (epoch, attempts) of a flatten
        self._write_failed = False
        self._sync_failed = False
        self.unusable: str | None = None  # why the saved state could not be used (until an operator reset)
        self._restored_saved_ms: int | None = None  # when the state restored at start was saved
        self.saves = 0
        risk.on_change = soft.on_change = self.changed

    def changed(self) -> None:
        """A limit's state changed: save it at the end of this loop turn."""
        if not self._dirty:
            self._dirty = True
            if self._schedule is not None:
                self._schedule()

    # ------------------------------------------------------------------ start

    def restore(self, hardstop: HardStopState, now_ms: int) -> str | None:
        """Load the saved state into the limits (call once, before the first event). Returns a hard-stop
        reason: the state is unusable, or a trigger fired before the restart and the latch is not set."""
        self._epoch, self._latched = hardstop.epoch, hardstop.latched
        try:
            state = self.store.load()
        except RiskStateError as e:
            self.unusable = str(e)
            self.risk.unusable = self.unusable
            return (f"{e}: the loss limits cannot continue where they stopped; entries refused until the "
                    "operator resets the hard stop, which starts them from zero")
        if state is None:  # the first executor in this run directory: write the empty state at once
            self.changed()
            return self.save(now_ms)
        self.risk.restore(state.risk)
        self.soft.restore(state.soft)
        self._restored_saved_ms = state.saved_ms
        if state.flatten_epoch:
            self._pending_flatten = (state.flatten_epoch, state.flatten_attempts)
        self._saved_flatten = (state.flatten_epoch, state.flatten_attempts)
        if _reset_since(state.hardstop_epoch, hardstop):
            # The operator reset the latch while this executor was down: what a reset does live.
            self.risk.reset()
            self.changed()
            return None
        if hardstop.epoch != state.hardstop_epoch:
            self.changed()  # save the epoch this executor starts from
        if self.risk.reason is not None and not hardstop.latched:
            # Fired, saved, then died before the supervisor latched (the request died with the process).
            return f"{self.risk.reason} (requested again after an executor restart)"
        return None

    def summary(self) -> dict[str, object]:
        """The restored figures, for the executor's start-up log line."""
        r = self.risk
        return {"file": str(self.store.path), "unusable": self.unusable or "", "note": self.store.note,
                "seq": self.store.seq, "reason": r.reason or "",
                "realized_usd": str(r.realized_usd), "daily_realized_usd": str(r.daily_realized_usd),
                "consecutive_losses": r.consecutive_losses, "flatten_failures": r.flatten_failures,
                "hardstop_epoch": self._epoch}

    def catch_up(self, db_path: Path, apply: Callable[[PositionClosed, int], None]) -> tuple[int, str | None]:
        """Count the closes published while no executor ran, read from the recorder's journal at
        ``db_path`` (``hip3.execution.risk_catchup``; call after subscribing to the closes). Returns how
        many were applied (``apply(close, close.closed_ms)``) and a one-line problem, if any."""
        if self._restored_saved_ms is None:
            return 0, None  # nothing restored: a first start, or an unusable state (entries refused)
        try:
            missed = missed_closes(db_path, self._restored_saved_ms - LOOKBACK_MS, self.risk.counted)
        except CatchUpError as e:
            return 0, str(e)
        for closed in missed:
            apply(closed, closed.closed_ms)
        return len(missed), None

    # ------------------------------------------------------------------ running

    def note_hardstop(self, state: HardStopState, now_ms: int) -> None:
        """Every latch state the executor applies (after the flattener started, before its first step)."""
        self._epoch, self._latched = state.epoch, state.latched
        pending, self._pending_flatten = self._pending_flatten, None
        fl = self.flattener
        if pending is not None and fl is not None and state.latched and fl.epoch == pending[0]:
            fl.attempts = max(fl.attempts, pending[1])  # keep counting towards the slow cadence and alert
        if not state.latched:
            self._write_failed = False  # still failing after the reset: request the stop again
            if self.unusable is not None:  # the operator's reset: start from zero, keep the bad files
                self.store.set_aside(now_ms)
                self.unusable = None
                self.risk.unusable = None
                self.risk.restore(RiskMonitorState())
                self.soft.restore(SoftGatesState())
        self.changed()

    def _flatten_progress(self) -> tuple[int, int]:
        fl = self.flattener
        return (fl.epoch, fl.attempts) if fl is not None and fl.active else (0, 0)

    def export(self, now_ms: int) -> RiskState:
        epoch, attempts = self._flatten_progress()
        return RiskState(schema=SCHEMA, saved_ms=now_ms, hardstop_epoch=self._epoch,
                         hardstop_latched=self._latched, risk=self.risk.export(), soft=self.soft.export(),
                         flatten_epoch=epoch, flatten_attempts=attempts)

    def save(self, now_ms: int) -> str | None:
        """Write the state if it changed (called at the end of the turn, and every second as a retry and
        for the flattener's attempts). Returns a hard-stop reason the first time a write fails."""
        if self.unusable is not None:
            return None  # the unusable file stays as it is until the operator's reset
        flatten = self._flatten_progress()
        if not self._dirty and flatten == self._saved_flatten:
            return None
        state = self.export(now_ms)
        try:
            self.store.write(state)
        except OSError as e:
            if self._write_failed:
                return None
            self._write_failed = True
            return (f"risk state {self.store.path} cannot be written: {e.strerror or e}: the loss limits "
                    "would not survive a restart")
        self._dirty = False
        self._write_failed = False
        self._saved_flatten = flatten
        self.saves += 1
        return None

    def sync(self) -> str | None:
        """fsync what ``save`` wrote (off the send path, from a timer)."""
        try:
            self.store.sync()
        except OSError as e:
            if self._sync_failed:
                return None
            self._sync_failed = True
            return f"risk state {self.store.path} cannot be synced to disk: {e.strerror or e}"
        self._sync_failed = False
        return None

    def close(self, now_ms: int) -> None:
        """At a clean stop: the last state, synced."""
        try:
            self.save(now_ms)
            self.store.sync()
        except OSError:
            pass  # already reported by save/sync; a clean stop must not raise
        self.store.close()

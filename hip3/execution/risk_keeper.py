"""Ties the executor's limits (risk monitor, soft gates, hard-stop flattener) to their saved state on disk
(``hip3.execution.risk_state``): what a restarted executor restores, when a change is saved, and the
hard-stop reasons a restore or a failed save requests. The state and its store sit below the limits (they
import it for their state types); this keeper sits above them, so the two layers do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hip3.execution.risk_catchup import LOOKBACK_MS, CatchUpError, missed_closes
from hip3.execution.risk_state import (
    SCHEMA,
    RiskMonitorState,
    RiskState,
    RiskStateError,
    RiskStateStore,
    SoftGatesState,
)

if TYPE_CHECKING:
    from hip3.execution.hardstop import HardStopFlattener
    from hip3.execution.risk import RiskMonitor
    from hip3.execution.soft_gates import SoftGates
    from hip3.messages import HardStopState, PositionClosed

__all__ = ["RiskKeeper"]


def _reset_since(saved_epoch: int, now: HardStopState) -> bool:
    """Did an operator reset happen after ``saved_epoch``? Every latch and every reset is one epoch, and
    they alternate: a newer epoch that is not latched is a reset, and a latched one two or more epochs on
    had a reset in between."""
    return now.epoch > saved_epoch and (not now.latched or now.epoch >= saved_epoch + 2)


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

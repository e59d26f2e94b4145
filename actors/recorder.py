"""The recorder actor process. Off the hot path: writes the trade journal (``<run_dir>/journal.sqlite``).

A thin loop over ``hip3.journal.db.JournalWriter``:

* sockets: SUB ``signals`` (``Signal``, ``SignalFollowup``), ``exec`` (order lifecycle, ``HardStopProgress``),
  ``positions`` (``Fill``, ``PositionClosed``, ``PositionSnapshot``) and ``user`` (``OrderUpdate``,
  ``UserFill``, ``FeedState``); the hard-stop state from the control stream (the base actor's
  subscription: the state known at start, then every new epoch). It binds nothing and sends nothing but
  heartbeats, so no actor waits for it. Intents are PUSHed to the executor only: the recorder sees them
  as the executor's ``OrderSubmitted`` (or ``OrderRejected`` for a refused flatten). Alerts go to the
  supervisor's inbox only and are not visible here.
* every drained batch is buffered; the buffer is committed every ``recorder.commit_interval_ms`` (or after
  every batch when 0), so a ``kill -9`` loses at most that window. Replayed state (a restarted recorder
  joins the XPUB last-value caches) is deduplicated by the journal's natural keys.
* it never fails: a malformed frame or message is counted and logged (the first ones, then every 1000th),
  a database that cannot be opened or written is retried with the rows kept in memory (bounded). A crash
  loop of any actor latches the hard stop (supervisor restart limit), so the journal must not have one.
* READY as soon as it subscribed (nothing waits for it); counters ``journal_*`` go out with heartbeats
  and show in ``python supervisor.py status``.

Run alone for debugging: `python -m actors.recorder --config configs/default.toml`.
"""

from __future__ import annotations

import sys

from hip3 import clock
from hip3.journal.db import JournalWriter
from hip3.journal.schema import journal_path
from hip3.messages import HardStopState
from hip3.runtime.actor import Actor
from hip3.runtime.runner import standalone_main
from hip3.runtime.sched import background_priority

STATS_MS = 1000
# Under a burst: at most this many messages per wake-up (timers and heartbeats run in between), and a
# commit as soon as this many rows wait, so a transaction stays short and the kill -9 window bounded.
_DRAIN_LIMIT = 2000
_FLUSH_ROWS = 2000
_LOG_FIRST = 10


class Recorder(Actor):
    name = "recorder"

    def setup(self) -> None:
        if self.supervised:  # its own process: never preempt a hot-path actor on wake-up
            background_priority()
        rc = self.cfg.recorder
        self.path = journal_path(self.run_dir)
        # The process clock: the wall clock live, the recording's in a replay (so a replay's journal is a
        # function of the recording and carries the recorded session's times).
        self.writer = JournalWriter(self.path, synchronous=rc.synchronous, max_pending=rc.max_pending_rows,
                                    clock_ns=lambda: clock.time_ns())
        self._flush_each_batch = rc.commit_interval_ms == 0
        self._problems = 0
        self._bad_frames = 0
        self._last_error = ""
        if not self.writer.connect():
            self._journal_error()
        self.writer.add(self.hardstop)  # the latch as known at start (file, then the control state)
        self.rcv = self.bus.subscriber(["signals", "exec", "positions", "user"])
        self.on_batch(self.rcv, self._on_batch)
        if not self._flush_each_batch:
            self.every(rc.commit_interval_ms, self._flush)
        self.every(STATS_MS, self._on_stats)
        self.set_ready(True, f"journal {self.path}" if self.writer.connected else "journal unavailable, retrying")

    def teardown(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
            self.log.info("journal_closed", rows=writer.stats["journal_rows"], pending=writer.pending)

    def on_hardstop(self, state: HardStopState) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.add(state)

    def _on_batch(self) -> None:
        add = self.writer.add
        problem = False
        for msg in self.rcv.drain(_DRAIN_LIMIT):
            if not add(msg):
                problem = True
        if problem:
            self._problem(self.writer.last_problem)
        if self.rcv.bad != self._bad_frames:
            self._bad_frames = self.rcv.bad
            self._problem(f"undecodable frame: {self.rcv.last_error}")
        if self._flush_each_batch or self.writer.pending >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        writer = self.writer
        if writer.pending:
            errors = writer.stats["journal_errors"]
            writer.flush()
            if writer.stats["journal_errors"] != errors:
                self._journal_error()
            elif self._last_error:
                self._last_error = ""
                self.log.info("journal_writable", path=str(self.path))
                self.set_ready(True, f"journal {self.path}")

    def _journal_error(self) -> None:
        """Log and alert on a new kind of database error only (it is retried at every flush)."""
        err = self.writer.last_error
        if err != self._last_error:
            self._last_error = err
            self.log.error("journal_error", path=str(self.path), error=err, pending=self.writer.pending)
            self.alert("warning", f"journal {self.path}: {err}")
            self.set_ready(True, "journal unavailable, retrying")

    def _problem(self, text: str) -> None:
        self._problems += 1
        if self._problems <= _LOG_FIRST or self._problems % 1000 == 0:
            self.log.warning("journal_skipped_message", problem=text, count=self._problems)

    def _on_stats(self) -> None:
        self.stats.update(self.writer.stats)
        self.stats.update(self.writer.commit_summary())


if __name__ == "__main__":
    sys.exit(standalone_main("recorder"))

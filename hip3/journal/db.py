"""The trade journal: an SQLite database (WAL mode) at ``<run_dir>/journal.sqlite``, written by the recorder.

Not to be confused with ``hip3/execution/journal.py`` (the executor's sent-intent journal, which guards
against sending an intent twice). This one is the session's record for the operator: signals, orders and
their statuses, fills, position closes with exit reason and PnL, hard-stop events. ``hip3.journal.report`` reads it.

What it guards against:

* **Losing committed rows when the recorder is killed** (``kill -9``, OOM). Rows are buffered and written in
  one transaction per flush (the recorder flushes every ``recorder.commit_interval_ms``, or after every
  drained batch when that is 0). In WAL mode a commit appends the transaction to the ``-wal`` file before
  it returns, so a killed process loses only what it had not committed yet. ``synchronous=NORMAL`` (the
  default) does not fsync the WAL on each commit: a process crash loses nothing committed (the kernel has
  the pages); only a power loss or kernel crash can lose the last transactions, and never corrupts the
  file. ``FULL`` adds an fsync per commit (milliseconds on a disk, I/O stalls shared with the trading
  processes on a small machine) for that last case; it is a config choice (``recorder.synchronous``).
* **Duplicates when state is replayed.** XPUB last-value caches replay the hard-stop state, the feed state
  and the position snapshot to every joiner with *fresh* sequence numbers, and a restarted sender starts
  its sequence numbers again, so ``(src, seq)`` cannot tell a replay from a new message. Every table has a
  natural key (signal id, cloid + status, coin + trade id, hard-stop epoch, ...) as its PRIMARY KEY and
  rows are ``INSERT OR IGNORE``: writing the same message twice, from one recorder or from two, is a no-op.
* **A malformed or unexpected message**: counted (``journal_malformed``, ``journal_unexpected``) and
  skipped, never raised. A database that cannot be opened or written is retried at the next flush with
  the rows kept in memory (bounded: the oldest are dropped and counted), so the recorder never crash-loops
  (a restart limit on any actor latches the hard stop, and the journal must never stop trading).
* **Secrets**: the journal holds bus messages only, which never carry the key; free text (reasons) is
  scrubbed with ``hip3.runtime.logs.redact`` as defence in depth.
* **Other users reading positions and PnL**: the file is created mode 0600 (the WAL files follow it).
* **A journal from a newer hip3** (``meta.schema_version`` above ``SCHEMA_VERSION``): refused, not rewritten.

Money and sizes are stored as exact decimal strings (TEXT), as on the bus; ``ts_ms`` is the event's wall
time (the exchange's where the message has one, else the recorder's); ``rec_ns`` is when the recorder
wrote the row (wall clock, strictly increasing per writer: the journal's order of events).
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from hip3.journal.rows import Row, rows_for
from hip3.journal.schema import JournalError, open_journal
from hip3.messages import (
    Msg,
    PositionSnapshot,
)
from hip3.runtime.percentiles import percentile_floor


class JournalWriter:
    """Buffers messages as rows and writes them in one transaction per ``flush``.

    ``add`` never raises: a message the journal does not keep is counted as ``journal_unexpected``, one that
    cannot be journaled as ``journal_malformed`` (``last_problem`` says why). ``flush`` never raises: if the
    database cannot be opened or written, the rows stay buffered (at most ``max_pending`` rows; the oldest
    are dropped and counted) and the next flush tries again. ``stats`` are the recorder's heartbeat counters.
    """

    def __init__(self, path: Path, *, synchronous: str = "normal", max_pending: int = 100_000,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self.synchronous = synchronous
        self.max_pending = max_pending
        self._clock_ns = clock_ns
        self._conn: sqlite3.Connection | None = None
        self._pending: deque[Row] = deque()
        self._last_rec_ns = 0
        self._last_snapshot: tuple[str, int] | None = None
        self.commit_us: deque[int] = deque(maxlen=1000)
        self.last_problem = ""
        self.last_error = ""
        self.stats: dict[str, int] = {
            "journal_rows": 0, "journal_dupes": 0, "journal_unexpected": 0, "journal_malformed": 0,
            "journal_commits": 0, "journal_errors": 0, "journal_dropped": 0, "journal_pending": 0,
        }

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def _rec_ns(self) -> int:
        now = self._clock_ns()
        self._last_rec_ns = now if now > self._last_rec_ns else self._last_rec_ns + 1
        return self._last_rec_ns

    def add(self, msg: Msg) -> bool:
        """Buffer the rows of ``msg``. False if it was not kept (unexpected or malformed)."""
        if isinstance(msg, PositionSnapshot):
            ident = (msg.src, msg.version)
            if ident == self._last_snapshot:
                return True  # the periodic re-publication of an unchanged book
            self._last_snapshot = ident
        try:
            rows = rows_for(msg, self._rec_ns())
        except Exception as e:  # a bad message is counted, never raised
            self.stats["journal_malformed"] += 1
            self.last_problem = f"{type(msg).__name__}: {e}"[:200]
            return False
        if rows is None:
            self.stats["journal_unexpected"] += 1
            self.last_problem = f"unexpected message {type(msg).__name__}"
            return False
        self._pending.extend(rows)
        over = len(self._pending) - self.max_pending
        if over > 0:
            for _ in range(over):
                self._pending.popleft()
            self.stats["journal_dropped"] += over
        self.stats["journal_pending"] = len(self._pending)
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def connect(self) -> bool:
        """Open the database if it is not open. False (and ``last_error``) if it cannot be."""
        if self._conn is not None:
            return True
        try:
            self._conn = open_journal(self.path, self.synchronous)
            return True
        except (JournalError, sqlite3.Error, OSError) as e:
            self.stats["journal_errors"] += 1
            self.last_error = str(e)[:300]
            return False

    def flush(self) -> int:
        """Write every buffered row in one transaction. Returns the number of new journal rows (duplicates
        ignored; the replaced latest value of a state stream is not counted)."""
        if not self._pending or not self.connect():
            return 0
        conn = self._conn
        assert conn is not None
        t0 = time.perf_counter_ns()
        new = dupes = bad = 0
        try:
            conn.execute("BEGIN")
            for sql, params in self._pending:
                try:
                    inserted = conn.execute(sql, params).rowcount > 0
                except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                        OverflowError) as e:
                    # This row cannot be stored (an integer beyond 64 bits, a constraint): skip it, keep
                    # the rest; retrying it would block the journal forever.
                    bad += 1
                    self.last_problem = f"row refused: {e}"[:200]
                    continue
                if sql.startswith("INSERT OR REPLACE"):
                    continue  # the latest value of a state stream: an update, not a journal row
                if inserted:
                    new += 1
                else:
                    dupes += 1
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self.stats["journal_errors"] += 1
            self.last_error = str(e)[:300]
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._drop_connection()
            if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
                self._drop_connection()  # corrupt or replaced file: reopen next time
            return 0
        self.commit_us.append((time.perf_counter_ns() - t0) // 1000)
        self._pending.clear()
        st = self.stats
        st["journal_rows"] += new
        st["journal_dupes"] += dupes
        st["journal_malformed"] += bad
        st["journal_commits"] += 1
        st["journal_pending"] = 0
        return new

    def commit_summary(self) -> dict[str, int]:
        """p50 and max of the recent flushes' transaction time (µs), for the heartbeat."""
        xs = sorted(self.commit_us)
        if not xs:
            return {}
        return {"journal_commit_us_p50": percentile_floor(xs, 50), "journal_commit_us_max": xs[-1]}

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def close(self) -> None:
        """Flush what is buffered (best effort) and close the database."""
        self.flush()
        self._drop_connection()

"""The trade journal: an SQLite database (WAL mode) at ``<run_dir>/journal.sqlite``, written by the recorder.

Not to be confused with ``hip3/execution/journal.py`` (the executor's sent-intent journal, which guards
against sending an intent twice). This one is the session's record for the operator: signals, orders and
their statuses, fills, position closes with exit reason and PnL, hard-stop events. ``hip3.report`` reads it.

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
  scrubbed with ``hip3.logs.redact`` as defence in depth.
* **Other users reading positions and PnL**: the file is created mode 0600 (the WAL files follow it).
* **A journal from a newer hip3** (``meta.schema_version`` above ``SCHEMA_VERSION``): refused, not rewritten.

Money and sizes are stored as exact decimal strings (TEXT), as on the bus; ``ts_ms`` is the event's wall
time (the exchange's where the message has one, else the recorder's); ``rec_ns`` is when the recorder
wrote the row (wall clock, strictly increasing per writer: the journal's order of events).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from hip3.logs import redact
from hip3.messages import (
    FeedState,
    Fill,
    HardStopProgress,
    HardStopState,
    MarketTerms,
    Msg,
    OrderAcked,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdate,
    PositionClosed,
    PositionSnapshot,
    Signal,
    SignalFollowup,
    UserFill,
)
from hip3.runtime.percentiles import percentile_floor

SCHEMA_VERSION = 2
# Columns added after a table's first version, in the order they were added: a journal written by an
# older hip3 gets them (NULL in its old rows) when it is opened for writing, so one file can span an
# upgrade. Version 2: the follow-up's exit price (the opposite touch at the horizon).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("signal_followups", "exit_px", "REAL"),
)
JOURNAL_FILE = "journal.sqlite"

# Each table's natural key is its PRIMARY KEY (INSERT OR IGNORE makes a replay a no-op).
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signals (
    signal_id TEXT PRIMARY KEY, coin TEXT NOT NULL, is_buy INTEGER NOT NULL, raw_edge_bps REAL,
    net_edge_bps REAL, threshold_bps REAL, oracle_px REAL, best_px REAL, book_sz REAL, suggested_sz REAL,
    confidence REAL, recv_ns INTEGER, ts_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS signal_followups (
    signal_id TEXT NOT NULL, offset_ms INTEGER NOT NULL, coin TEXT NOT NULL, oracle_px REAL, best_px REAL,
    edge_bps REAL, edge_change_bps REAL, ts_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL, exit_px REAL,
    PRIMARY KEY (signal_id, offset_ms));
-- One row per OrderSubmitted: an intent the executor turned into a signed order frame.
CREATE TABLE IF NOT EXISTS orders (
    cloid TEXT PRIMARY KEY, intent_id TEXT NOT NULL, coin TEXT NOT NULL, asset INTEGER, is_buy INTEGER NOT NULL,
    px TEXT NOT NULL, sz TEXT NOT NULL, reduce_only INTEGER NOT NULL, tif TEXT, kind TEXT NOT NULL,
    reason TEXT, nonce INTEGER, post_id INTEGER, edge_bps REAL, origin_recv_ns INTEGER,
    intent_created_ns INTEGER, intent_recv_ns INTEGER, sent_ns INTEGER, ts_ms INTEGER NOT NULL,
    rec_ns INTEGER NOT NULL);
-- Every status an order reached. order_key: the cloid; "intent:<id>" for an intent the executor refused
-- before it had a cloid; "oid:<oid>" for an exchange update without cloid. event: submitted, acked,
-- filled, rejected, cancelled (the executor's view), ws:<status> (the exchange's orderUpdates; repeated
-- updates with the same status keep the first).
CREATE TABLE IF NOT EXISTS order_events (
    order_key TEXT NOT NULL, event TEXT NOT NULL, cloid TEXT, intent_id TEXT, coin TEXT, oid INTEGER,
    reduce_only INTEGER, reason TEXT, benign INTEGER, sz TEXT, px TEXT, recv_ns INTEGER,
    ts_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL, PRIMARY KEY (order_key, event));
-- Fills as the position tracker applied them. fill_key: "t:<coin>:<tid>" for an exchange trade,
-- "p:<cloid or oid>" for a post-response total (no trade id).
CREATE TABLE IF NOT EXISTS fills (
    fill_key TEXT PRIMARY KEY, coin TEXT NOT NULL, cloid TEXT, oid INTEGER, tid INTEGER, is_buy INTEGER NOT NULL,
    px TEXT NOT NULL, sz TEXT NOT NULL, fee TEXT NOT NULL, source TEXT, ts_ms INTEGER NOT NULL,
    recv_ns INTEGER, rec_ns INTEGER NOT NULL);
-- The exchange's userFills (fees live here).
CREATE TABLE IF NOT EXISTS user_fills (
    coin TEXT NOT NULL, tid INTEGER NOT NULL, cloid TEXT, oid INTEGER, is_buy INTEGER NOT NULL, px TEXT NOT NULL,
    sz TEXT NOT NULL, fee TEXT NOT NULL, closed_pnl TEXT, crossed INTEGER, is_snapshot INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL, recv_ns INTEGER, rec_ns INTEGER NOT NULL, PRIMARY KEY (coin, tid));
CREATE TABLE IF NOT EXISTS closes (
    coin TEXT NOT NULL, is_long INTEGER NOT NULL, size TEXT NOT NULL, entry_px TEXT NOT NULL,
    exit_px TEXT NOT NULL, pnl_usd TEXT NOT NULL, fees_usd TEXT NOT NULL, hold_ms INTEGER, exit_reason TEXT,
    closed_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL, PRIMARY KEY (coin, closed_ms, is_long, size, entry_px));
CREATE TABLE IF NOT EXISTS hardstop_states (
    epoch INTEGER PRIMARY KEY, latched INTEGER NOT NULL, reason TEXT, since_ms INTEGER,
    ts_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hardstop_progress (
    epoch INTEGER NOT NULL, attempts INTEGER NOT NULL, positions INTEGER NOT NULL, open_orders INTEGER NOT NULL,
    done INTEGER NOT NULL, alert INTEGER NOT NULL, ts_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL,
    PRIMARY KEY (epoch, attempts, positions, open_orders, done, alert));
CREATE TABLE IF NOT EXISTS feed_states (
    conn_id INTEGER NOT NULL, state TEXT NOT NULL, market_data_ready INTEGER NOT NULL, user_ready INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL,
    PRIMARY KEY (conn_id, state, market_data_ready, user_ready));
-- Latest value of state streams (the position snapshot's summary), replaced on change.
CREATE TABLE IF NOT EXISTS latest (key TEXT PRIMARY KEY, value TEXT NOT NULL, rec_ns INTEGER NOT NULL);
-- The per-leg taker fee the detector assumed (bps of notional) and where it came from: one row per entry
-- order (key "o:<cloid>") and per signal (key "s:<signal_id>"). A trade's assumption is its entry's.
CREATE TABLE IF NOT EXISTS fee_assumptions (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, coin TEXT NOT NULL, taker_fee_bps REAL NOT NULL,
    fee_source TEXT, ts_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS closes_closed_ms ON closes (closed_ms);
CREATE INDEX IF NOT EXISTS orders_ts_ms ON orders (ts_ms);
CREATE INDEX IF NOT EXISTS user_fills_cloid ON user_fills (cloid);
CREATE VIEW IF NOT EXISTS order_status AS
    SELECT o.cloid, o.coin, o.kind, o.reason, o.reduce_only, o.ts_ms,
           COALESCE((SELECT e.event FROM order_events e WHERE e.order_key = o.cloid
                     AND e.event IN ('filled', 'rejected', 'cancelled') ORDER BY e.rec_ns LIMIT 1),
                    (SELECT e.event FROM order_events e WHERE e.order_key = o.cloid AND e.event = 'acked'),
                    'submitted') AS status
    FROM orders o;
"""

_TABLES = ("signals", "signal_followups", "orders", "order_events", "fills", "user_fills", "closes",
           "hardstop_states", "hardstop_progress", "feed_states", "latest", "fee_assumptions")

Row = tuple[str, tuple[Any, ...]]  # (SQL, parameters)


class JournalError(Exception):
    """The journal cannot be used (a newer schema, not a database)."""


class MalformedMessage(ValueError):
    """A decoded message whose content cannot be journaled (empty key, non-finite amount)."""


def journal_path(run_dir: Path) -> Path:
    return run_dir / JOURNAL_FILE


def open_journal(path: Path, synchronous: str = "normal", busy_timeout_ms: int = 200) -> sqlite3.Connection:
    """Open (creating if needed) the journal for writing: WAL, the schema, the version check."""
    if synchronous not in ("normal", "full"):
        raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
    if not path.exists():
        # Readable by the user only (positions and PnL); SQLite gives the -wal and -shm files the same mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(f"{path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("BEGIN IMMEDIATE")
        for stmt in SCHEMA.split(";\n"):  # statements end a line; comments may hold a ';' mid-line
            if stmt.strip():
                conn.execute(stmt)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_ms', ?)",
                         (str(time.time_ns() // 1_000_000),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise JournalError(f"{path}: schema version {row[0]} is newer than this hip3's ({SCHEMA_VERSION})")
        elif int(row[0]) < SCHEMA_VERSION:
            _upgrade(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except (sqlite3.Error, JournalError, ValueError) as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        if isinstance(e, JournalError):
            raise
        raise JournalError(f"{path}: {e}") from None
    return conn


def _upgrade(conn: sqlite3.Connection) -> None:
    """Add the columns a journal from an older hip3 lacks (inside the caller's transaction)."""
    for table, column, sql_type in ADDED_COLUMNS:
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def _dec(x: Decimal, field: str) -> str:
    if not x.is_finite():
        raise MalformedMessage(f"{field} is not finite: {x}")
    return str(x)


def _b(x: bool) -> int:
    return 1 if x else 0


def _need(value: str, field: str) -> str:
    if not value:
        raise MalformedMessage(f"{field} is empty")
    return value


def _text(value: str | None) -> str | None:
    return None if value is None else redact(value)


def rows_for(msg: Msg, rec_ns: int) -> list[Row] | None:
    """The rows one message becomes, or ``None`` if the journal does not keep this kind of message.

    Raises ``MalformedMessage`` for content that cannot be journaled. Pure: no database involved.
    """
    rec_ms = rec_ns // 1_000_000
    ins = "INSERT OR IGNORE INTO "
    if isinstance(msg, OrderSubmitted):
        cloid = _need(msg.cloid, "cloid")
        fee = [] if msg.kind != "entry" else [_fee_row(f"o:{cloid}", "order", msg.coin, msg.assumed_fee_bps,
                                                       msg.fee_source, rec_ms, rec_ns)]
        return [
            *fee,
            (ins + "orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
             (cloid, msg.intent_id, msg.coin, msg.asset, _b(msg.is_buy), _dec(msg.px, "px"), _dec(msg.sz, "sz"),
              _b(msg.reduce_only), msg.tif, msg.kind, _text(msg.reason), msg.nonce, msg.post_id, msg.edge_bps,
              msg.origin_recv_ns, msg.intent_created_ns, msg.intent_recv_ns, msg.sent_ns, rec_ms, rec_ns)),
            _event(cloid, "submitted", cloid, msg.intent_id, msg.coin, None, msg.reduce_only, _text(msg.reason),
                   None, _dec(msg.sz, "sz"), _dec(msg.px, "px"), msg.sent_ns, rec_ms, rec_ns),
        ]
    if isinstance(msg, OrderAcked):
        cloid = _need(msg.cloid, "cloid")
        return [_event(cloid, "acked", cloid, None, msg.coin, msg.oid, None, None, None, None, None, msg.recv_ns,
                       rec_ms, rec_ns)]
    if isinstance(msg, OrderFilled):
        cloid = _need(msg.cloid, "cloid")
        return [_event(cloid, "filled", cloid, None, msg.coin, msg.oid, msg.reduce_only, None, None,
                       _dec(msg.total_sz, "total_sz"), _dec(msg.avg_px, "avg_px"), msg.recv_ns, rec_ms, rec_ns)]
    if isinstance(msg, OrderRejected):
        key = msg.cloid or (f"intent:{msg.intent_id}" if msg.intent_id else "")
        _need(key, "cloid and intent_id")
        return [_event(key, "rejected", msg.cloid or None, msg.intent_id or None, msg.coin, None, msg.reduce_only,
                       _text(msg.reason), msg.benign, None, None, msg.recv_ns, rec_ms, rec_ns)]
    if isinstance(msg, OrderCancelled):
        cloid = _need(msg.cloid, "cloid")
        return [_event(cloid, "cancelled", cloid, None, msg.coin, msg.oid, None, _text(msg.reason), None, None,
                       None, msg.recv_ns, rec_ms, rec_ns)]
    if isinstance(msg, OrderUpdate):
        key = msg.cloid or f"oid:{msg.oid}"
        return [_event(key, f"ws:{_need(msg.status, 'status')}", msg.cloid, None, msg.coin, msg.oid, None, None,
                       None, _dec(msg.sz, "sz"), _dec(msg.limit_px, "limit_px"), msg.recv_ns,
                       msg.status_ms or rec_ms, rec_ns)]
    if isinstance(msg, Fill):
        post_key = f"p:{msg.cloid}" if msg.cloid else f"p:oid:{msg.oid}"
        key = f"t:{msg.coin}:{msg.tid}" if msg.tid else post_key
        return [(ins + "fills VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (key, msg.coin, msg.cloid, msg.oid, msg.tid, _b(msg.is_buy), _dec(msg.px, "px"), _dec(msg.sz, "sz"),
                  _dec(msg.fee, "fee"), msg.source, msg.time_ms or rec_ms, msg.recv_ns, rec_ns))]
    if isinstance(msg, UserFill):
        return [(ins + "user_fills VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (_need(msg.coin, "coin"), msg.tid, msg.cloid, msg.oid, _b(msg.is_buy), _dec(msg.px, "px"),
                  _dec(msg.sz, "sz"), _dec(msg.fee, "fee"), _dec(msg.closed_pnl, "closed_pnl"), _b(msg.crossed),
                  _b(msg.is_snapshot), msg.time_ms or rec_ms, msg.recv_ns, rec_ns))]
    if isinstance(msg, PositionClosed):
        return [(ins + "closes VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 (_need(msg.coin, "coin"), _b(msg.is_long), _dec(msg.size, "size"), _dec(msg.entry_px, "entry_px"),
                  _dec(msg.exit_px, "exit_px"), _dec(msg.pnl_usd, "pnl_usd"), _dec(msg.fees_usd, "fees_usd"),
                  msg.hold_ms, _text(msg.exit_reason), msg.closed_ms or rec_ms, rec_ns))]
    if isinstance(msg, Signal):
        return [(ins + "signals VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (_need(msg.signal_id, "signal_id"), msg.coin, _b(msg.is_buy), msg.raw_edge_bps, msg.net_edge_bps,
                  msg.threshold_bps, msg.oracle_px, msg.best_px, msg.book_sz, msg.suggested_sz, msg.confidence,
                  msg.recv_ns, msg.time_ms or rec_ms, rec_ns)),
                _fee_row(f"s:{msg.signal_id}", "signal", msg.coin, msg.taker_fee_bps, msg.fee_source,
                         msg.time_ms or rec_ms, rec_ns)]
    if isinstance(msg, SignalFollowup):
        return [(ins + "signal_followups (signal_id, offset_ms, coin, oracle_px, best_px, edge_bps, edge_change_bps, "
                 "ts_ms, rec_ns, exit_px) VALUES (?,?,?,?,?,?,?,?,?,?)",
                 (_need(msg.signal_id, "signal_id"), msg.offset_ms, msg.coin, msg.oracle_px, msg.best_px,
                  msg.edge_bps, msg.edge_change_bps, msg.time_ms or rec_ms, rec_ns, msg.exit_px or None))]
    if isinstance(msg, HardStopState):
        return [(ins + "hardstop_states VALUES (?,?,?,?,?,?)",
                 (msg.epoch, _b(msg.latched), _text(msg.reason), msg.since_ms, msg.since_ms or rec_ms, rec_ns))]
    if isinstance(msg, HardStopProgress):
        return [(ins + "hardstop_progress VALUES (?,?,?,?,?,?,?,?)",
                 (msg.epoch, msg.attempts, msg.positions, msg.open_orders, _b(msg.done), _b(msg.alert), rec_ms,
                  rec_ns))]
    if isinstance(msg, FeedState):
        return [(ins + "feed_states VALUES (?,?,?,?,?,?)",
                 (msg.conn_id, _need(msg.state, "state"), _b(msg.market_data_ready), _b(msg.user_ready), rec_ms,
                  rec_ns))]
    if isinstance(msg, PositionSnapshot):
        summary = {
            "version": msg.version, "synced": msg.synced, "src": msg.src,
            "realized_pnl_usd": _dec(msg.realized_pnl_usd, "realized_pnl_usd"),
            "fees_usd": _dec(msg.fees_usd, "fees_usd"),
            "positions": [{"coin": p.coin, "is_long": p.is_long, "size": str(p.size), "entry_px": str(p.entry_px),
                           "opened_ms": p.opened_ms, "entry_cloid": p.entry_cloid} for p in msg.positions],
            "open_orders": len(msg.open_orders),
        }
        return [("INSERT OR REPLACE INTO latest VALUES ('positions', ?, ?)",
                 (msgspec.json.encode(summary).decode(), rec_ns))]
    if isinstance(msg, MarketTerms):
        return [("INSERT OR REPLACE INTO latest VALUES ('terms', ?, ?)",
                 (msgspec.json.encode(msg).decode(), rec_ns))]
    return None


def _fee_row(key: str, kind: str, coin: str, fee_bps: float, source: str, ts_ms: int, rec_ns: int) -> Row:
    if fee_bps != fee_bps or fee_bps in (float("inf"), float("-inf")):
        raise MalformedMessage(f"assumed fee is not finite: {fee_bps}")
    return ("INSERT OR IGNORE INTO fee_assumptions VALUES (?,?,?,?,?,?,?)",
            (key, kind, _need(coin, "coin"), fee_bps, source, ts_ms, rec_ns))


def _event(key: str, event: str, cloid: str | None, intent_id: str | None, coin: str, oid: int | None,
           reduce_only: bool | None, reason: str | None, benign: bool | None, sz: str | None, px: str | None,
           recv_ns: int, ts_ms: int, rec_ns: int) -> Row:
    return ("INSERT OR IGNORE INTO order_events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (key, event, cloid, intent_id, coin, oid, None if reduce_only is None else _b(reduce_only), reason,
             None if benign is None else _b(benign), sz, px, recv_ns, ts_ms, rec_ns))


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


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Row count of every journal table (tests, the report's header)."""
    return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in _TABLES}

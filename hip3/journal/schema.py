"""The trade journal's file: where it is, its tables and their natural keys (``SCHEMA``), opening it
for writing (WAL, the version check, the columns an older journal lacks), and counting its rows.
The writer is ``hip3.journal.db``; the rows each message becomes are ``hip3.journal.rows``."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

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


class JournalError(Exception):
    """The journal cannot be used (a newer schema, not a database)."""


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


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Row count of every journal table (tests, the report's header)."""
    return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in _TABLES}

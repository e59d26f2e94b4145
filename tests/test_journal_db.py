"""The journal writer (hip3/journal/db.py): every message kind becomes its rows, replays and restarts never
duplicate a row, malformed or unexpected messages are counted and skipped, an unwritable database keeps
the rows for later, the schema is versioned, and no secret reaches the file."""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hip3.journal.db import JournalWriter
from hip3.journal.rows import rows_for
from hip3.journal.schema import SCHEMA_VERSION, open_journal, table_counts
from hip3.messages import (
    Bbo,
    FeedState,
    Fill,
    HardStopProgress,
    HardStopState,
    Msg,
    OrderAcked,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdate,
    Position,
    PositionClosed,
    PositionSnapshot,
    Signal,
    SignalFollowup,
    UserFill,
)

D = Decimal


# ---- message factories (also used by tests/test_report.py) ------------------------------------------


def submitted(cloid: str, coin: str = "xyz:GOLD", kind: str = "entry", reason: str = "", origin: int = 1_000_000,
              created: int = 1_100_000, received: int = 1_150_000, sent: int = 1_200_000,
              intent_id: str = "", fee_bps: float = 0.0, fee_source: str = "") -> OrderSubmitted:
    return OrderSubmitted(cloid=cloid, intent_id=intent_id or f"i-{cloid}", coin=coin, asset=110000, is_buy=True,
                          px=D("100.5"), sz=D("0.2"), reduce_only=kind != "entry", tif="Ioc", kind=kind,
                          reason=reason, nonce=1, post_id=7, origin_recv_ns=origin, sent_ns=sent, edge_bps=12.5,
                          intent_created_ns=created, intent_recv_ns=received, assumed_fee_bps=fee_bps,
                          fee_source=fee_source)


def filled(cloid: str, coin: str = "xyz:GOLD", reduce_only: bool = False) -> OrderFilled:
    return OrderFilled(cloid=cloid, oid=42, coin=coin, is_buy=True, total_sz=D("0.2"), avg_px=D("100.5"),
                       reduce_only=reduce_only, recv_ns=5)


def user_fill(tid: int, cloid: str | None, fee: str = "0.01", coin: str = "xyz:GOLD",
              is_snapshot: bool = False) -> UserFill:
    return UserFill(coin=coin, px=D("100.5"), sz=D("0.2"), is_buy=True, time_ms=1_700_000_000_000 + tid, oid=42,
                    tid=tid, cloid=cloid, fee=D(fee), closed_pnl=D(0), crossed=True, is_snapshot=is_snapshot,
                    recv_ns=9)


def closed(coin: str = "xyz:GOLD", pnl: str = "0.5", fees: str = "0.01", reason: str = "mark_regression",
           closed_ms: int = 1_700_000_010_000, hold_ms: int = 1500) -> PositionClosed:
    return PositionClosed(coin=coin, is_long=True, size=D("0.2"), entry_px=D("100"), exit_px=D("102.5"),
                          pnl_usd=D(pnl), fees_usd=D(fees), hold_ms=hold_ms, exit_reason=reason, closed_ms=closed_ms)


def one_of_each() -> list[Msg]:
    """One message of every kind the journal keeps."""
    return [
        Signal(signal_id="s1", coin="xyz:GOLD", is_buy=True, raw_edge_bps=20.0, net_edge_bps=15.0, threshold_bps=10.0,
               oracle_px=101.0, best_px=100.0, book_sz=3.0, suggested_sz=0.2, confidence=0.9, recv_ns=1,
               time_ms=1_700_000_000_000),
        SignalFollowup(signal_id="s1", coin="xyz:GOLD", offset_ms=1000, oracle_px=101.0, best_px=100.8, edge_bps=2.0,
                       edge_change_bps=-13.0, time_ms=1_700_000_001_000),
        submitted("0xc1"),
        OrderAcked(cloid="0xc1", oid=42, coin="xyz:GOLD", recv_ns=3),
        filled("0xc1"),
        OrderRejected(cloid="0xc2", coin="xyz:GOLD", reason="ioc miss", benign=True, reduce_only=False, recv_ns=4),
        OrderRejected(cloid="", coin="xyz:GOLD", reason="expired", benign=True, reduce_only=True, recv_ns=4,
                      intent_id="flat-9"),
        OrderCancelled(cloid="0xc3", oid=43, coin="xyz:GOLD", reason="hardstop", recv_ns=5),
        OrderUpdate(coin="xyz:GOLD", oid=42, cloid="0xc1", is_buy=True, limit_px=D("100.5"), sz=D(0),
                    orig_sz=D("0.2"), status="filled", status_ms=1_700_000_000_500, recv_ns=6),
        Fill(coin="xyz:GOLD", cloid="0xc1", oid=42, tid=0, is_buy=True, px=D("100.5"), sz=D("0.2"), fee=D(0),
             source="post", time_ms=1_700_000_000_400, recv_ns=7),
        user_fill(777, "0xc1"),
        closed(),
        HardStopState(latched=True, reason="operator: test", epoch=1, since_ms=1_700_000_020_000),
        HardStopProgress(epoch=1, positions=1, open_orders=0, attempts=1, done=False, alert=False),
        FeedState(state="connected", conn_id=5, market_data_ready=True, user_ready=True, since_ns=1),
        PositionSnapshot(version=3, synced=True, positions=(Position(coin="xyz:GOLD", asset=110000, is_long=True,
                         size=D("0.2"), entry_px=D(100), opened_ms=1),), open_orders=(),
                         realized_pnl_usd=D("0.5"), fees_usd=D("0.01")),
    ]


EXPECTED = {"signals": 1, "signal_followups": 1, "orders": 1, "order_events": 7, "fills": 1, "user_fills": 1,
            "closes": 1, "hardstop_states": 1, "hardstop_progress": 1, "feed_states": 1, "latest": 1,
            "fee_assumptions": 2}


def write(path: Path, msgs: list[Msg], **kw: Any) -> JournalWriter:
    w = JournalWriter(path, **kw)
    for m in msgs:
        w.add(m)
    w.flush()
    return w


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return table_counts(conn)
    finally:
        conn.close()


def test_every_message_kind_becomes_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    w = write(path, one_of_each())
    assert counts(path) == EXPECTED
    assert w.stats["journal_rows"] == sum(EXPECTED.values()) - 1  # the snapshot summary is an update
    assert w.stats["journal_malformed"] == w.stats["journal_unexpected"] == w.stats["journal_errors"] == 0
    assert all(p.stat().st_mode & 0o077 == 0 for p in tmp_path.glob("j.sqlite*"))  # the user's only
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    row = conn.execute("SELECT intent_id, kind, px, sz, origin_recv_ns, intent_recv_ns, sent_ns, edge_bps "
                       "FROM orders").fetchone()
    assert row == ("i-0xc1", "entry", "100.5", "0.2", 1_000_000, 1_150_000, 1_200_000, 12.5)
    events = dict(conn.execute("SELECT event, order_key FROM order_events WHERE coin='xyz:GOLD' AND "
                               "order_key IN ('0xc1')").fetchall())
    assert set(events) == {"submitted", "acked", "filled", "ws:filled"}
    refused = conn.execute("SELECT intent_id, reason, benign FROM order_events WHERE order_key='intent:flat-9'")
    assert refused.fetchone() == ("flat-9", "expired", 1)
    assert conn.execute("SELECT status FROM order_status WHERE cloid='0xc1'").fetchone()[0] == "filled"
    assert conn.execute("SELECT pnl_usd, fees_usd, exit_reason, closed_ms FROM closes").fetchone() == (
        "0.5", "0.01", "mark_regression", 1_700_000_010_000)
    assert conn.execute("SELECT fill_key FROM fills").fetchone()[0] == "p:0xc1"
    assert conn.execute("SELECT epoch, latched, reason FROM hardstop_states").fetchone() == (1, 1, "operator: test")
    latest = msgspec.json.decode(conn.execute("SELECT value FROM latest WHERE key='positions'").fetchone()[0])
    assert latest["version"] == 3 and latest["realized_pnl_usd"] == "0.5"
    assert latest["positions"][0]["coin"] == "xyz:GOLD"


def test_replays_and_a_restarted_writer_never_duplicate_rows(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    msgs = one_of_each()
    write(path, msgs)
    # The same messages again, as a late joiner sees replayed state: fresh sequence numbers, a restarted
    # sender's src; and a second writer process on the same file (a restarted recorder).
    replayed = [msgspec.structs.replace(m, seq=1000 + i, src="position_tracker/positions") for i, m in
                enumerate(msgs)]
    w1 = write(path, replayed)
    w2 = write(path, msgs)
    assert counts(path) == EXPECTED
    assert w1.stats["journal_rows"] == 0 and w2.stats["journal_rows"] == 0
    assert w1.stats["journal_dupes"] == sum(EXPECTED.values()) - 1
    # A new status for a known order, and the snapshot summary is replaced, not appended.
    w3 = write(path, [OrderCancelled(cloid="0xc1", oid=42, coin="xyz:GOLD", reason="x", recv_ns=1),
                      msgspec.structs.replace(msgs[-1], version=4, realized_pnl_usd=D(2))])
    assert w3.stats["journal_rows"] == 1
    c = counts(path)
    assert c["order_events"] == EXPECTED["order_events"] + 1 and c["latest"] == 1


def test_unchanged_periodic_snapshots_are_not_rewritten(tmp_path: Path) -> None:
    snap = one_of_each()[-1]
    w = write(tmp_path / "j.sqlite", [snap, snap, snap])
    assert w.stats["journal_commits"] == 1 and w.stats["journal_pending"] == 0
    assert counts(tmp_path / "j.sqlite")["latest"] == 1


def test_malformed_and_unexpected_messages_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    bad: list[Msg] = [
        submitted(""),  # no cloid
        closed(pnl="NaN"),  # a non-finite amount
        Signal(signal_id="", coin="xyz:GOLD", is_buy=True, raw_edge_bps=1.0, net_edge_bps=1.0, threshold_bps=1.0,
               oracle_px=1.0, best_px=1.0, book_sz=1.0, suggested_sz=1.0, confidence=1.0, recv_ns=1, time_ms=1),
        OrderRejected(cloid="", coin="xyz:GOLD", reason="?", benign=True, reduce_only=False, recv_ns=1),
    ]
    unexpected = Bbo(coin="xyz:GOLD", bid_px=1.0, bid_sz=1.0, ask_px=2.0, ask_sz=1.0, exch_ms=1, recv_ns=1)
    huge = OrderAcked(cloid="0xbig", oid=2**70, coin="xyz:GOLD", recv_ns=1)  # beyond SQLite's 64-bit integers
    w = JournalWriter(path)
    results = [w.add(m) for m in [*bad, unexpected, huge, closed()]]
    assert results == [False] * 5 + [True, True]
    assert w.stats["journal_malformed"] == 4 and w.stats["journal_unexpected"] == 1
    assert "Bbo" in w.last_problem
    assert w.flush() == 1  # the good close; the huge oid row is refused alone
    assert w.stats["journal_malformed"] == 5 and "refused" in w.last_problem
    assert counts(path)["closes"] == 1 and counts(path)["order_events"] == 0
    assert w.pending == 0  # the refused row does not block later flushes


def test_unwritable_database_keeps_rows_until_it_works(tmp_path: Path) -> None:
    path = tmp_path / "later" / "j.sqlite"  # the directory does not exist yet
    w = JournalWriter(path, max_pending=5)
    for i in range(7):
        w.add(user_fill(i, f"0x{i}"))
    assert w.flush() == 0 and not w.connected
    assert w.stats["journal_errors"] == 1 and w.last_error
    assert w.pending == 5 and w.stats["journal_dropped"] == 2
    path.parent.mkdir()
    assert w.flush() == 5
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT tid FROM user_fills ORDER BY tid")] == [2, 3, 4, 5, 6]


def test_a_newer_schema_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    write(path, [closed()])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    w = JournalWriter(path)
    w.add(closed(coin="xyz:SILVER"))
    assert w.flush() == 0 and "newer" in w.last_error
    assert counts(path)["closes"] == 1
    with pytest.raises(Exception, match="newer"):
        open_journal(path)


def test_a_version_1_journal_gains_the_followup_exit_price(tmp_path: Path) -> None:
    """A journal written before follow-ups carried their exit price is upgraded in place when opened for
    writing: old rows keep NULL, new rows get the price, and the version says 2."""
    path = tmp_path / "j.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE signal_followups (
            signal_id TEXT NOT NULL, offset_ms INTEGER NOT NULL, coin TEXT NOT NULL, oracle_px REAL, best_px REAL,
            edge_bps REAL, edge_change_bps REAL, ts_ms INTEGER NOT NULL, rec_ns INTEGER NOT NULL,
            PRIMARY KEY (signal_id, offset_ms));
        INSERT INTO signal_followups VALUES ('old', 1000, 'xyz:GOLD', 1.0, 1.0, 0.5, -1.0, 5, 6);
    """)
    conn.close()
    f = SignalFollowup(signal_id="new", coin="xyz:GOLD", offset_ms=1000, oracle_px=101.0, best_px=100.8,
                       edge_bps=2.0, edge_change_bps=-13.0, time_ms=1_700_000_001_000, exit_px=100.6)
    w = write(path, [f])
    assert w.stats["journal_rows"] == 1 and w.stats["journal_malformed"] == 0, w.last_problem
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT signal_id, exit_px FROM signal_followups")) == {"old": None, "new": 100.6}
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert SCHEMA_VERSION == 2


def test_full_synchronous_is_applied(tmp_path: Path) -> None:
    conn = open_journal(tmp_path / "j.sqlite", synchronous="full")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()
    conn = open_journal(tmp_path / "j.sqlite")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_no_key_like_secret_reaches_the_journal(tmp_path: Path) -> None:
    key = "0x" + "ab" * 32
    path = tmp_path / "j.sqlite"
    w = write(path, [*one_of_each(), HardStopState(latched=True, reason=f"operator: pasted {key}", epoch=2,
                                                    since_ms=1),
                     closed(reason=f"weird {key[2:]}", closed_ms=5)])
    assert w.stats["journal_rows"] == sum(EXPECTED.values()) + 1
    w.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert not re.search(rb"[0-9a-fA-F]{64}", data)
    assert b"[REDACTED]" in data


def test_rows_for_is_pure_and_keys_fills_naturally() -> None:
    stream = Fill(coin="xyz:GOLD", cloid="0xc1", oid=42, tid=99, is_buy=True, px=D(1), sz=D(1), fee=D(0),
                  source="stream", time_ms=5, recv_ns=1)
    rows = rows_for(stream, 10**18)
    assert rows is not None and rows[0][1][0] == "t:xyz:GOLD:99"
    assert rows_for(Bbo(coin="c", bid_px=1.0, bid_sz=1.0, ask_px=1.0, ask_sz=1.0, exch_ms=1, recv_ns=1), 1) is None


def test_recorder_config_section_is_validated() -> None:
    from hip3.config import ConfigError, parse_config

    base = 'mode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n'
    cfg = parse_config(base + '[recorder]\ncommit_interval_ms = 0\nsynchronous = "full"\n')
    assert cfg.recorder.commit_interval_ms == 0 and cfg.recorder.synchronous == "full"
    assert parse_config(base).recorder.commit_interval_ms == 50
    for bad, where in (('commit_interval_ms = -1', "recorder.commit_interval_ms"),
                       ('commit_interval_ms = 5000', "recorder.commit_interval_ms"),
                       ('synchronous = "off"', "recorder.synchronous"),
                       ('max_pending_rows = 10', "recorder.max_pending_rows"),
                       ('enabled = false', "recorder.enabled")):
        with pytest.raises(ConfigError, match=re.escape(where)):
            parse_config(base + f"[recorder]\n{bad}\n", "t.toml")


def test_fee_assumptions_and_the_latest_market_terms(tmp_path: Path) -> None:
    from tests.terms_helpers import terms_msg

    path = tmp_path / "j.sqlite"
    sig = msgspec.structs.replace(one_of_each()[0], taker_fee_bps=9.0, fee_source="exchange")
    w = write(path, [sig, submitted("0xd1", fee_bps=9.0, fee_source="exchange"),
                     submitted("0xd2", kind="flatten", reason="time_stop"), terms_msg(["xyz:GOLD"], 9.0)])
    assert w.stats["journal_malformed"] == w.stats["journal_unexpected"] == 0
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT key, kind, coin, taker_fee_bps, fee_source FROM fee_assumptions "
                        "ORDER BY key").fetchall()
    assert rows == [("o:0xd1", "order", "xyz:GOLD", 9.0, "exchange"), ("s:s1", "signal", "xyz:GOLD", 9.0, "exchange")]
    latest = msgspec.json.decode(conn.execute("SELECT value FROM latest WHERE key = 'terms'").fetchone()[0])
    assert latest["markets"][0]["coin"] == "xyz:GOLD" and latest["markets"][0]["taker_fee_bps"] == 9.0
    bad = msgspec.structs.replace(sig, signal_id="s2", taker_fee_bps=float("nan"))
    assert not JournalWriter(path).add(bad)

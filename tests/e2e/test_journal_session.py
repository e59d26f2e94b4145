"""A short paper session end to end (real processes, the bundled simulator), then the journal.

The journal must hold what the session did: entry and exit orders (exactly the cloids the simulator
received), their fills, the position closes that ``status`` counted (by exit reason), the hard stop and its
flatten; ``supervisor.py report --json`` must equal a direct computation from the journal, while the
supervisor runs and after it stopped; the file passes ``integrity_check`` and holds no key-like secret.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hip3.config import REPO_ROOT
from hip3.journal.schema import journal_path, table_counts
from hip3.runtime.percentiles import percentile_round
from tests.e2e.helpers import alive, cli, status, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    text = (default.replace('run_dir = "run"', f'run_dir = "{run_dir}"')
            + "\n[logging]\nstderr = false\n[recorder]\ncommit_interval_ms = 20\n")
    path = run_dir / "paper.toml"
    path.write_text(text)
    yield path
    cli(path, "stop", timeout=60)


def _db(run_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{journal_path(run_dir)}?mode=ro", uri=True)


def _q(run_dir: Path, sql: str) -> list[Any]:
    conn = _db(run_dir)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _report(config: Path) -> dict[str, Any]:
    r = cli(config, "report", "--json", timeout=30)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def _direct(run_dir: Path) -> dict[str, Any]:
    """The report's checkable figures, computed here straight from the journal's rows."""
    closes = _q(run_dir, "SELECT coin, exit_reason, pnl_usd FROM closes")
    orders = _q(run_dir, "SELECT kind, origin_recv_ns, sent_ns, intent_recv_ns FROM orders")
    t2t = [(s - o) / 1000 for k, o, s, _ in orders if k == "entry" and o > 0 and s >= o]
    added = [(s - r) / 1000 for _, _, s, r in orders if r > 0 and s >= r]
    return {
        "trades": len(closes),
        "pnl_usd": float(sum((Decimal(p) for _, _, p in closes), Decimal(0))),
        "by_market": dict(Counter(c for c, _, _ in closes)),
        "by_reason": dict(Counter(r for _, r, _ in closes)),
        "orders": len(orders),
        "orders_by_kind": dict(Counter(k for k, _, _, _ in orders)),
        "t2t_entry": (len(t2t), round(percentile_round(t2t, 0.5), 1) if t2t else None),
        "added": (len(added), round(percentile_round(added, 0.99), 1) if added else None),
        "signals": _q(run_dir, "SELECT COUNT(*) FROM signals")[0][0],
    }


def _check_report(rep: dict[str, Any], d: dict[str, Any], running: bool = False) -> None:
    t = rep["totals"]
    assert t["trades"] == d["trades"] and t["pnl_usd"] == pytest.approx(d["pnl_usd"], abs=1e-12)
    assert {k: v["trades"] for k, v in rep["by_market"].items()} == d["by_market"]
    assert {k: v["trades"] for k, v in rep["by_exit_reason"].items()} == d["by_reason"]
    c = rep["counts"]
    assert c["orders"] == d["orders"] and c["orders_by_kind"] == d["orders_by_kind"]
    # Signals keep coming while the hard stop is latched: exact once the session stopped.
    assert c["signals"] >= d["signals"] if running else c["signals"] == d["signals"]
    lat = rep["latency_us"]
    assert (lat["tick_to_trade_entry"]["n"], lat["tick_to_trade_entry"]["p50"]) == d["t2t_entry"]
    assert (lat["executor_added"]["n"], lat["executor_added"]["p99"]) == d["added"]


def test_paper_session_journal_matches_the_session_and_the_report(config: Path, run_dir: Path) -> None:
    r = cli(config, "start", "--detach")
    assert r.returncode == 0, r.stderr
    st = status(config)
    assert [a["name"] for a in st["actors"]][-1] == "recorder" and all(a["ready"] for a in st["actors"])

    def traded() -> bool:
        t = status(config)["trading"]
        return bool(t["entries"] >= 1 and t["exits"] >= 1)

    assert wait_until(traded, 40, 0.5), status(config)["trading"]

    # Stop trading with the hard stop: the flatten closes what is open, then nothing new happens.
    assert cli(config, "hardstop", "--reason", "end of journal e2e").returncode == 0

    def flat() -> bool:
        s = status(config)
        fl = s["hard_stop"].get("flatten") or {}
        return bool(fl.get("done")) and not s["trading"]["positions"]

    assert wait_until(flat, 30, 0.3), status(config)["hard_stop"]

    def journal_caught_up() -> bool:
        t = status(config)["trading"]
        n = _q(run_dir, "SELECT COUNT(*) FROM closes")[0][0]
        return bool(n == t["exits"])

    assert wait_until(journal_caught_up, 10, 0.2)

    # kill -9 the recorder: it is restarted, joins the replayed state streams (hard stop, positions, feed
    # state) and writes no row twice; no other actor notices.
    conn = _db(run_dir)
    before = table_counts(conn)
    conn.close()
    old = next(a for a in status(config)["actors"] if a["name"] == "recorder")
    os.kill(old["pid"], signal.SIGKILL)

    def recorder_back() -> bool:
        a = next(a for a in status(config)["actors"] if a["name"] == "recorder")
        return bool(a["ready"] and a["pid"] != old["pid"] and a["restarts"] == 1
                    and a["stats"].get("journal_dupes", 0) > 0)

    assert wait_until(recorder_back, 15, 0.2), status(config)["actors"]
    conn = _db(run_dir)
    after = table_counts(conn)
    conn.close()
    quiet = ("orders", "order_events", "fills", "user_fills", "closes", "hardstop_states", "feed_states")
    assert {k: after[k] for k in quiet} == {k: before[k] for k in quiet}  # signals go on while latched
    st = status(config)
    assert all(a["restarts"] == 0 and a["ready"] for a in st["actors"] if a["name"] != "recorder")
    assert st["hard_stop"]["epoch"] == 1
    t = st["trading"]

    # Position closes: the same count and the same exit reasons as the session reported.
    assert dict(Counter(r for (r,) in _q(run_dir, "SELECT exit_reason FROM closes"))) == t["exits_by_reason"]
    # Entries: status counts filled non-reduce-only orders.
    entries = _q(run_dir, "SELECT COUNT(*) FROM order_events WHERE event = 'filled' AND reduce_only = 0 "
                          "AND CAST(sz AS REAL) > 0")[0][0]
    assert entries == t["entries"]
    # At least one entry and one exit order filled, with their fills.
    statuses = Counter(_q(run_dir, "SELECT kind, status FROM order_status"))
    assert statuses[("entry", "filled")] >= 1
    assert statuses[("flatten", "filled")] + statuses[("hardstop", "filled")] >= 1
    assert _q(run_dir, "SELECT COUNT(*) FROM fills")[0][0] >= 2
    assert _q(run_dir, "SELECT COUNT(*) FROM user_fills WHERE is_snapshot = 0")[0][0] >= 2
    # Every order the simulator received is in the journal, and nothing else.
    log = run_dir / "sim" / "orders.jsonl"
    sim_cloids = {c for line in log.read_text().splitlines() for c in json.loads(line).get("cloids", [])
                  if json.loads(line).get("status") != "fault"}
    assert sim_cloids and {c for (c,) in _q(run_dir, "SELECT cloid FROM orders")} == sim_cloids
    # Every entry order carries the fee the detector assumed: the exchange's (the simulator's default
    # terms: tier 0, deployer scale 1.0, so 9 bps a leg), never the old constant.
    assumed = _q(run_dir, "SELECT f.taker_fee_bps, f.fee_source FROM orders o JOIN fee_assumptions f "
                          "ON f.key = 'o:' || o.cloid WHERE o.kind = 'entry'")
    assert assumed and set(assumed) == {(9.0, "exchange")}
    # The hard stop and its flatten.
    assert _q(run_dir, "SELECT latched, reason FROM hardstop_states WHERE epoch = 1") == [
        (1, "operator: end of journal e2e")]
    assert _q(run_dir, "SELECT MAX(done) FROM hardstop_progress WHERE epoch = 1") == [(1,)]
    # The recorder's counters are in status.
    rec = next(a for a in st["actors"] if a["name"] == "recorder")
    assert rec["stats"].get("journal_rows", 0) > 0 and rec["stats"].get("journal_errors", 0) == 0
    assert "journal_rows=" in cli(config, "status").stdout

    # The report equals a direct computation, while the supervisor runs...
    d = _direct(run_dir)
    assert d["trades"] >= 1 and d["t2t_entry"][0] >= 1
    rep = _report(config)
    _check_report(rep, d, running=True)
    # What each trade paid against what the detector assumed: the simulator charges the same 9 bps.
    fee = rep["totals"]
    assert fee["fee_compared_trades"] >= 1 and fee["fee_assumed_bps"] == pytest.approx(9.0)
    assert fee["fee_paid_bps"] == pytest.approx(9.0, abs=0.01)  # the exchange's fees are rounded to 1e-6 USD

    pids = [a["pid"] for a in status(config)["actors"] if a["pid"]]
    assert cli(config, "stop").returncode == 0
    assert wait_until(lambda: not any(alive(p) for p in pids), 10)

    # ... and after it stopped (read-only, no supervisor).
    _check_report(_report(config), _direct(run_dir))
    text = cli(config, "report")
    assert text.returncode == 0 and f"trades {d['trades']}" in text.stdout
    conn = _db(run_dir)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    data = b"".join(p.read_bytes() for p in run_dir.glob("journal.sqlite*"))
    assert not re.search(rb"[0-9a-fA-F]{64}", data)

"""The session report (hip3/journal/report.py) against journal rows written here: PnL net of the fees attributed
from userFills, win rate, by market, by exit reason, latency percentiles, --since, hard-stop events, and
``python supervisor.py report`` reading the journal read-only without a supervisor."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import supervisor as cli
from hip3.journal.db import JournalWriter
from hip3.journal.report import build_report, format_report, open_readonly, parse_since
from hip3.journal.schema import journal_path
from hip3.messages import HardStopProgress, HardStopState, Msg, OrderRejected, Signal
from tests.conftest import make_config
from tests.test_journal_db import closed, submitted, user_fill

T0_MS = 1_700_000_000_000


class Clock:
    """The writer's wall clock, driven by the test (ms)."""

    def __init__(self) -> None:
        self.ms = T0_MS

    def __call__(self) -> int:
        return self.ms * 1_000_000


def journal(path: Path, steps: list[tuple[int, Msg]]) -> None:
    """Write each message at its own time (ms after T0), in order."""
    clock = Clock()
    w = JournalWriter(path, clock_ns=clock)
    for at_ms, msg in steps:
        clock.ms = T0_MS + at_ms
        assert w.add(msg), w.last_problem
    w.flush()
    w.close()


def session() -> list[tuple[int, Msg]]:
    """Two GOLD trades, two SILVER closes (one with no fills recorded, one external), a hard stop."""
    return [
        # GOLD #1: entry fee 0.02 and exit fee 0.03 from userFills; the close knew only 0.02.
        (0, submitted("0xa1", "xyz:GOLD")),
        (1, user_fill(1, "0xa1", "0.02")),
        (2, submitted("0xa2", "xyz:GOLD", kind="flatten", reason="mark_regression")),
        (3, closed("xyz:GOLD", pnl="0.50", fees="0.02", reason="mark_regression", closed_ms=T0_MS + 3)),
        (4, user_fill(2, "0xa2", "0.03")),
        # GOLD #2: the exit order is journaled just after its close (the streams race by a hop).
        (10, submitted("0xa3", "xyz:GOLD")),
        (11, user_fill(3, "0xa3", "0.02")),
        (12, closed("xyz:GOLD", pnl="-0.10", fees="0.02", reason="time_stop", closed_ms=T0_MS + 12)),
        (13, submitted("0xa4", "xyz:GOLD", kind="flatten", reason="time_stop")),
        (14, user_fill(4, "0xa4", "0.03")),
        # SILVER: no userFill recorded: the close's own fees are used.
        (20, submitted("0xb1", "xyz:SILVER")),
        (21, submitted("0xb2", "xyz:SILVER", kind="flatten", reason="mark_regression")),
        (22, closed("xyz:SILVER", pnl="0.03", fees="0.04", reason="mark_regression", closed_ms=T0_MS + 22)),
        # A close with no order of ours (external).
        (30, closed("xyz:SILVER", pnl="0.20", fees="0", reason="external", closed_ms=T0_MS + 30)),
        (31, OrderRejected(cloid="0xc9", coin="xyz:GOLD", reason="ioc miss", benign=True, reduce_only=False,
                           recv_ns=1)),
        (32, HardStopState(latched=True, reason="operator: test", epoch=1, since_ms=T0_MS + 32)),
        (33, HardStopProgress(epoch=1, positions=1, open_orders=2, attempts=1, done=False, alert=False)),
        (34, HardStopProgress(epoch=1, positions=0, open_orders=0, attempts=2, done=True, alert=False)),
    ]


@pytest.fixture
def conn(tmp_path: Path) -> Any:
    path = tmp_path / "j.sqlite"
    journal(path, session())
    c = open_readonly(path)
    yield c
    c.close()


def test_pnl_net_of_attributed_fees_win_rate_by_market_and_by_reason(conn: sqlite3.Connection) -> None:
    rep = build_report(conn)
    t = rep["totals"]
    assert t["trades"] == 4 and t["wins"] == 2 and t["losses"] == 2 and t["win_rate"] == 0.5
    assert t["pnl_usd"] == pytest.approx(0.63)
    assert t["fees_usd"] == pytest.approx(0.05 + 0.05 + 0.04)
    assert t["net_pnl_usd"] == pytest.approx(0.49)
    assert t["fees_from_fills"] == 2
    gold, silver = rep["by_market"]["xyz:GOLD"], rep["by_market"]["xyz:SILVER"]
    assert (gold["trades"], gold["wins"]) == (2, 1)
    assert gold["pnl_usd"] == pytest.approx(0.40) and gold["fees_usd"] == pytest.approx(0.10)
    assert gold["net_pnl_usd"] == pytest.approx(0.30)
    # SILVER's first trade: +0.03 gross but -0.01 net of its 0.04 fees: a loss.
    assert (silver["trades"], silver["wins"]) == (2, 1) and silver["net_pnl_usd"] == pytest.approx(0.19)
    reasons = rep["by_exit_reason"]
    assert set(reasons) == {"mark_regression", "time_stop", "external"}
    assert reasons["mark_regression"]["trades"] == 2 and reasons["mark_regression"]["wins"] == 1
    assert reasons["mark_regression"]["fees_usd"] == pytest.approx(0.09)
    assert reasons["time_stop"]["net_pnl_usd"] == pytest.approx(-0.15)
    assert reasons["external"]["win_rate"] == 1.0


def test_counts_and_hard_stop_events(conn: sqlite3.Connection) -> None:
    rep = build_report(conn)
    c = rep["counts"]
    assert c["orders"] == 6 and c["orders_by_kind"] == {"entry": 3, "flatten": 3}
    assert c["intents"] == 6 and c["rejects"] == 1 and c["rejects_benign"] == 1
    assert c["rejects_by_reason"] == {"ioc miss": 1}
    assert c["user_fills"] == 4 and c["orders_by_status"] == {"submitted": 6}
    hs = rep["hard_stop"]
    assert hs["latches"] == 1 and hs["events"][0]["reason"] == "operator: test"
    assert hs["flatten"] == [{"epoch": 1, "attempts": 2, "done": True, "alert": False, "positions": 0,
                              "open_orders": 0}]
    text = format_report(rep)
    assert "trades 4" in text and "win rate 50.0 %" in text and "net +0.4900 USD" in text
    assert "epoch 1: LATCHED" in text and "flatten epoch 1: attempts 2, done" in text


def test_latency_percentiles_from_order_stamps(tmp_path: Path) -> None:
    steps: list[tuple[int, Msg]] = []
    for i in range(10):  # tick-to-trade 100..1000 µs; the executor adds 10..100 µs
        t2t_ns, added_ns = (i + 1) * 100_000, (i + 1) * 10_000
        steps.append((i, submitted(f"0xe{i}", origin=1_000_000, created=1_000_000 + t2t_ns // 2,
                                   received=1_000_000 + t2t_ns - added_ns, sent=1_000_000 + t2t_ns)))
    steps.append((20, submitted("0xf0", kind="flatten", reason="time_stop", origin=0, created=5_000_000,
                                received=5_050_000, sent=5_080_000)))  # a timer exit: no exchange frame
    path = tmp_path / "j.sqlite"
    journal(path, steps)
    lat = build_report(open_readonly(path))["latency_us"]
    assert lat["tick_to_trade_entry"] == {"n": 10, "p50": 500.0, "p90": 900.0, "p99": 1000.0, "max": 1000.0}
    assert lat["tick_to_trade_exit"]["n"] == 0
    assert lat["executor_added"]["n"] == 11 and lat["executor_added"]["p50"] == 50.0
    assert lat["executor_added"]["max"] == 100.0
    assert lat["decision"]["n"] == 10 and lat["decision"]["p50"] == 250.0
    assert lat["intent_transit"]["n"] == 11


def test_since_filters_trades_orders_and_signals(conn: sqlite3.Connection) -> None:
    rep = build_report(conn, since_ms=T0_MS + 15)
    t = rep["totals"]
    assert t["trades"] == 2 and t["pnl_usd"] == pytest.approx(0.23)  # the two SILVER closes
    assert rep["counts"]["orders"] == 2 and set(rep["by_market"]) == {"xyz:SILVER"}
    # Fees are still attributed from orders before the window (a trade's entry may predate it).
    everything = build_report(conn, since_ms=T0_MS + 12)
    assert everything["totals"]["trades"] == 3 and everything["by_exit_reason"]["time_stop"]["fees_usd"] == \
        pytest.approx(0.05)
    assert build_report(conn, since_ms=T0_MS + 10_000)["totals"]["trades"] == 0


def test_parse_since() -> None:
    now = 1_700_000_000_000
    assert parse_since("2h", now) == now - 7_200_000
    assert parse_since("30m", now) == now - 1_800_000
    assert parse_since("90s", now) == now - 90_000
    assert parse_since("1d", now) == now - 86_400_000
    assert parse_since("1.5h", now) == now - 5_400_000
    assert parse_since("2023-11-14T22:13:20Z", now) == 1_700_000_000_000
    assert parse_since("2023-11-14T23:13:20+01:00", now) == 1_700_000_000_000
    naive = datetime(2023, 11, 14, 22, 13, 20).timestamp() * 1000  # local time
    assert parse_since("2023-11-14T22:13:20", now) == int(naive)
    assert datetime.fromtimestamp(parse_since("2023-11-14", now) / 1000, UTC).year == 2023
    for bad in ("yesterday", "10", "5w", "-2h", ""):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad, now)


def _report_cli(run_dir: Path, *args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    config = run_dir / "hip3.toml"
    config.write_text(f'run_dir = "{run_dir}"\nmode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n')
    out, err = io.StringIO(), io.StringIO()
    env = os.environ.pop("HIP3_RUN_DIR", None)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["report", "--config", str(config), *args])
    finally:
        if env is not None:
            os.environ["HIP3_RUN_DIR"] = env
    return code, out.getvalue(), err.getvalue()


def test_report_cli_reads_the_journal_read_only_without_a_supervisor(run_dir: Path) -> None:
    make_config(run_dir)
    code, _, err = _report_cli(run_dir, "--json")
    assert code == 2 and "no journal" in err
    path = journal_path(run_dir)
    journal(path, [*session(), (40, Signal(signal_id="s1", coin="xyz:GOLD", is_buy=True, raw_edge_bps=1.0,
                                           net_edge_bps=1.0, threshold_bps=1.0, oracle_px=1.0, best_px=1.0,
                                           book_sz=1.0, suggested_sz=1.0, confidence=1.0, recv_ns=1,
                                           time_ms=T0_MS + 40))])
    before = path.stat().st_mtime_ns
    os.chmod(path, 0o400)  # read-only: the report must not need to write
    try:
        code, out, err = _report_cli(run_dir, "--json")
        assert code == 0, err
        rep = json.loads(out)
        assert rep["totals"]["trades"] == 4 and rep["counts"]["signals"] == 1
        assert rep == json.loads(json.dumps(build_report(open_readonly(path))))
        code, text, _ = _report_cli(run_dir)
        assert code == 0 and "trades 4" in text and "by exit reason:" in text
        code, out, _ = _report_cli(run_dir, "--json", "--since", "1h")  # the rows are from 2023
        assert code == 0 and json.loads(out)["totals"]["trades"] == 0
        code, _, err = _report_cli(run_dir, "--since", "soon")
        assert code == 2 and "--since 'soon'" in err
    finally:
        os.chmod(path, 0o600)
    assert path.stat().st_mtime_ns == before


def _fill(tid: int, cloid: str, fee: str, px: str = "100", sz: str = "1") -> Msg:
    from decimal import Decimal as D

    from hip3.messages import UserFill

    return UserFill(coin="xyz:GOLD", px=D(px), sz=D(sz), is_buy=True, time_ms=T0_MS + tid, oid=tid, tid=tid,
                    cloid=cloid, fee=D(fee), closed_pnl=D(0), crossed=True, is_snapshot=False, recv_ns=1)


def test_fee_paid_against_the_fee_the_detector_assumed(tmp_path: Path) -> None:
    """Each trade: the fees its fills paid next to its entry's assumed per-leg fee times its fills' notional."""
    steps: list[tuple[int, Msg]] = [
        # Trade 1: assumed 9 bps a leg, paid 9 bps on each $100 leg (0.09 + 0.09).
        (0, submitted("0xa1", fee_bps=9.0, fee_source="exchange")),
        (1, _fill(1, "0xa1", "0.09")),
        (2, submitted("0xa2", kind="flatten", reason="mark_regression")),
        (3, _fill(2, "0xa2", "0.09")),
        (4, closed(pnl="0.50", fees="0.18", closed_ms=T0_MS + 4)),
        # Trade 2: assumed 0.9 bps (growth mode), but the exchange charged 9 bps: the model is wrong.
        (10, submitted("0xa3", fee_bps=0.9, fee_source="exchange")),
        (11, _fill(3, "0xa3", "0.18", sz="2")),
        (12, submitted("0xa4", kind="flatten", reason="time_stop")),
        (13, _fill(4, "0xa4", "0.18", sz="2")),
        (14, closed(pnl="0.10", fees="0.36", reason="time_stop", closed_ms=T0_MS + 14)),
    ]
    path = tmp_path / "j.sqlite"
    journal(path, steps)
    rep = build_report(open_readonly(path))
    t1, t2 = rep["trades"]
    assert (t1["notional_usd"], t1["fee_paid_bps"], t1["fee_assumed_bps"]) == (200.0, 9.0, 9.0)
    assert t1["fee_assumed_usd"] == pytest.approx(0.18) and t1["fee_source"] == "exchange"
    assert (t2["notional_usd"], t2["fee_paid_bps"], t2["fee_assumed_bps"]) == (400.0, 9.0, 0.9)
    assert t2["fee_assumed_usd"] == pytest.approx(0.036)
    tot = rep["totals"]
    assert tot["fee_compared_trades"] == 2 and tot["fee_paid_usd"] == pytest.approx(0.54)
    assert tot["fee_assumed_usd"] == pytest.approx(0.216)
    assert tot["fee_paid_bps"] == pytest.approx(9.0) and tot["fee_assumed_bps"] == pytest.approx(3.6)
    text = format_report(rep)
    assert "fees paid vs assumed: paid 0.5400 USD (9.000 bps a leg), assumed 0.2160 USD (3.600 bps a leg)" in text
    assert "9.000 / 0.900  exchange" in text


def test_a_journal_from_before_the_fee_assumptions_still_reports(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal(path, session())
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE fee_assumptions")
    conn.commit()
    conn.close()
    rep = build_report(open_readonly(path))
    assert rep["totals"]["trades"] == 4 and rep["totals"]["fee_compared_trades"] == 0
    assert "no trade with both recorded fills and an assumed fee" in format_report(rep)

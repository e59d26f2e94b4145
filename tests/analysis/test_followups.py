"""The follow-up analysis (hip3/analysis/followups.py, ``report --signals``): each signal scored as a taker
round trip at each horizon net of the assumed fees, grouped by market, side, edge bucket and hour; the
threshold that maximises expected PnL; structural-spread markets flagged; older journals without the
follow-up's exit price still read."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest

import supervisor as cli
from hip3.analysis.fees import HIP3_TIER0_TAKER_BPS, TakerFees, round_trip_bps
from hip3.analysis.followups import analyse, best_threshold, bucket_label, format_analysis
from hip3.journal.db import JournalWriter
from hip3.journal.report import open_readonly
from hip3.journal.schema import journal_path
from hip3.messages import Msg, Signal, SignalFollowup

T14 = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000 + 14 * 3_600_000  # 14:00 UTC that day


def sig(sid: str, coin: str, is_buy: bool, raw: float, best: float, ts_ms: int = T14, sz: float = 1.0) -> Signal:
    return Signal(signal_id=sid, coin=coin, is_buy=is_buy, raw_edge_bps=raw, net_edge_bps=raw - 10,
                  threshold_bps=10.0, oracle_px=best, best_px=best, book_sz=5.0, suggested_sz=sz, confidence=0.5,
                  recv_ns=1, time_ms=ts_ms)


def fu(sid: str, coin: str, off: int, exit_px: float, edge: float, best: float = 0.0) -> SignalFollowup:
    return SignalFollowup(signal_id=sid, coin=coin, offset_ms=off, oracle_px=1.0, best_px=best or exit_px,
                          edge_bps=edge, edge_change_bps=0.0, time_ms=T14 + off, exit_px=exit_px)


def write(path: Path, msgs: list[Msg]) -> None:
    w = JournalWriter(path)
    for m in msgs:
        assert w.add(m), w.last_problem
    w.flush()
    w.close()


def session() -> list[Msg]:
    msgs: list[Msg] = [
        # GOLD buy at the ask 100.0: the bid is 100.5 a second later (+50 bps), 99.9 after five (-10 bps).
        sig("g1", "xyz:GOLD", True, 30.0, 100.0), fu("g1", "xyz:GOLD", 1000, 100.5, 3.0),
        fu("g1", "xyz:GOLD", 5000, 99.9, 1.0),
        # GOLD sell at the bid 200.0, an hour later: the ask is 199.0 a second later (+50 bps for a short).
        sig("g2", "xyz:GOLD", False, 12.0, 200.0, ts_ms=T14 + 3_600_000), fu("g2", "xyz:GOLD", 1000, 199.0, 1.0),
        fu("g2", "xyz:GOLD", 5000, 200.2, 0.5),
        # GOLD buy, small edge: loses at both horizons.
        sig("g3", "xyz:GOLD", True, 15.0, 100.0), fu("g3", "xyz:GOLD", 1000, 99.8, 1.0),
        fu("g3", "xyz:GOLD", 5000, 99.8, 1.0),
        # A signal without follow-ups (the session ended first): counted, not scored.
        sig("g4", "xyz:GOLD", True, 50.0, 100.0),
    ]
    # SILVER: the gap never closes (90 % of the edge left at 5 s) and every round trip loses the spread.
    for i in range(6):
        sid = f"s{i}"
        msgs += [sig(sid, "xyz:SILVER", True, 40.0 + i, 30.0), fu(sid, "xyz:SILVER", 1000, 29.97, 0.95 * (40 + i)),
                 fu(sid, "xyz:SILVER", 5000, 29.97, 0.9 * (40 + i))]
    return msgs


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    path = tmp_path / "j.sqlite"
    write(path, session())
    return open_readonly(path)


def test_the_fee_is_the_hip3_tier0_taker_rate_per_leg_and_configurable() -> None:
    assert HIP3_TIER0_TAKER_BPS == 9.0 and round_trip_bps(TakerFees(), "xyz:GOLD") == 18.0
    fees = TakerFees(4.5, {"xyz:SILVER": 0.9})
    assert round_trip_bps(fees, "xyz:GOLD") == 9.0 and round_trip_bps(fees, "xyz:SILVER") == 1.8
    with pytest.raises(ValueError, match="taker fee"):
        TakerFees(-1.0)


def test_each_signal_is_a_round_trip_touch_in_opposite_touch_out_net_of_fees(conn: sqlite3.Connection) -> None:
    rep = analyse(conn)
    assert rep["signals"] == 10 and rep["followups"] == 18 and rep["exit_px_missing"] == 0
    assert rep["horizons_ms"] == [1000, 5000]
    rows = {(g["coin"], g["side"], g["edge_bucket_bps"], g["hour_utc"]): g for g in rep["groups"]}
    buy = rows[("xyz:GOLD", "buy", "20-40", 14)]
    assert buy["signals"] == 1
    assert buy["horizons"]["1000"] == {"n": 1, "net_bps": pytest.approx(50.0 - 18.0), "win_rate": 1.0}
    assert buy["horizons"]["5000"] == {"n": 1, "net_bps": pytest.approx(-10.0 - 18.0), "win_rate": 0.0}
    sell = rows[("xyz:GOLD", "sell", "10-20", 15)]  # a short gains when the ask falls
    assert sell["horizons"]["1000"]["net_bps"] == pytest.approx(50.0 - 18.0)
    assert sell["horizons"]["5000"]["net_bps"] == pytest.approx(-10.0 - 18.0)
    no_followup = rows[("xyz:GOLD", "buy", "40-80", 14)]
    assert no_followup["signals"] == 1 and no_followup["horizons"]["1000"]["n"] == 0
    gold = rep["markets"]["xyz:GOLD"]
    assert gold["signals"] == 4 and gold["horizons"]["1000"]["n"] == 3
    assert gold["horizons"]["1000"]["win_rate"] == 0.6667  # 2 of 3, rounded to 4 places
    # The fee assumption moves every net figure by the round-trip difference.
    cheap = analyse(conn, TakerFees(4.5))
    assert cheap["markets"]["xyz:GOLD"]["horizons"]["1000"]["net_bps"] == pytest.approx(
        gold["horizons"]["1000"]["net_bps"] + 9.0)


def test_the_best_threshold_maximises_summed_pnl_and_a_losing_market_is_disabled(conn: sqlite3.Connection) -> None:
    assert best_threshold([(15.0, -1.0), (25.0, 2.0), (40.0, 1.0)]) == {
        "threshold_bps": 25.0, "signals": 2, "expected_pnl_usd": 3.0, "pnl_all_usd": 2.0, "disable": False}
    tie = best_threshold([(20.0, 1.0), (20.0, -0.5), (10.0, -1.0)])  # one edge: in or out together
    assert tie["threshold_bps"] == 20.0 and tie["signals"] == 2 and tie["expected_pnl_usd"] == 0.5
    assert best_threshold([(10.0, -1.0), (20.0, -2.0)])["disable"] is True
    rep = analyse(conn)
    gold = rep["markets"]["xyz:GOLD"]["best_threshold"]
    # +1 s: g3 (15 bps) loses 0.38 $ on 100 $; g1 (30 bps, +0.32 $) and g2 (12 bps, 200 $, +0.64 $) win; the
    # lowest threshold that keeps both winners keeps the loser too: 0.58 $ at 12 bps beats 0.32 $ at 30.
    assert gold["1000"]["threshold_bps"] == 12.0 and gold["1000"]["signals"] == 3
    assert gold["1000"]["expected_pnl_usd"] == pytest.approx(0.32 + 0.64 - 0.38)
    assert gold["5000"]["disable"] is True  # every +5 s round trip loses
    assert all(b["disable"] for b in rep["markets"]["xyz:SILVER"]["best_threshold"].values())


def test_a_market_whose_gap_never_closes_is_flagged_structural(conn: sqlite3.Connection) -> None:
    rep = analyse(conn)
    silver, gold = rep["markets"]["xyz:SILVER"], rep["markets"]["xyz:GOLD"]
    assert silver["structural_spread"] is True and silver["edge_retained_at_last_horizon"] == pytest.approx(0.9)
    assert silver["edge_retained"]["1000"] == pytest.approx(0.95)
    assert gold["structural_spread"] is False  # too few samples, and its edge closed
    assert analyse(conn, structural_retention=0.95)["markets"]["xyz:SILVER"]["structural_spread"] is False
    text = format_analysis(rep)
    assert "STRUCTURAL SPREAD" in text and "+5s disable" in text and "xyz:SILVER" in text


def test_buckets_and_hours() -> None:
    assert [bucket_label(x, (10.0, 20.0)) for x in (0.5, 10.0, 19.9, 20.0, 500.0)] == [
        "0-10", "10-20", "10-20", ">=20", ">=20"]


def test_an_older_journal_without_exit_prices_is_scored_at_the_same_touch(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    write(path, [sig("g1", "xyz:GOLD", True, 30.0, 100.0), fu("g1", "xyz:GOLD", 1000, 100.5, 3.0, best=100.8)])
    c = sqlite3.connect(path)
    c.execute("UPDATE signal_followups SET exit_px = NULL")
    c.commit()
    rep = analyse(c)
    assert rep["exit_px_missing"] == 1
    assert rep["markets"]["xyz:GOLD"]["horizons"]["1000"]["net_bps"] == pytest.approx(80.0 - 18.0)
    assert "no exit price" in format_analysis(rep)
    # A version-1 table has no exit_px column at all.
    c.execute("CREATE TABLE old AS SELECT signal_id, offset_ms, coin, oracle_px, best_px, edge_bps, edge_change_bps, "
              "ts_ms, rec_ns FROM signal_followups")
    c.execute("DROP TABLE signal_followups")
    c.execute("ALTER TABLE old RENAME TO signal_followups")
    assert analyse(c)["markets"]["xyz:GOLD"]["horizons"]["1000"]["net_bps"] == pytest.approx(80.0 - 18.0)
    c.close()


def _cli(run_dir: Path, *args: str) -> tuple[int, str, str]:
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


def test_report_signals_cli_json_and_text(tmp_path: Path) -> None:
    write(journal_path(tmp_path), session())
    code, out, err = _cli(tmp_path, "--signals", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["markets"]["xyz:SILVER"]["structural_spread"] is True and rep["fees"] == "taker 9 bps a leg"
    code, out, _ = _cli(tmp_path, "--signals", "--json", "--taker-fee-bps", "0")
    assert json.loads(out)["markets"]["xyz:GOLD"]["horizons"]["1000"]["net_bps"] == pytest.approx(
        rep["markets"]["xyz:GOLD"]["horizons"]["1000"]["net_bps"] + 18.0)
    code, text, _ = _cli(tmp_path, "--signals")
    assert code == 0 and "follow-up analysis" in text and "STRUCTURAL SPREAD" in text
    code, _, err = _cli(tmp_path, "--signals", "--taker-fee-bps", "-3")
    assert code == 2 and "taker fee" in err

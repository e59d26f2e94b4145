"""Replay: a recorded live session through the real actor graph against the simulator's matching engine.

One live paper session (the inproc graph, all five actors, against the simulator, paced as
``tests/replay/helpers.py`` explains) records its market frames; it is replayed twice. The replays'
trades equal each other and the live run's, and a replay runs faster than the session lasted.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from hip3 import clock
from hip3.config import Config
from hip3.journal.trades import TradeLog
from hip3.replay.driver import ReplayResult, replay
from hip3.replay.rotation import read_recording
from hip3.sim.book import MAKER
from hip3.sim.replay import ReplayExchange, params_from_header
from tests.replay.helpers import live_session

pytestmark = pytest.mark.timeout(40)

JUMPS = [(0.5, "xyz:GOLD", 60.0), (2.5, "xyz:SILVER", -60.0), (5.0, "xyz:GOLD", -70.0)]


@dataclass
class Session:
    dir: Path
    recording: Path
    live: TradeLog
    cfg: Config
    first: ReplayResult
    second: ReplayResult


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    d = Path(tempfile.mkdtemp(prefix="h3rp", dir="/tmp"))
    try:
        key = "0x" + secrets.token_hex(32)
        rec, live, cfg = live_session(key, d / "live", JUMPS, tail_s=2.5)
        first = replay(rec, cfg, d / "replay1")
        second = replay(rec, cfg, d / "replay2")
        yield Session(d, rec, live, cfg, first, second)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_the_live_session_traded_every_episode(session: Session) -> None:
    reasons = [t.reason for t in session.live.trades]
    assert reasons.count("entry") == len(JUMPS), session.live.as_list()
    assert len(session.live.trades) == 2 * len(JUMPS), session.live.as_list()


def test_two_replays_of_one_recording_give_the_same_trades(session: Session) -> None:
    assert session.first.trades.trades, session.first.summary()
    assert session.first.trades.keys() == session.second.trades.keys()
    assert session.first.stats["realized_pnl_usd"] == session.second.stats["realized_pnl_usd"]


def test_the_replay_trades_equal_the_live_runs(session: Session) -> None:
    assert session.first.trades.keys() == session.live.keys(), (session.first.trades.as_list(),
                                                                session.live.as_list())
    assert session.first.notes == []


# The report's figures that depend on the trades only (hold times and latencies depend on timing).
_MONEY = ("trades", "wins", "losses", "win_rate", "pnl_usd", "fees_usd", "net_pnl_usd", "fees_from_fills")


def _money(groups: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    return {name: {k: s[k] for k in _MONEY} for name, s in groups.items()}


def test_the_replays_journal_reports_the_live_sessions_fees_and_pnl(session: Session) -> None:
    """The replay's recorder (the live recorder's code) journals the replay; its report gives the same
    trades, fees (from the exchange's fills) and net PnL as the live session's journal."""
    from hip3.journal.report import build_report, open_readonly
    from hip3.journal.schema import journal_path

    live_conn = open_readonly(journal_path(session.dir / "live"))
    replay_conn = open_readonly(journal_path(session.first.run_dir))
    try:
        live, rep = build_report(live_conn), build_report(replay_conn)
    finally:
        live_conn.close()
        replay_conn.close()
    assert live["totals"]["trades"] == len(JUMPS), live["totals"]
    assert live["totals"]["fees_from_fills"] == len(JUMPS) and live["totals"]["fees_usd"] > 0
    assert _money({"all": rep["totals"]}) == _money({"all": live["totals"]})
    assert _money(rep["by_market"]) == _money(live["by_market"])
    # Exit reasons too, unless the live tracker saw the closing fill before the executor's OrderSubmitted
    # (two sockets, no order between them): it then names the close "external" (hip3.positions); a
    # replay, settled step by step, always knows the order first.
    assert "external" not in rep["by_exit_reason"]
    if "external" not in live["by_exit_reason"]:
        assert _money(rep["by_exit_reason"]) == _money(live["by_exit_reason"])
    assert rep["counts"]["orders"] == live["counts"]["orders"] == 2 * len(JUMPS)
    assert rep["counts"]["user_fills"] == live["counts"]["user_fills"]


def test_report_run_dir_reads_a_replays_journal(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import supervisor

    cfg_path = session.dir / "report.toml"
    cfg_path.write_text(f'run_dir = "{session.dir / "elsewhere"}"\nmode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n')
    args = ["report", "--json", "--config", str(cfg_path), "--run-dir", str(session.first.run_dir)]
    assert supervisor.main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["totals"]["trades"] == len(JUMPS)
    assert rep["totals"]["pnl_usd"] == pytest.approx(float(session.first.stats["realized_pnl_usd"]))
    assert supervisor.main(["report", "--config", str(cfg_path), "--run-dir", str(session.dir / "none")]) == 2
    assert "no journal" in capsys.readouterr().err


def test_a_replay_is_faster_than_real_time(session: Session) -> None:
    r = session.first
    assert r.span_s > 5.0, r.summary()
    assert r.wall_s < r.span_s / 3, r.summary()


def test_the_recording_holds_market_frames_and_the_exchange_markets(session: Session) -> None:
    import json

    rec = read_recording(session.recording)  # record_path: the index of its parts (the default)
    assert rec.torn_bytes == 0 and rec.torn_reason == ""
    lines = [json.loads(line) for line in (session.recording.parent / "frames.index.jsonl").read_text().splitlines()]
    assert [(e["part"], e["closed"]) for e in lines] == [(1, False), (1, True)]  # opened, closed
    part = lines[-1]  # an 8 s session: no rotation
    assert part["file"] == "frames.00001.rec.zst" and part["closed"] and part["frames"] == len(rec.frames())
    assert part["markets"] == ["xyz:GOLD", "xyz:SILVER"] and part["first_t_ns"] == rec.frames()[0][0]
    assert (session.recording.parent / part["file"]).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd
    h = rec.header
    assert h["markets"] == ["xyz:GOLD", "xyz:SILVER"] and h["dex"] == "xyz"
    assert ["xyz:GOLD", 4, 20, False] in h["universe"]
    channels = {msgspec.json.decode(raw)["channel"] for _, raw in rec.frames()}
    assert channels == {"bbo", "activeAssetCtx", "l2Book"}  # no user channel, ack, pong or post
    times = [t for t, _ in rec.frames()]
    assert times == sorted(times) and times[0] >= rec.segments[0].t_ns


@pytest.mark.parametrize("compressed", [False, True])
def test_a_torn_recording_replays_up_to_the_cut(session: Session, compressed: bool) -> None:
    """kill -9 mid-write: an uncompressed file cut mid-record, a compressed one cut mid-block."""
    from hip3.replay.recording import FrameRecorder

    rec = read_recording(session.recording)
    torn = session.dir / ("torn.rec.zst" if compressed else "torn.rec")
    w = FrameRecorder(torn, rec.header, rec.segments[0].t_ns, zstd_level=3 if compressed else None)
    for t_ns, raw in rec.frames():
        w.write_frames([(t_ns, raw)])
        if compressed and t_ns > rec.frames()[-1][0] - 3_000_000_000:
            w.flush()  # the feed's 1 s flushes: one block each
    w.close()
    os.truncate(torn, torn.stat().st_size - 7)
    r = replay(torn, session.cfg, session.dir / f"replay-torn-{compressed}")
    assert any("torn" in n for n in r.notes), r.notes
    assert compressed or r.torn_bytes > 0
    assert r.trades.keys() == session.first.trades.keys()[:len(r.trades.trades)]
    assert r.frames < session.first.frames


def test_frames_set_the_engines_book_and_oracle() -> None:
    header = {"dex": "xyz", "universe": [["xyz:GOLD", 4, 20, False], ["xyz:SILVER", 2, 20, False]]}
    vc = clock.VirtualClock(1_000_000_000, 1_700_000_000_000_000_000)
    clock.install(vc)
    try:
        ex = ReplayExchange(params_from_header(header), {})
        gold = ex.engine.by_coin["xyz:GOLD"]
        assert gold.asset == 110000 and gold.book.best_bid() is None  # nothing before the first frame
        l2 = (b'{"channel":"l2Book","data":{"coin":"xyz:GOLD","time":1,"levels":[[{"px":"4000.5","sz":"1.2",'
              b'"n":1},{"px":"3999.0","sz":"2","n":1}],[{"px":"4001.5","sz":"0.5","n":1},'
              b'{"px":"4003.0","sz":"3","n":1}]]}}')
        bbo = (b'{"channel":"bbo","data":{"coin":"xyz:GOLD","time":2,"bbo":[{"px":"4000.0","sz":"0.7","n":1},'
               b'{"px":"4002.0","sz":"0.1","n":1}]}}')
        ctx = b'{"channel":"activeAssetCtx","data":{"coin":"xyz:GOLD","ctx":{"oraclePx":"4010.25","markPx":"4001"}}}'
        ex.apply([l2, bbo, ctx])
        book = gold.book
        bids = [(gold.px_str(p), gold.sz_str(s)) for p, s, _ in book.levels(True, 5)]
        asks = [(gold.px_str(p), gold.sz_str(s)) for p, s, _ in book.levels(False, 5)]
        assert bids == [("4000.0", "0.7"), ("3999.0", "2.0")]  # the bbo's top over the l2Book's depth
        assert asks == [("4002.0", "0.1"), ("4003.0", "3.0")]
        assert all(o.owner is MAKER for o in book.orders())
        assert gold.px_str(gold.model.oracle_px) == "4010.25" and ex.frames_applied == 3
        assert gold.mark_dec() == Decimal("4002")  # median(oracle, bid, ask)
        ex.apply([b'{"channel":"bbo","data":{"coin":"xyz:GOLD","time":3,"bbo":[null,{"px":"4002.0","sz":"1",'
                  b'"n":1}]}}', b"not json"])
        assert book.best_bid() is None and ex.frames_unknown == 1
        ex.close()
    finally:
        clock.restore()


def test_supervisor_replay_prints_the_trades(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import supervisor
    from tests.replay.helpers import EXTRA, MARKETS

    cfg_path = session.dir / "replay.toml"
    markets = "".join(f'[[markets]]\ncoin = "{m}"\n' for m in MARKETS)
    cfg_path.write_text(f'run_dir = "{session.dir / "cli"}"\nmode = "paper"\n[logging]\nstderr = false\n'
                        + markets + EXTRA)
    assert supervisor.main(["replay", str(session.recording), "--json", "--config", str(cfg_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["trades"] == session.first.trades.as_list()
    assert out["frames"] == session.first.frames and out["run_dir"].startswith(str(session.dir / "cli" / "replays"))
    assert supervisor.main(["replay", str(session.dir / "missing.rec"), "--config", str(cfg_path)]) == 2
    assert supervisor.main(["replay", str(session.recording), "--speed", "-1", "--config", str(cfg_path)]) == 2


def test_speed_paces_the_replay(session: Session) -> None:
    r = replay(session.recording, session.cfg, session.dir / "replay-paced", speed=4.0)
    assert r.wall_s >= r.span_s / 4 * 0.9, r.summary()
    assert r.trades.keys() == session.first.trades.keys()


def test_later_segments_are_placed_by_wall_time(tmp_path: Path) -> None:
    """A restarted feed (here: after a reboot, its monotonic clock restarted) appends a segment; the replay
    puts its frames on the first segment's time line by the wall clock, and groups same-instant frames."""
    from hip3.replay.driver import Replay
    from hip3.replay.recording import FrameRecorder

    path = tmp_path / "frames.rec"
    h = {"markets": ["xyz:GOLD"], "dex": "xyz", "dex_index": 1, "universe": [["xyz:GOLD", 4, 20, False]]}
    rec = FrameRecorder(path, {**h, "started_wall_ns": 10_000, "started_mono_ns": 500}, 500)
    rec.write_frames([(600, b"a"), (600, b"b"), (700, b"c")])
    rec.close()
    rec = FrameRecorder(path, {**h, "started_wall_ns": 20_000, "started_mono_ns": 50}, 50)
    rec.write_frames([(60, b"d")])
    rec.close()
    groups = Replay(path, msgspec.convert({}, Config), tmp_path / "r")._groups()
    assert groups == [(600, [b"a", b"b"]), (700, [b"c"]), (60 - 50 + 20_000 - 10_000 + 500, [b"d"])]


def test_replays_in_separate_processes_give_the_same_trades(session: Session) -> None:
    """Nothing depends on the process: two CLI replays with different hash seeds print the same trades."""
    import json
    import subprocess
    import sys

    from hip3.config import REPO_ROOT
    from tests.replay.helpers import EXTRA, MARKETS

    cfg_path = session.dir / "proc.toml"
    markets = "".join(f'[[markets]]\ncoin = "{m}"\n' for m in MARKETS)
    cfg_path.write_text(f'run_dir = "{session.dir / "proc"}"\nmode = "paper"\n[logging]\nstderr = false\n'
                        + markets + EXTRA)
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        p = subprocess.run([sys.executable, "supervisor.py", "replay", str(session.recording), "--json",
                            "--config", str(cfg_path), "--run-dir", str(session.dir / f"proc{seed}")],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr[-2000:]
        outs.append(json.loads(p.stdout.strip().splitlines()[-1])["trades"])
    assert outs[0] == outs[1] == session.first.trades.as_list()

"""The parameter search (hip3/analysis/optimize.py): its bookkeeping against a scripted backend (pruning at
recording boundaries, walk-forward picks, failed and invalid trials), then real studies over replays of
small simulated recordings: the same result with one worker or two (and on Ray: test_ray.py), and the
objective equal to what ``report`` says of the best trial's replays."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import supervisor
from hip3.analysis.backends import LocalBackend
from hip3.analysis.evaluate import Score, Task
from hip3.analysis.optimize import OptimizeError, Optimizer, RecordingInfo, Settings, expand
from hip3.analysis.space import apply, parse_space
from hip3.config import Config, parse_config
from hip3.journal.report import build_report, open_readonly
from hip3.journal.schema import journal_path
from hip3.replay.driver import replay
from hip3.sim.synth import default_params, synth_recording

pytestmark = pytest.mark.timeout(240)

MARKETS = ("xyz:GOLD", "xyz:SILVER")
SPACE = """
[detector]
min_edge_bps = { low = 0.0, high = 30.0, step = 1.0 }
min_consecutive_oracle_moves = { low = 1, high = 3 }
[exits.time_stop]
threshold_ms = { low = 2000, high = 20000, step = 1000 }
"""


def base_text(run_dir: Path) -> str:
    return (f'run_dir = "{run_dir}"\nmode = "paper"\n[logging]\nstderr = false\n'
            + "".join(f'[[markets]]\ncoin = "{m}"\n' for m in MARKETS))


# ---- the study's bookkeeping, with a scripted backend ---------------------------------------------------


class Scripted:
    """Scores from the config alone: recording ``step`` pays ``(step + 1) * (10 - |min_edge_bps - 10|)``
    cents a trade over two trades, the second a loss of ``min_consecutive_oracle_moves`` cents."""

    name = "scripted"
    workers = 1

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def run(self, tasks: Sequence[Task]) -> list[Score]:
        out = []
        for t in tasks:
            self.tasks.append(t)
            sc = Score(t.trial, t.step)
            if t.cfg is not None:
                if t.cfg.detector.min_edge_bps == 13.0:
                    sc.error = "ReplayError: scripted failure"
                gain = (t.step + 1) * (10 - abs(t.cfg.detector.min_edge_bps - 10)) / 100
                loss = -t.cfg.detector.min_consecutive_oracle_moves / 100
                sc.trade_nets = [gain, loss]
                sc.net_pnl_usd = gain + loss
                sc.trades = 2
            out.append(sc)
        return out

    def close(self) -> None:
        pass


def infos(n: int) -> list[RecordingInfo]:
    return [RecordingInfo(f"/r{i}.rec", 1000 * i, 10.0, 100, MARKETS) for i in range(n)]


def test_pruning_at_recording_boundaries_and_the_walk_forward_picks(tmp_path: Path) -> None:
    base = parse_config(base_text(tmp_path))
    space = parse_space(SPACE)
    backend = Scripted()
    opt = Optimizer(base, infos(3), space, backend, Settings(trials=24, seed=5, batch=4, drawdown_penalty=1.0))
    res = opt.run()
    rows = {r["trial"]: r for r in res["top"]}
    assert res["states"]["complete"] + res["states"]["pruned"] + res["states"]["failed"] == 24
    assert res["states"]["pruned"] >= 1
    # A pruned trial ran fewer recordings than a complete one: the replays saved.
    for r in rows.values():
        ran = sorted(t.step for t in backend.tasks if t.trial == r["trial"])
        assert ran == list(range(r["recordings"]))
        assert (r["recordings"] == 3) == (r["state"] == "complete") or r["state"] == "failed"
    assert res["replays"] == len(backend.tasks) < 24 * 3
    # The objective is the scripted net minus the drawdown (the loss after the first trade of each recording).
    best = res["best"]
    assert best["state"] == "complete" and best["trial"] == max(
        (r for r in rows.values() if r["state"] == "complete"), key=lambda r: (r["objective"], -r["trial"]))["trial"]
    edge, moves = best["params"]["detector.min_edge_bps"], best["params"]["detector.min_consecutive_oracle_moves"]
    gain = 10 - abs(edge - 10)
    assert best["net_pnl_usd"] == pytest.approx((6 * gain - 3 * moves) / 100)
    assert best["max_drawdown_usd"] == pytest.approx(moves / 100 if gain > 0 else (3 * moves - 6 * gain) / 100)
    # Walk-forward: fold f's pick is the best on recordings before f, scored on recording f alone.
    for fold in res["walk_forward"]:
        f = fold["fold"]
        eligible = [r for r in opt.results if r.state != "failed" and all(s in r.scores for s in range(f))]
        pick = max(eligible, key=lambda r: (r.totals(range(f), 1.0)["objective"], -r.number))  # type: ignore[arg-type]
        assert fold["trial"] == pick.number and fold["test"] == f"r{f}.rec"
        assert fold["test_net_pnl_usd"] == pytest.approx(pick.scores[f].net_pnl_usd)
    assert res["walk_forward_net_pnl_usd"] == pytest.approx(sum(f["test_net_pnl_usd"] for f in res["walk_forward"]))


def test_failed_and_invalid_trials_are_recorded_not_fatal(tmp_path: Path) -> None:
    base = parse_config(base_text(tmp_path))
    space = parse_space("[detector]\nmin_edge_bps = { choices = [13.0, 9.0] }\n"
                        "min_book_notional_usd = { choices = [100.0, 9000.0] }\n")
    res = Optimizer(base, infos(1), space, Scripted(), Settings(trials=8, seed=2, batch=8)).run()
    for r in res["top"]:  # (seed 2 samples all four combinations)
        p = r["params"]
        if p["detector.min_book_notional_usd"] == 9000.0:  # not below normal_book_notional_usd: the config says no
            assert r["state"] == "failed" and r["error"].startswith("invalid: normal_book_notional_usd")
        elif p["detector.min_edge_bps"] == 13.0:
            assert r["state"] == "failed" and r["error"] == "ReplayError: scripted failure"
        else:
            assert r["state"] == "complete"
    assert {r["error"].split(":")[0] for r in res["top"]} == {"", "invalid", "ReplayError"}
    assert res["best"]["params"] == {"detector.min_edge_bps": 9.0, "detector.min_book_notional_usd": 100.0}
    assert res["walk_forward"] == []  # one recording: in-sample only
    every_fail = parse_space("[detector]\nmin_edge_bps = { choices = [13.0] }\n")
    with pytest.raises(OptimizeError, match="no trial completed; the first error: ReplayError"):
        Optimizer(base, infos(1), every_fail, Scripted(), Settings(trials=2, seed=1)).run()


def test_disabling_every_market_trades_nothing(tmp_path: Path) -> None:
    base = parse_config(base_text(tmp_path))
    space = parse_space('[markets."xyz:GOLD"]\nenabled = { choices = [false] }\n'
                        '[markets."xyz:SILVER"]\nenabled = { choices = [false] }\n')
    backend = Scripted()
    res = Optimizer(base, infos(2), space, backend, Settings(trials=2, seed=1)).run()
    assert res["best"]["trades"] == 0 and res["replays"] == 0 and all(t.cfg is None for t in backend.tasks)
    assert "every market disabled" in res["best_toml"] and "[[markets]]" not in res["best_toml"].splitlines()


# ---- real studies: replays of simulated recordings --------------------------------------------------------


@pytest.fixture(scope="module")
def recordings() -> Iterator[list[str]]:
    d = Path(tempfile.mkdtemp(prefix="h3opr", dir="/tmp"))
    try:
        paths = []
        for i, seed in enumerate((21, 22, 23)):
            p = d / f"s{seed}.rec.zst"
            # later seeds start later: the walk-forward order is the recordings' time order
            synth_recording(p, default_params(), MARKETS, 20.0, seed, start_wall_ns=1_767_268_800_000_000_000
                            + i * 3_600_000_000_000)
            paths.append(str(p))
        yield paths
    finally:
        shutil.rmtree(d, ignore_errors=True)


def study(base: Config, paths: list[str], workers: int) -> dict[str, Any]:
    backend = LocalBackend(workers)
    try:
        return Optimizer(base, expand(list(reversed(paths))), parse_space(SPACE), backend,
                         Settings(trials=6, seed=7, batch=3)).run()
    finally:
        backend.close()


def comparable(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k not in ("wall_s", "backend", "workers")}


def test_a_study_is_the_same_with_one_worker_or_two_and_scores_what_report_says(
        recordings: list[str], tmp_path: Path) -> None:
    base = parse_config(base_text(tmp_path / "run"))
    one = study(base, recordings, 1)
    two = study(base, recordings, 2)
    assert comparable(one) == comparable(two)
    assert [Path(r["path"]).name for r in one["recordings"]] == ["s21.rec.zst", "s22.rec.zst", "s23.rec.zst"]
    assert one["best"]["trades"] > 0 and len(one["walk_forward"]) == 2
    # The best trial's objective is its replays' journals as `report` reads them.
    cfg = apply(base, list(MARKETS), one["best"]["params"], parse_space(SPACE))
    net = fees = 0.0
    trades = 0
    for i, path in enumerate(recordings):
        run_dir = tmp_path / f"check{i}"
        replay(path, cfg, run_dir)
        conn = open_readonly(journal_path(run_dir))
        rep = build_report(conn)["totals"]
        conn.close()
        net += rep["net_pnl_usd"]
        fees += rep["fees_usd"]
        trades += rep["trades"]
    assert (trades, round(net, 6), round(fees, 6)) == (one["best"]["trades"], one["best"]["net_pnl_usd"],
                                                      one["best"]["fees_usd"])
    assert fees > 0


def test_optimize_cli(recordings: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "base.toml"
    cfg.write_text(base_text(tmp_path / "run"))
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    args = ["optimize", *recordings[:2], "--space", str(space), "--trials", "3", "--batch", "3", "--workers", "1",
            "--seed", "3", "--config", str(cfg)]
    assert supervisor.main(args) == 0
    out = capsys.readouterr().out
    assert "walk-forward" in out and "best parameters (trial" in out and "[detector]" in out
    keep = tmp_path / "kept"
    assert supervisor.main([*args, "--json", "--keep-runs", str(keep)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["trials"] == 3 and res["best_toml"].startswith("# hip3 optimize: trial")
    kept = sorted(p.name for p in keep.iterdir())
    assert len(kept) == res["replays"] and all((keep / k / "journal.sqlite").exists() for k in kept)
    space.write_text("[detector]\nmin_edge_bps = { low = 3.0, high = 1.0 }\n")
    assert supervisor.main(args) == 2
    assert "low must be below high" in capsys.readouterr().err
    space.write_text(SPACE)
    bad = tmp_path / "bad.rec"
    bad.write_bytes(b"not a recording")
    assert supervisor.main([*args[:1], str(bad), *args[3:]]) == 2
    assert "bad magic" in capsys.readouterr().err

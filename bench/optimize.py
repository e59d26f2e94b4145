"""Optimiser throughput: one study over replays, in one worker process and in several.

Writes ``--recordings`` simulated recordings of ``--seconds`` each (``hip3.sim.synth``: the default
config's market model, GOLD and SILVER), then runs the same study (``hip3.analysis.optimize``: TPE,
median pruning per recording, ``--trials`` in batches of ``--batch``) with 1 local worker and with
``--workers`` (default: one per CPU), alternately, ``--rounds`` times each (1, N, 1, N, ...: on a shared
machine the load changes between runs). Workers are spawned and warmed (imports) before the clock starts,
so the figures are the study's own. ``speedup`` = the median wall time with 1 worker / the median with N;
``identical`` says whether every study gave the same trials and results (they must: a study does not
depend on its workers).

Run: ``python -m bench.optimize [--trials 16] [--batch 8] [--recordings 3] [--seconds 60] [--workers N]
[--rounds 2]``.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hip3.analysis.backends import LocalBackend, default_workers
from hip3.analysis.optimize import Optimizer, Settings, expand
from hip3.analysis.space import parse_space
from hip3.config import parse_config
from hip3.sim.synth import START_WALL_NS, default_params, synth_recording

SPACE = """
[detector]
min_edge_bps = { low = 0.0, high = 30.0, step = 1.0 }
min_consecutive_oracle_moves = { low = 1, high = 3 }
[exits.time_stop]
threshold_ms = { low = 2000, high = 30000, step = 1000 }
[exits.mark_regression]
exit_threshold_bps = { low = 1.0, high = 30.0, step = 1.0 }
"""
MARKETS = ("xyz:GOLD", "xyz:SILVER")


def _study(base: Any, paths: list[str], workers: int, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    backend = LocalBackend(workers)
    try:
        backend.start()
        t0 = time.perf_counter()
        res = Optimizer(base, expand(paths), parse_space(SPACE), backend,
                        Settings(trials=args.trials, seed=args.seed, batch=args.batch)).run()
        return res, time.perf_counter() - t0
    finally:
        backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--recordings", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="h3bop", dir="/tmp"))
    try:
        paths = []
        for i in range(args.recordings):
            p = d / f"r{i}.rec.zst"
            synth_recording(p, default_params(), MARKETS, args.seconds, 100 + i,
                            start_wall_ns=START_WALL_NS + i * 3_600_000_000_000)
            paths.append(str(p))
        base = parse_config(f'run_dir = "{d / "run"}"\nmode = "paper"\n[logging]\nstderr = false\n'
                            + "".join(f'[[markets]]\ncoin = "{m}"\n' for m in MARKETS))
        walls: dict[int, list[float]] = {1: [], args.workers: []}
        results = []
        for _ in range(args.rounds):
            for workers in (1, args.workers):
                res, wall = _study(base, paths, workers, args)
                walls[workers].append(wall)
                results.append({k: v for k, v in res.items() if k not in ("wall_s", "backend", "workers")})
                print(f"{workers} worker(s): {wall:.2f} s ({wall / res['replays'] * 1000:.0f} ms a replay)", flush=True)
        same = all(r == results[0] for r in results)
        replays = results[0]["replays"]
        wall_1, wall_n = statistics.median(walls[1]), statistics.median(walls[args.workers])
        print(f"{args.recordings} recordings of {args.seconds:g} s, {args.trials} trials in batches of {args.batch}: "
              f"{replays} replays ({results[0]['states']['pruned']} trials pruned); median 1 worker {wall_1:.2f} s, "
              f"{args.workers} workers {wall_n:.2f} s: speed-up {wall_1 / wall_n:.2f}x; same result: {same}")
        print(json.dumps({"trials": args.trials, "batch": args.batch, "recordings": args.recordings,
                          "recording_s": args.seconds, "replays": replays, "workers": args.workers,
                          "wall_1_worker_s": round(wall_1, 3), "wall_n_workers_s": round(wall_n, 3),
                          "speedup": round(wall_1 / wall_n, 2), "identical": same, "cpus": os.cpu_count()}))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

"""``python supervisor.py optimize RECORDINGS... --space FILE --trials N``: a parameter search over replays.

What it optimises: the net PnL (after the exchange's fees, as ``report`` computes it from the replay's
journal) minus ``drawdown_penalty`` times the largest drawdown of the trades' cumulative net PnL, summed
over every recording in time order. Each trial is a config (the base config with the space's values) run
through the real actor graph by ``hip3.replay`` on every recording (``hip3.analysis.evaluate``).

How (Optuna): TPE sampling, seeded; median pruning at recording boundaries (a trial whose cumulative
objective after a recording is below the median of the completed trials' at that recording stops there).
Trials go in batches of ``batch``: asked in order, their replays run in parallel (``backends``: local
processes, or Ray), their results told in trial order before the next batch is asked. Nothing the sampler
or the pruner sees depends on timing, so a study is a function of (recordings, config, space, seed, batch):
the same best parameters and the same table with 1 worker, 8, or a Ray cluster.

Walk-forward (two recordings or more, or a rotated recording's parts, ordered by their first frame): for
each fold k, the trial that was best on recordings 1..k is scored on recording k+1, which it was not
chosen on. Their summed out-of-sample result is the honest figure: parameters that win in-sample and lose
out of sample are overfitted to the past; the report says so. The printed best parameters are the best
trial over all recordings, as a TOML fragment for a config.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hip3.analysis.backends import Backend
from hip3.analysis.equity import max_drawdown, score
from hip3.analysis.evaluate import Score, Task
from hip3.analysis.space import InvalidTrial, Space, apply, toml_fragment
from hip3.config import Config
from hip3.replay.recording import RecordingError
from hip3.replay.rotation import base_of_index, load_index, read_recording


class OptimizeError(Exception):
    """One line for the operator."""


@dataclass(frozen=True)
class RecordingInfo:
    path: str
    first_wall_ms: int
    span_s: float
    frames: int
    markets: tuple[str, ...]


def expand(paths: Sequence[str]) -> list[RecordingInfo]:
    """Every recording file (an index stands for its parts), read once, in the order of their first frame."""
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.name.endswith(".index.jsonl"):
            parts = sorted(load_index(base_of_index(path))["parts"], key=lambda e: int(e["part"]))
            if not parts:
                raise OptimizeError(f"{p}: the index lists no part")
            files.extend(path.parent / str(e["file"]) for e in parts)
        else:
            files.append(path)
    out = []
    for f in files:
        try:
            rec = read_recording(f)
        except (OSError, RecordingError) as e:
            raise OptimizeError(f"{f}: {e}") from None
        frames = rec.frames()
        if not frames:
            raise OptimizeError(f"{f}: no frames")
        h = rec.header
        offset = int(h["started_wall_ns"]) - int(h["started_mono_ns"])
        out.append(RecordingInfo(str(f), (frames[0][0] + offset) // 1_000_000, (frames[-1][0] - frames[0][0]) / 1e9,
                                 len(frames), tuple(str(m) for m in h.get("markets", []))))
    if len({r.path for r in out}) != len(out):
        raise OptimizeError("a recording is given twice")
    return sorted(out, key=lambda r: (r.first_wall_ms, r.path))


@dataclass
class TrialResult:
    number: int
    values: dict[str, Any]
    cfg: Config | None
    state: str = "running"  # complete | pruned | failed
    scores: dict[int, Score] = field(default_factory=dict)
    error: str = ""

    def totals(self, steps: Sequence[int], penalty: float) -> dict[str, Any]:
        got = [self.scores[s] for s in steps if s in self.scores]
        nets = [n for sc in got for n in sc.trade_nets]
        net = sum(sc.net_pnl_usd for sc in got)
        dd = max_drawdown(nets)
        return {"objective": round(score(net, dd, penalty), 6), "net_pnl_usd": round(net, 6),
                "fees_usd": round(sum(sc.fees_usd for sc in got), 6), "trades": sum(sc.trades for sc in got),
                "wins": sum(sc.wins for sc in got), "max_drawdown_usd": round(dd, 6), "recordings": len(got)}


@dataclass
class Settings:
    trials: int
    seed: int = 0
    batch: int = 8
    drawdown_penalty: float = 1.0
    keep_dir: str = ""


class Optimizer:
    """One study (see the module doc). ``run()`` once."""

    def __init__(self, base: Config, recordings: list[RecordingInfo], space: Space, backend: Backend,
                 settings: Settings, progress: Callable[[str], None] | None = None) -> None:
        if settings.trials < 1 or settings.batch < 1:
            raise OptimizeError("--trials and --batch must be at least 1")
        self.base = base
        self.recordings = recordings
        self.space = space
        self.backend = backend
        self.s = settings
        self.progress = progress or (lambda _line: None)
        recorded = sorted({m for r in recordings for m in r.markets})
        self.coins = [m.coin for m in base.markets if m.coin in recorded] if base.markets else recorded
        if not self.coins:
            raise OptimizeError(f"none of the configured markets was recorded (recorded: {', '.join(recorded)})")
        self.results: list[TrialResult] = []
        self.replays = 0

    def _run_tasks(self, tasks: list[Task]) -> list[Score]:
        self.replays += sum(1 for t in tasks if t.cfg is not None)
        return self.backend.run(tasks)

    def run(self) -> dict[str, Any]:
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # constant_liar (pending trials count as bad guesses, so one batch does not ask the same point
        # several times) is marked experimental in Optuna 4; its behaviour is pinned by the tests here.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        k = len(self.recordings)
        sampler = optuna.samplers.TPESampler(seed=self.s.seed, n_startup_trials=max(2, min(10, self.s.trials // 4)),
                                             constant_liar=True)
        pruner: optuna.pruners.BasePruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
                                             if k > 1 else optuna.pruners.NopPruner())
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        t0 = time.perf_counter()
        steps = list(range(k))
        asked = 0
        while asked < self.s.trials:
            size = min(self.s.batch, self.s.trials - asked)
            batch: list[tuple[Any, TrialResult]] = []
            for _ in range(size):
                trial = study.ask()
                values = {p.name: p.suggest(trial) for p in self.space.params}
                result = TrialResult(trial.number, values, None)
                self.results.append(result)
                try:
                    cfg = apply(self.base, self.coins, values, self.space)
                except InvalidTrial as e:
                    result.state, result.error = "failed", f"invalid: {e}"[:300]
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                result.cfg = cfg if cfg.markets else None  # every market disabled: trade nothing
                batch.append((trial, result))
            asked += size
            alive = batch
            for step in steps:
                tasks = [Task(r.number, step, r.cfg, self.recordings[step].path, self.s.keep_dir) for _, r in alive]
                survivors = []
                for (trial, r), sc in zip(alive, self._run_tasks(tasks), strict=True):
                    r.scores[step] = sc
                    if sc.error:
                        r.state, r.error = "failed", sc.error
                        study.tell(trial, state=TrialState.FAIL)
                        continue
                    value = r.totals(steps[:step + 1], self.s.drawdown_penalty)["objective"]
                    if step < k - 1:
                        trial.report(value, step)
                        if trial.should_prune():
                            r.state = "pruned"
                            study.tell(trial, state=TrialState.PRUNED)
                            continue
                    survivors.append((trial, r))
                alive = survivors
            for trial, r in alive:
                r.state = "complete"
                study.tell(trial, r.totals(steps, self.s.drawdown_penalty)["objective"])
            best = self._best()
            self.progress(f"trials {asked}/{self.s.trials}: best so far "
                          + (f"trial {best.number}, objective {self._objective(best):+.4f}" if best else "none"))
        folds = self._walk_forward()
        return self._summary(folds, time.perf_counter() - t0)

    def _objective(self, r: TrialResult) -> float:
        value: float = r.totals(list(range(len(self.recordings))), self.s.drawdown_penalty)["objective"]
        return value

    def _best(self) -> TrialResult | None:
        done = [r for r in self.results if r.state == "complete"]
        return max(done, key=lambda r: (self._objective(r), -r.number)) if done else None

    def _walk_forward(self) -> list[dict[str, Any]]:
        """Fold f: the best trial on recordings [0, f) scored on recording f."""
        penalty = self.s.drawdown_penalty
        picks: list[tuple[int, TrialResult, dict[str, Any]]] = []
        for f in range(1, len(self.recordings)):
            train = list(range(f))
            ok = [r for r in self.results if r.state != "failed" and all(s in r.scores for s in train)]
            if not ok:
                continue
            winner = max(ok, key=lambda r: (r.totals(train, penalty)["objective"], -r.number))
            picks.append((f, winner, winner.totals(train, penalty)))
        missing = [Task(r.number, f, r.cfg, self.recordings[f].path, self.s.keep_dir)
                   for f, r, _ in picks if f not in r.scores]
        for sc in self._run_tasks(missing) if missing else []:
            next(r for r in self.results if r.number == sc.trial).scores[sc.step] = sc
        folds = []
        for f, r, in_sample in picks:
            test = r.scores[f]
            folds.append({"fold": f, "train": [Path(x.path).name for x in self.recordings[:f]],
                          "test": Path(self.recordings[f].path).name, "trial": r.number,
                          "train_objective": in_sample["objective"],
                          "test_objective": round(score(test.net_pnl_usd, max_drawdown(test.trade_nets), penalty), 6),
                          "test_net_pnl_usd": round(test.net_pnl_usd, 6), "test_trades": test.trades,
                          "test_error": test.error})
        return folds

    def _summary(self, folds: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
        all_steps = list(range(len(self.recordings)))
        rows = []
        for r in self.results:
            rows.append({"trial": r.number, "state": r.state, "params": r.values, "error": r.error,
                         **r.totals(all_steps, self.s.drawdown_penalty)})
        ranked = sorted(rows, key=lambda x: (x["state"] != "complete", -x["objective"], x["trial"]))
        best = self._best()
        if best is None:
            first = next((r.error for r in self.results if r.error), "")
            raise OptimizeError("no trial completed" + (f"; the first error: {first}" if first else ""))
        best_row = next(x for x in rows if x["trial"] == best.number)
        cfg = best.cfg or apply(self.base, self.coins, best.values, self.space)  # None: every market disabled
        comment = (f"hip3 optimize: trial {best.number} of {self.s.trials} (seed {self.s.seed}, batch {self.s.batch}): "
                   f"objective {best_row['objective']:+.4f}\nnet {best_row['net_pnl_usd']:+.4f} USD, max drawdown "
                   f"{best_row['max_drawdown_usd']:.4f} USD, {best_row['trades']} trades on "
                   f"{len(self.recordings)} recording(s)")
        oos = [f for f in folds if not f["test_error"]]
        states = {s: sum(1 for r in self.results if r.state == s) for s in ("complete", "pruned", "failed")}
        return {
            "recordings": [{"path": r.path, "first_wall_ms": r.first_wall_ms, "span_s": round(r.span_s, 3),
                            "frames": r.frames} for r in self.recordings],
            "markets": self.coins, "trials": self.s.trials, "seed": self.s.seed, "batch": self.s.batch,
            "drawdown_penalty": self.s.drawdown_penalty, "states": states,
            "backend": self.backend.name, "workers": self.backend.workers, "replays": self.replays,
            "wall_s": round(wall_s, 3),
            "best": best_row, "best_toml": toml_fragment(best.values, self.space, cfg, comment),
            "top": ranked, "walk_forward": folds,
            "walk_forward_net_pnl_usd": round(sum(f["test_net_pnl_usd"] for f in oos), 6) if oos else None,
        }


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def format_result(res: dict[str, Any], top: int = 10) -> str:
    """The study for a terminal: the top trials, the walk-forward folds and the best parameters as TOML."""
    st = res["states"]
    out = [f"optimize: {len(res['recordings'])} recording(s), markets {', '.join(res['markets'])}; {res['trials']} "
           f"trials (seed {res['seed']}, batches of {res['batch']}) on {res['backend']}: {st['complete']} complete, "
           f"{st['pruned']} pruned, {st['failed']} failed; {res['replays']} replays in {res['wall_s']:.1f} s",
           f"objective = net PnL after fees - {res['drawdown_penalty']:g} x max drawdown (USD), over the recordings "
           "a trial ran (a pruned trial stopped early)",
           f"  {'trial':>5} {'state':<8} {'recs':>4} {'objective':>10} {'net':>9} {'fees':>8} {'trades':>6} "
           f"{'max dd':>8}  params"]
    for row in res["top"][:top]:
        out.append(f"  {row['trial']:>5} {row['state']:<8} {row['recordings']:>4} {row['objective']:>+10.4f} "
                   f"{row['net_pnl_usd']:>+9.4f} {row['fees_usd']:>8.4f} {row['trades']:>6} "
                   f"{row['max_drawdown_usd']:>8.4f}  "
                   f"{_params_text(row['params'])}" + (f"  ({row['error'][:60]})" if row["error"] else ""))
    if res["walk_forward"]:
        out.append("walk-forward (the best trial on the recordings before, scored on the next):")
        for f in res["walk_forward"]:
            out.append(f"  fold {f['fold']}: trial {f['trial']} (in sample {f['train_objective']:+.4f}) on "
                       f"{f['test']}: net {f['test_net_pnl_usd']:+.4f} USD, {f['test_trades']} trades, objective "
                       f"{f['test_objective']:+.4f}" + (f" ERROR {f['test_error']}" if f["test_error"] else ""))
        wf = res["walk_forward_net_pnl_usd"]
        if wf is not None:
            verdict = ("" if wf > 0 else "  NOT POSITIVE out of sample: the parameters do not carry to later "
                       "recordings; do not deploy on this evidence")
            out.append(f"  out of sample: net {wf:+.4f} USD over {len(res['walk_forward'])} fold(s){verdict}")
    else:
        out.append("walk-forward: needs two recordings or more (or a rotated recording's parts): in-sample only")
    out.append(f"best parameters (trial {res['best']['trial']}):")
    out.append(res["best_toml"].rstrip())
    return "\n".join(out)


def cli(base: Config, recordings: Sequence[str], space_path: str, trials: int, seed: int, workers: int | None,
        ray_address: str | None, batch: int, drawdown_penalty: float, top: int, as_json: bool,
        keep_runs: str | None) -> int:
    """``python supervisor.py optimize``: prints the result (text or JSON); problems are one line on stderr."""
    import json
    import sys

    from hip3.analysis.backends import LocalBackend, RayBackend, RayError, default_workers
    from hip3.analysis.space import SpaceError, load_space

    try:
        import optuna  # noqa: F401
    except ImportError:
        print("error: optimize needs optuna: pip install -e '.[analysis]'", file=sys.stderr)
        return 2
    backend: Backend | None = None
    try:
        infos = expand(recordings)
        recorded = sorted({m for r in infos for m in r.markets})
        coins = [m.coin for m in base.markets if m.coin in recorded] if base.markets else recorded
        space = load_space(Path(space_path), base, coins)
        if ray_address:
            backend = RayBackend(ray_address, [r.path for r in infos])
        else:
            backend = LocalBackend(workers or default_workers())
        opt = Optimizer(base, infos, space, backend, Settings(trials, seed, batch, drawdown_penalty, keep_runs or ""),
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
        res = opt.run()
    except (OptimizeError, SpaceError, RayError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a worker pool or cluster that broke under the study: one line, not a traceback
        print(f"error: the study stopped: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    finally:
        if backend is not None:
            backend.close()
    print(json.dumps(res, default=str) if as_json else format_result(res, top))
    return 0

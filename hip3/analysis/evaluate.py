"""One unit of the optimiser's work: replay one recording with one trial's config and score it.

The replay is ``hip3.replay.driver`` (the production actors against the recorded market), its journal is
written by the production recorder, and the score is read from that journal the way ``report`` reads it
(``hip3.journal.report.closed_trades``: PnL minus the fees of the exchange's fills). So a trial is scored by the
code that trades and the figures the operator sees, not by a model of them.

A task is a pure function of (config, recording bytes): nothing depends on the process, the worker or
the order in which tasks run (replays are deterministic; the replay tests check it across processes), so
results do not depend on how many workers run them, or where. Runs in a worker process (a local pool or
a Ray task); the replay's run directory is a temporary directory, removed afterwards unless ``keep_dir``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hip3.config import Config


@dataclass(frozen=True)
class Task:
    trial: int
    step: int  # the recording's place in time order
    cfg: Config | None  # None: no market left to trade (every market disabled): nothing to replay
    recording: str  # a path readable by the worker, or a name when the bytes travel with the task
    keep_dir: str = ""  # keep the replay's run directory under this directory (debugging)


@dataclass
class Score:
    """One recording's result for one trial."""

    trial: int
    step: int
    net_pnl_usd: float = 0.0
    pnl_usd: float = 0.0
    fees_usd: float = 0.0
    trades: int = 0
    wins: int = 0
    trade_nets: list[float] = field(default_factory=list)  # net of each trade, in journal order
    wall_s: float = 0.0
    error: str = ""


def _score_journal(run_dir: Path, score: Score) -> None:
    from hip3.journal.report import closed_trades, open_readonly
    from hip3.journal.schema import journal_path

    conn = open_readonly(journal_path(run_dir))
    try:
        trades = closed_trades(conn)
    finally:
        conn.close()
    nets = [t.pnl - t.fees for t in trades]
    score.trades = len(trades)
    score.wins = sum(1 for n in nets if n > 0)
    score.pnl_usd = float(sum(t.pnl for t in trades))
    score.fees_usd = float(sum(t.fees for t in trades))
    score.net_pnl_usd = float(sum(nets))
    score.trade_nets = [float(n) for n in nets]


def evaluate(task: Task, data: bytes | None = None) -> Score:
    """Replay ``task.recording`` (or ``data``, its bytes, when the worker cannot read the driver's files)
    with ``task.cfg`` and score it. A replay that fails is a score with ``error`` set, never an exception:
    one bad trial must not stop a study."""
    from hip3.replay.driver import replay

    score = Score(task.trial, task.step)
    if task.cfg is None:
        return score
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="h3opt", dir="/tmp"))  # short: the run dir names sockets
    try:
        path = Path(task.recording)
        if data is not None:
            digest = hashlib.sha256(data).hexdigest()[:16]
            path = work / f"{digest}-{Path(task.recording).name}"
            path.write_bytes(data)
        run_dir = work / "run"
        try:
            replay(path, task.cfg, run_dir)
            _score_journal(run_dir, score)
        except Exception as e:  # any failure of this replay fails this trial, and only it
            score.error = f"{type(e).__name__}: {e}"[:300]
        if task.keep_dir:
            dest = Path(task.keep_dir) / f"trial{task.trial:05d}-step{task.step:03d}"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(run_dir, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock", "*.ipc"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    score.wall_s = time.perf_counter() - t0
    return score

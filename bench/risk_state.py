"""Benchmark: what keeping the loss limits across restarts costs the executor (``hip3.execution.risk_state``).

* ``entry_block_ns``: the only addition to the order send path, the daily-cap / unusable-state check
  every entry intent passes (median of many calls);
* ``save_us`` (p50/p99): export + JSON + CRC + in-place write of the older of two slot files, what runs
  at the end of a loop turn that changed a limit (after that turn's frames); the state is a busy one:
  every soft gate on, several markets with outcome histories, 256 remembered close keys. Baseline in the
  same run (``rename_save_us``): the same bytes written to a temporary file renamed over the old one, the
  usual atomic replace, which the slots avoid;
* ``sync_us`` (p50/p99): fdatasync of the written slot, from a timer 5 ms later;
* ``load_us``: reading and checking the file at start; ``catch_up_ms``: reading 1,000 closes back from a
  recorder journal at start.

Figures on this shared machine are indicative only. Run: ``python -m bench.risk_state [--n N]``.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from hip3.execution.params import (
    BurstParams,
    CorrelationCooldownParams,
    HourlyDrawdownParams,
    MarketHealthParams,
    ReentryDelayParams,
    RiskParams,
    SoftGateParams,
    TiltGuardParams,
)
from hip3.execution.risk import RiskMonitor
from hip3.execution.risk_keeper import RiskKeeper
from hip3.execution.risk_state import RiskStateStore
from hip3.execution.soft_gates import SoftGates
from hip3.journal.db import JournalWriter
from hip3.journal.schema import JOURNAL_FILE
from hip3.messages import HardStopState, PositionClosed
from hip3.runtime.percentiles import percentile_round

T0 = 1_769_594_000_000
COINS = [f"xyz:M{i}" for i in range(8)]


def _close(i: int) -> PositionClosed:
    return PositionClosed(coin=COINS[i % len(COINS)], is_long=i % 2 == 0, size=Decimal("1.25"),
                          entry_px=Decimal("101.5"), exit_px=Decimal("101.1"), pnl_usd=Decimal("-0.5"),
                          fees_usd=Decimal("0.02"), hold_ms=2000, exit_reason="time_stop", closed_ms=T0 + i * 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="h3riskbench", dir="/tmp"))
    try:
        on = {"enabled": True}
        soft_params = SoftGateParams(
            hourly_drawdown=HourlyDrawdownParams(**on), correlation_cooldown=CorrelationCooldownParams(**on),
            burst=BurstParams(**on), tilt_guard=TiltGuardParams(**on), reentry_delay=ReentryDelayParams(**on),
            market_health=MarketHealthParams(**on))
        risk = RiskMonitor(RiskParams(max_loss_usd=1e6, daily_loss_cap_usd=1e6, max_consecutive_failures=1000))
        soft = SoftGates(soft_params)
        keeper = RiskKeeper(RiskStateStore(run_dir), risk, soft)
        keeper.restore(HardStopState(latched=False, reason=None, epoch=0, since_ms=None), T0)
        for i in range(300):  # a busy state: histories per market, 256 close keys
            c = _close(i)
            risk.first_count(c)
            risk.on_position_closed(c, c.closed_ms)
            soft.on_position_closed(c, c.closed_ms)
            soft.record_executed(c.coin, c.closed_ms)

        n = 200_000
        t = time.perf_counter_ns()
        for _ in range(n):
            risk.entry_block(T0)
        entry_block_ns = (time.perf_counter_ns() - t) / n

        saves: list[float] = []
        syncs: list[float] = []
        for i in range(args.n):
            risk.on_position_closed(_close(i), T0 + i)
            t = time.perf_counter_ns()
            keeper.save(T0 + i)
            saves.append((time.perf_counter_ns() - t) / 1000)
            if i % 10 == 0:  # the fsync follows from a timer, not after every save
                t = time.perf_counter_ns()
                keeper.sync()
                syncs.append((time.perf_counter_ns() - t) / 1000)
        size = max(p.stat().st_size for p in run_dir.glob("risk_state.json.?"))
        body = (run_dir / "risk_state.json.a").read_bytes()
        renames: list[float] = []
        # The usual temporary file and rename (hip3.runtime.durable without its fsyncs): the baseline.
        for _ in range(args.n):
            t = time.perf_counter_ns()
            fd = os.open(run_dir / ".baseline.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, body)
            os.close(fd)
            os.replace(run_dir / ".baseline.tmp", run_dir / "baseline")
            renames.append((time.perf_counter_ns() - t) / 1000)

        loads: list[float] = []
        for _ in range(50):
            t = time.perf_counter_ns()
            RiskStateStore(run_dir).load()
            loads.append((time.perf_counter_ns() - t) / 1000)

        writer = JournalWriter(run_dir / JOURNAL_FILE)
        for i in range(1000):
            writer.add(_close(10_000 + i))
        writer.flush()
        writer.close()
        fresh = RiskMonitor(RiskParams())
        keeper2 = RiskKeeper(RiskStateStore(run_dir), fresh, SoftGates(SoftGateParams()))
        keeper2.restore(HardStopState(latched=False, reason=None, epoch=0, since_ms=None), T0)
        keeper2._restored_saved_ms = T0 + 10_000 * 1000  # the journal's closes are all newer than the save
        t = time.perf_counter_ns()
        got, problem = keeper2.catch_up(run_dir / JOURNAL_FILE, lambda c, now: None)
        catch_up_ms = (time.perf_counter_ns() - t) / 1e6
        assert problem is None and got > 900, (got, problem)
        keeper.close(T0)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    out = {
        "entry_block_ns": round(entry_block_ns),
        "save_p50_us": round(percentile_round(saves, 0.5), 1),
        "save_p99_us": round(percentile_round(saves, 0.99), 1),
        "rename_save_p50_us": round(percentile_round(renames, 0.5), 1),
        "rename_save_p99_us": round(percentile_round(renames, 0.99), 1),
        "sync_p50_us": round(percentile_round(syncs, 0.5)), "sync_p99_us": round(percentile_round(syncs, 0.99)),
        "load_p50_us": round(percentile_round(loads, 0.5)), "state_bytes": size,
        "catch_up_1000_closes_ms": round(catch_up_ms, 1),
    }
    print(f"entry_block (send path) {out['entry_block_ns']} ns per entry")
    print(f"save at the end of a turn: p50 {out['save_p50_us']} us, p99 {out['save_p99_us']} us "
          f"({size} bytes); temporary file + rename of the same bytes: p50 {out['rename_save_p50_us']} us, "
          f"p99 {out['rename_save_p99_us']} us")
    print(f"fdatasync (timer): p50 {out['sync_p50_us']} us, p99 {out['sync_p99_us']} us")
    print(f"load at start: p50 {out['load_p50_us']} us; "
          f"catch-up of 1,000 journal closes: {out['catch_up_1000_closes_ms']} ms")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

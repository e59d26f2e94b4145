"""Benchmark: tick-to-trade of the whole bot, real processes over ipc://, against the simulator.

The supervisor starts the simulator and the five actors exactly as ``python supervisor.py start``
does (paper mode), with 20 markets and a simulator model driven fast enough that the feed receives
about ``--rate`` market updates (bbo + activeAssetCtx frames) per second in total, with oracle jumps
that cause entries and regressions that cause exits. A bench process subscribes to the executor's
``exec`` stream and, for every ``OrderSubmitted`` caused by an exchange frame, takes:

    origin_recv_ns     the feed received the exchange frame (WebSocket)
    intent_created_ns  the detector / exit watcher decided (intent built)
    intent_recv_ns     the executor received the intent
    sent_ns            the executor wrote the signed order frame

so tick-to-trade (``sent − origin``) is split into stages. The same run then times the bare
three-process chain of ``bench.floor`` at the same rate: the floor for Python on this machine.
CPU per actor is read from ``/proc/<pid>/stat`` over the measured window.

The simulator runs on this machine, unlike the real exchange: by default it is put in the
``SCHED_BATCH`` class so that its order matching is not scheduled inside the executor's send system
call on a 2-vCPU machine (``--sim-normal`` leaves it alone and shows that artefact).

``--realtime feed,exit_watcher,executor`` runs those actors under ``SCHED_FIFO`` (``[supervisor]
realtime_actors``, opt-in, needs root): the deployment setting that takes the run-queue waits off the path.

Run: ``python -m bench.tick_to_trade [--seconds 60] [--rate 1000] [--realtime A,B]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import supervisor as cli
from bench.floor import run_floor
from hip3.config import load_config
from hip3.messages import OrderSubmitted
from hip3.ops import ctl
from hip3.runtime.bus import Bus
from hip3.runtime.percentiles import percentile_round

MARKETS = ("XYZ100", "TSLA", "NVDA", "GOLD", "AAPL", "MSFT", "GOOGL", "AMZN", "META", "HOOD", "PLTR", "COIN",
           "INTC", "AMD", "MSTR", "NFLX", "ORCL", "SILVER", "RIVN", "CL")


def _config(run_dir: Path, refresh_ms: int, realtime: list[str]) -> str:
    markets = "".join(f'[[markets]]\ncoin = "xyz:{m}"\n' for m in MARKETS)
    return f'''run_dir = "{run_dir}"
mode = "paper"
[supervisor]
realtime_actors = {json.dumps(realtime)}
[exchange]
network = "sim"
[logging]
stderr = false
{markets}
# Room for many concurrent positions, so entries are not all refused by the caps.
[executor]
max_notional_per_market_usd = 50.0
max_total_notional_usd = 2000.0
max_concurrent_positions = 20
[sim.model]
tick_ms = 10
refresh_ms = {refresh_ms}
oracle_interval_ms = 1000
maker_lag_ms = 2500
jump_prob = 0.08
'''


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)


def _policy(pid: int) -> str:
    try:
        policy = os.sched_getscheduler(pid)
    except OSError:
        return "?"
    return {os.SCHED_OTHER: "other", os.SCHED_BATCH: "batch", os.SCHED_FIFO: "fifo"}.get(policy, str(policy))


def _pcts(xs: list[float]) -> dict[str, float | int | None]:
    if not xs:
        return {"p50": None, "p99": None, "n": 0}
    return {"p50": round(statistics.median(xs), 1), "p99": round(percentile_round(xs, 0.99), 1), "n": len(xs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=int, default=1000, help="target market updates per second (all markets)")
    ap.add_argument("--refresh-ms", type=int, default=0, help="simulator maker refresh (0: derived from --rate)")
    ap.add_argument("--floor-seconds", type=float, default=10.0)
    ap.add_argument("--sim-normal", action="store_true",
                    help="leave the simulator in the normal scheduling class (see the module docstring)")
    ap.add_argument("--realtime", default="",
                    help="comma-separated actors to run under SCHED_FIFO ([supervisor] realtime_actors; "
                         "needs root), e.g. feed,exit_watcher,executor")
    args = ap.parse_args()
    realtime = [n for n in args.realtime.split(",") if n]
    # Each maker refresh changes a market's bbo (size jitter): about one frame per market per refresh
    # (measured: refresh 40 ms gave 519 updates/s over 20 markets).
    refresh_ms = args.refresh_ms or max(5, round(len(MARKETS) * 1000 / args.rate))
    run_dir = Path(tempfile.mkdtemp(prefix="h3t2t", dir="/tmp"))
    cfg_path = run_dir / "bench.toml"
    cfg_path.write_text(_config(run_dir, refresh_ms, realtime))
    os.environ.pop("HIP3_RUN_DIR", None)
    cfg = load_config(str(cfg_path))
    if cli.main(["start", "--detach", "--config", str(cfg_path)]) != 0:
        raise SystemExit("could not start hip3")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    bus = Bus(cfg, "bench", context=ctx)
    sub = bus.subscriber(["exec"])
    samples: list[OrderSubmitted] = []
    try:
        st0 = ctl.request(cfg, {"cmd": "status"})
        if not args.sim_normal:
            # The simulator stands in for a remote exchange: its matching must not run on our CPU inside
            # the executor's send (bench.executor found 245 µs of a 368 µs write was the simulator).
            # SCHED_BATCH keeps it from preempting on wake-up.
            os.sched_setscheduler(st0["exchange"]["pid"], os.SCHED_BATCH, os.sched_param(0))
        time.sleep(5.0)  # warm-up: connections, first positions
        st0 = ctl.request(cfg, {"cmd": "status"})
        pids = {a["name"]: a["pid"] for a in st0["actors"]}
        policies = {n: _policy(p) for n, p in pids.items()}
        feed0 = next(a for a in st0["actors"] if a["name"] == "feed")["stats"]
        cpu0 = {n: _cpu_ticks(p) for n, p in pids.items()}
        t0 = time.monotonic()
        while sub.recv() is not None:  # discard what arrived during the warm-up
            pass
        while time.monotonic() - t0 < args.seconds:
            if sub.sock.poll(200):
                for msg in sub.drain():
                    if isinstance(msg, OrderSubmitted) and msg.origin_recv_ns > 0:
                        samples.append(msg)
        elapsed = time.monotonic() - t0
        st1 = ctl.request(cfg, {"cmd": "status"})
        feed1 = next(a for a in st1["actors"] if a["name"] == "feed")["stats"]
        cpu1 = {n: _cpu_ticks(p) for n, p in pids.items()}
        executor_stats = next(a for a in st1["actors"] if a["name"] == "executor")["stats"]
    finally:
        bus.close()
        ctx.term()
        cli.main(["stop", "--config", str(cfg_path)])
    hz = os.sysconf("SC_CLK_TCK")
    updates = (feed1.get("bbo", 0) + feed1.get("ctx", 0)) - (feed0.get("bbo", 0) + feed0.get("ctx", 0))
    cpu_pct = {n: round(100 * (cpu1[n] - cpu0[n]) / hz / elapsed, 1) for n in pids}

    def stage(kind: str) -> dict[str, Any]:
        xs = [m for m in samples if (m.kind == "entry") == (kind == "entry")]
        total = [(m.sent_ns - m.origin_recv_ns) / 1000 for m in xs]
        full = [m for m in xs if m.intent_created_ns and m.intent_recv_ns]
        return {
            "tick_to_trade": _pcts(total),
            "frame_to_decision": _pcts([(m.intent_created_ns - m.origin_recv_ns) / 1000 for m in full]),
            "decision_to_executor": _pcts([(m.intent_recv_ns - m.intent_created_ns) / 1000 for m in full]),
            "executor_to_frame": _pcts([(m.sent_ns - m.intent_recv_ns) / 1000 for m in full]),
        }

    entry, exit_ = stage("entry"), stage("exit")
    # Orders written within 3 ms after another one: a burst (several markets on one oracle move), where
    # an order can wait for the previous one's work in every actor on the way.
    ordered = sorted(samples, key=lambda m: m.sent_ns)
    behind = [(b.sent_ns - b.origin_recv_ns) / 1000 for a, b in itertools.pairwise(ordered)
              if b.sent_ns - a.sent_ns < 3_000_000]
    print(f"system: {elapsed:.0f} s, {updates / elapsed:.0f} market updates/s over {len(MARKETS)} markets "
          f"(maker refresh {refresh_ms} ms), {entry['tick_to_trade']['n']} entries, "
          f"{exit_['tick_to_trade']['n']} exits")
    for name, d in (("entry", entry), ("exit", exit_)):
        print(f"  {name}: " + "; ".join(f"{k} p50 {v['p50']} p99 {v['p99']} µs" for k, v in d.items()))
    print(f"  orders within 3 ms after another (a burst): {_pcts(behind)} µs tick-to-trade")
    print(f"  CPU % per process: {cpu_pct}")
    print(f"  scheduling class per process: {policies}")
    print("  executor stages (idle-path medians, µs): "
          + ", ".join(f"{k.removeprefix('stage_').removesuffix('_p50_us')} {v}" for k, v in executor_stats.items()
                      if k.startswith("stage_") and k.endswith("_p50_us")))
    floor = run_floor(args.rate, args.floor_seconds)
    print(f"floor (bare 3-process chain, same rate): p50 {floor['floor_p50_us']} µs, p99 {floor['floor_p99_us']} µs")
    shutil.rmtree(run_dir, ignore_errors=True)
    ex, en = exit_["tick_to_trade"], entry["tick_to_trade"]
    result = {
        "exit_p50_us": ex["p50"], "exit_p99_us": ex["p99"], "exit_n": ex["n"],
        "entry_p50_us": en["p50"], "entry_p99_us": en["p99"], "entry_n": en["n"],
        "updates_per_s": round(updates / elapsed, 1),
        "cpu_pct": cpu_pct,
        "floor_p50_us": floor["floor_p50_us"], "floor_p99_us": floor["floor_p99_us"],
        "exit_p50_over_floor_p50": round(ex["p50"] / floor["floor_p50_us"], 2) if ex["p50"] else None,
        "stages": {"entry": entry, "exit": exit_},
        "second_in_burst": _pcts(behind),
        "seconds": round(elapsed, 1),
        "sim_sched": "normal" if args.sim_normal else "batch",
        "realtime_actors": sorted(n for n, p in policies.items() if p == "fifo"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

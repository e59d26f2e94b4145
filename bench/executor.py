"""Benchmark: the executor's added latency on the idle path, and what it sends when offered more than it can.

The rig (the simulator and the executor as their own processes, this process as the other actors, the
intent pushers) is ``bench/executor_rig.py``. Phases:

1. **idle path** → ``added_latency_median_us`` (p90, p99): ``LAT_N`` (150) intents, one every
   ``LAT_GAP_S`` (5 ms), pushed from this process (within the entry posts' burst, so no intent waits for
   a token). Nothing is in flight when each arrives, so each is gated, signed, journalled and written at
   once. The latency is measured INSIDE the executor: its intake handler receives the decoded intent →
   the WebSocket frame with the signed order was handed to the kernel. It is read from the executor's
   heartbeat stats after this phase only, with the per-stage breakdown.
2. **load sweep** → one step per offered rate in ``RATES`` (1,000 / 2,500 / 5,000 / 10,000 intents/s),
   each for ``STEP_S`` seconds, in one run against the same executor, round robin over the entry
   markets. ``sent_per_s`` is the step's entry orders written (``OrderSubmitted``, attributed to the step
   by intent id) divided by the time its intents were pushed over; ``cpu_pct`` the executor's CPU over
   the step. Meanwhile this process pushes one flatten every ``PROBE_EVERY_S`` on the probe markets (no
   position: the simulator answers "reduce only would increase", benign): ``flatten_added_us`` is the
   executor's receipt → frame written for them, the proof that flattens go first under overload.

Every pushed entry is accounted for, per step: dropped by the PUSH socket (high-water mark / no peer),
refused or shed by the executor with its reason code (``entry_<outcome>:<reason>`` counters), or accepted
and then either written (``OrderSubmitted``) or dropped unsent with its ``OrderRejected`` reason (expired
in the queue, exchange backoff, send failure). ``unaccounted`` must be 0.

The simulator runs with ``SCHED_BATCH`` unless ``--sim-normal``: it stands in for a REMOTE exchange. On
two vCPUs the kernel otherwise wakes it on the executor's CPU from inside the executor's ``send`` (a sync
socket wakeup) and lets it preempt the executor there, so ``stage_write`` would include the simulator's
own handling of the order (about 200 µs) — time the real exchange never spends on our CPU.
``--no-sign-pool`` runs the whole bench a second time with ``sign_nonce_pool = 0`` (RFC 6979 signing for
every order): the same run's baseline for the nonce pool. Last line: JSON (the default configuration's
figures; ``sent_per_s_by_offered`` and ``unaccounted`` are the sweep's headline).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.executor_rig import (
    KEY,
    N_MARKETS,
    N_PROBE_MARKETS,
    Side,
    executor_toml,
    make_flatten,
    make_intent,
    market_names,
    pusher,
    sim_toml,
)
from hip3.hyperliquid.signing import Signer

# Within the entry posts' token bucket (``entry_posts_burst``, 200): 200 intents/s for longer would be
# paced at the WebSocket budget's rate, and the idle path would measure the wait for a token.
LAT_N = 150
LAT_GAP_S = 0.005
RATES = (1000, 2500, 5000, 10000)
STEP_S = 1.5
PROBE_EVERY_S = 0.1
SETTLE_S = 2.5  # after a step: past the last intent's validity (2 s) and the tick that drops it
STAGES = ("stage_gates", "stage_wire", "stage_sign", "stage_journal", "stage_write")
ROOT = Path(__file__).resolve().parents[1]



def _delta(after: dict[str, int], before: dict[str, int], prefix: str) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items())
            if k.startswith(prefix) and v - before.get(k, 0)}


def _stages(stats: dict[str, int]) -> dict[str, int]:
    return {f"{st}_{q}_us": stats[f"{st}_{q}_us"] for st in STAGES for q in ("p50", "p90")
            if f"{st}_{q}_us" in stats}


def _cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (from /proc)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    ordered = sorted(xs)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _step(side: Side, ex_pid: int, cfg_text: str, run_dir: Path, rate: int, k: int, step_s: float
          ) -> dict[str, Any]:
    """One load step at ``rate`` intents/s offered; returns its accounting."""
    entry_assets = dict(list(side.assets.items())[:N_MARKETS - N_PROBE_MARKETS])
    probe_coins = list(side.assets)[N_MARKETS - N_PROBE_MARKETS:]
    prefix, probe_prefix = f"s{k}_", f"f{k}_"
    side.idle(0.3)
    stats0 = dict(side.stats)
    posts0 = stats0.get("posts", 0)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    started = ctx.Event()
    proc = ctx.Process(target=pusher, args=(cfg_text, str(run_dir), entry_assets, rate, step_s, prefix, out,
                                            started))
    proc.start()
    cpu0 = t0 = None
    n_probe = 0
    next_probe = next_marks = 0.0
    t_end = time.monotonic() + step_s + 15
    while proc.is_alive() and time.monotonic() < t_end:
        side.pump()
        now = time.monotonic()
        if t0 is None and started.is_set():
            cpu0, t0 = _cpu_s(ex_pid), now
        if t0 is not None and now >= next_probe and now - t0 < step_s:
            coin = probe_coins[n_probe % len(probe_coins)]
            side.probe_push.send(make_flatten(n_probe, coin, side.assets[coin], probe_prefix))
            n_probe += 1
            next_probe = now + PROBE_EVERY_S
        if now >= next_marks:
            side.marks()
            next_marks = now + 0.5
        time.sleep(0.002)
    cpu1, t1 = _cpu_s(ex_pid), time.monotonic()
    pushed, dropped, elapsed = out.get(timeout=5)
    proc.join(5)
    side.idle(SETTLE_S)
    stats1 = dict(side.stats)
    verdicts = _delta(stats1, stats0, "entry_")
    received = verdicts.pop("entry_intents", 0)
    refused = {key.split("_", 1)[1]: count for key, count in verdicts.items()
               if ":" in key and not key.startswith("entry_accepted")}
    sent = side.sent_by_prefix[prefix]
    unsent = dict(side.unsent.get(prefix, Counter()))
    flatten_us = side.flatten_added_us.get(probe_prefix, [])
    return {
        "offered_per_s": rate,
        "pushed": pushed,
        "pushed_per_s": round(pushed / elapsed) if elapsed else 0,
        "dropped_at_push": dropped,
        "received": received,
        "refused": refused,
        "accepted": verdicts.get("entry_accepted", 0),
        "sent": sent,
        "sent_per_s": round(sent / elapsed) if elapsed else 0,
        "dropped_unsent": unsent,
        "unaccounted": pushed - dropped - sum(refused.values()) - sent - sum(unsent.values()),
        "posts": stats1.get("posts", 0) - posts0,
        "posts_per_s": round((stats1.get("posts", 0) - posts0) / elapsed, 1) if elapsed else 0,
        "cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1) if cpu0 is not None and t0 is not None else None,
        "flatten_probes": n_probe,
        "flatten_sent": len(flatten_us),
        "flatten_added_p50_us": _pct(flatten_us, 0.5),
        "flatten_added_max_us": max(flatten_us) if flatten_us else None,
    }


def run(extra: str = "", label: str = "", sim_batch: bool = True, rates: tuple[int, ...] = RATES,
        step_s: float = STEP_S) -> dict[str, object]:
    signer = Signer(KEY)
    tmp = Path(tempfile.mkdtemp(prefix="h3bx", dir="/tmp"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HIP3_PRIVATE_KEY", None)
    (tmp / "sim.toml").write_text(sim_toml())
    sim = subprocess.Popen([sys.executable, "-m", "hip3.sim", "--port", "0", "--config", str(tmp / "sim.toml"),
                            "--fund", f"{signer.address}:10000000", "--order-log", str(tmp / "orders.jsonl")],
                           stdout=subprocess.PIPE, text=True, env=env)
    if sim_batch:
        os.sched_setscheduler(sim.pid, os.SCHED_BATCH, os.sched_param(0))  # see the module docstring
    executor: subprocess.Popen[bytes] | None = None
    side: Side | None = None
    try:
        assert sim.stdout is not None
        port = int(sim.stdout.readline().strip().split("=")[1])
        url = f"http://127.0.0.1:{port}"
        run_dir = tmp / "run"
        cfg_text = executor_toml(run_dir, url, signer.address, extra)
        (tmp / "executor.toml").write_text(cfg_text)
        from hip3.hyperliquid.rest import RestClient

        meta = RestClient(url).meta("xyz")
        assets = {u["name"]: 110000 + i for i, u in enumerate(meta["universe"]) if u["name"] in set(market_names())}
        side = Side(cfg_text, run_dir, assets)
        executor = subprocess.Popen([sys.executable, "-m", "actors.executor", "--config", str(tmp / "executor.toml"),
                                     "--run-dir", str(run_dir)], env={**env, "HIP3_PRIVATE_KEY": KEY},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not side.ready and time.monotonic() < deadline:
            side.pump()
            side.marks()
            time.sleep(0.02)
        if not side.ready:
            raise RuntimeError("executor not READY within 30 s")
        side.marks()
        side.idle(0.5)
        stats0 = dict(side.stats)

        # Phase 1: the idle path, one intent at a time.
        coins = list(assets)[:N_MARKETS - N_PROBE_MARKETS]
        n0 = len(side.submitted)
        drop0 = side.push.dropped
        for i in range(LAT_N):
            coin = coins[i % len(coins)]
            side.push.send(make_intent(i, coin, assets[coin], "lat_"))
            side.idle(LAT_GAP_S)
        side.idle(1.5)  # the executor publishes its stats every second; heartbeats carry them
        idle_stats = dict(side.stats)
        idle_acct = {
            "pushed": LAT_N,
            "dropped_at_push": side.push.dropped - drop0,
            "received": idle_stats.get("entry_intents", 0) - stats0.get("entry_intents", 0),
            "verdicts": _delta(idle_stats, stats0, "entry_"),
            "sent": len(side.submitted) - n0,
        }

        # Phase 2: the load sweep, one pusher process per offered rate.
        steps = [_step(side, executor.pid, cfg_text, run_dir, rate, k, step_s) for k, rate in enumerate(rates)]
        at_2500 = next((step["sent_per_s"] for step in steps if step["offered_per_s"] == 2500), None)
        above = [step["sent_per_s"] for step in steps if step["offered_per_s"] >= 2500]
        return {
            "label": label or "default",
            "sim_sched": "batch" if sim_batch else "normal",
            "added_latency_median_us": idle_stats.get("added_latency_p50_us"),
            "added_latency_p90_us": idle_stats.get("added_latency_p90_us"),
            "added_latency_p99_us": idle_stats.get("added_latency_p99_us"),
            "added_latency_max_us": idle_stats.get("added_latency_max_us"),
            "idle_stages": _stages(idle_stats),
            "idle_accounting": idle_acct,
            "steps": steps,
            "sent_per_s_by_offered": {str(step["offered_per_s"]): step["sent_per_s"] for step in steps},
            "sent_per_s_at_2500": at_2500,
            "min_sent_per_s_from_2500": min(above) if above else None,
            "holds_2500_rate": bool(above) and at_2500 is not None and min(above) >= at_2500,
            "unaccounted": sum(int(step["unaccounted"]) for step in steps),
            "flatten_added_max_us": max((step["flatten_added_max_us"] or 0 for step in steps), default=None),
            "step_s": step_s,
            "markets": N_MARKETS,
        }
    finally:
        if executor is not None:
            executor.terminate()
            try:
                executor.wait(10)
            except subprocess.TimeoutExpired:
                executor.kill()
        if side is not None:
            side.close()
        sim.terminate()
        sim.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    rates: tuple[int, ...] = RATES
    if "--rates" in sys.argv:
        rates = tuple(int(x) for x in sys.argv[sys.argv.index("--rates") + 1].split(","))
    step_s = float(sys.argv[sys.argv.index("--step-s") + 1]) if "--step-s" in sys.argv else STEP_S
    sim_batch = "--sim-normal" not in sys.argv
    variants = [("", "default (nonce pool, fsync 5 ms after the frame)")]
    if "--fsync-before" in sys.argv:
        variants.append(("journal_fsync_before_send = true", "fsync before the frame"))
    if "--no-sign-pool" in sys.argv:  # the same run's baseline for the nonce pool: RFC 6979 every order
        variants.append(("sign_nonce_pool = 0", "no nonce pool (RFC 6979)"))
    results = []
    for extra, label in variants:
        result = run(extra, label, sim_batch=sim_batch, rates=rates, step_s=step_s)
        results.append(result)
        print(f"{label}: idle path added latency p50 {result['added_latency_median_us']} us, "
              f"p90 {result['added_latency_p90_us']} us; steps of {step_s} s:")
        for step in result["steps"]:  # type: ignore[attr-defined]
            print(f"offered {step['offered_per_s']:>6}/s  pushed {step['pushed_per_s']:>6}/s  "
                  f"sent {step['sent_per_s']:>6}/s  posts {step['posts']:>5} ({step['posts_per_s']}/s)  "
                  f"cpu {step['cpu_pct']}%  refused {step['refused']}  "
                  f"unsent {step['dropped_unsent']}  unaccounted {step['unaccounted']}  flatten p50/max "
                  f"{step['flatten_added_p50_us']}/{step['flatten_added_max_us']} us "
                  f"({step['flatten_sent']}/{step['flatten_probes']})")
        print(json.dumps(result))
    print(json.dumps(results[0]))


if __name__ == "__main__":
    main()

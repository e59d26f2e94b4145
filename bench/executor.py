"""Benchmark: the executor's added latency on the idle path, and its throughput under load (issue 6).

Setup (all on loopback, ipc bus):

* the simulator as its own process (``python -m hip3.sim``) with ``N_MARKETS`` synthetic markets (the
  executor's gates allow one pending entry per market, so concurrency needs markets) and a slow model;
* the executor actor as its own process (``python -m actors.executor``), paper mode, the key in its
  environment; caps raised for the bench (``[executor]`` below): notional caps, max positions and the
  per-second action budget;
* this process plays the other actors: a positions publisher (one synced, empty snapshot), an md publisher
  (marks), the supervisor's inbox (READY and the executor's stats) and an ``exec`` subscriber;
* a pusher process (PUSH on ``intents``) feeding entry intents with fresh ids and ``valid_until`` 2 s ahead.

Every intent is an IOC 2 % away from the mark: it passes every gate, is signed and posted, and the
simulator answers with a benign "could not immediately match" rejection (no position ever opens, so the
caps and the risk triggers never engage). Two phases, measured separately:

1. **idle path** → ``added_latency_median_us`` (p90, p99): ``LAT_N`` intents, one every ``LAT_GAP_S``
   (5 ms), pushed from this process. Nothing is in flight when each arrives (the simulator answers in
   about 1 ms), so each is gated, signed, journalled and written at once. The latency is measured INSIDE
   the executor: ``time.monotonic_ns()`` when its intake handler receives the decoded intent → right after
   the WebSocket frame carrying the signed order was handed to the kernel (``sendall`` returned). It
   excludes the ZeroMQ hop into the executor and the network. It is read from the executor's heartbeat
   stats after this phase only, with the per-stage breakdown (``stage_gates``: receipt → verdict;
   ``stage_wire``: order action built; ``stage_sign``: nonce + signature; ``stage_journal``: sent-intent
   journal line written; ``stage_write``: JSON envelope + frame + ``sendall``).
2. **load** → ``intents_per_s``: the pusher process pushes ``RATE`` intents/s for ``SECONDS``, round
   robin over the markets; ``intents_per_s`` is the number of orders written per second between the
   first and the last ``OrderSubmitted`` of the phase (seen on ``exec``). Under load the scheduler
   batches (``batch_interval_ms``), so the per-order latency of this phase is reported separately.

Every pushed intent is accounted for: dropped by the PUSH socket (high-water mark / no peer), refused by
the executor with its gate's reason code (``entry_<outcome>:<reason>`` counters), or accepted and then
either written (``OrderSubmitted``), failed to send (``OrderRejected`` "send_failed: ..."), or was still
queued when its validity ran out (``OrderRejected`` "expired before sending": the WebSocket budget of 2000
messages per minute can run out under this load). ``unaccounted`` must be 0.

The simulator runs with ``SCHED_BATCH`` unless ``--sim-normal``: it stands in for a REMOTE exchange. On
two vCPUs the kernel otherwise wakes it on the executor's CPU from inside the executor's ``send`` (a sync
socket wakeup) and lets it preempt the executor there, so ``stage_write`` would include the simulator's
own handling of the order (about 200 µs) — time the real exchange never spends on our CPU. ``--sim-normal``
shows that figure. ``--no-sign-pool`` runs the whole bench a second time with ``sign_nonce_pool = 0``
(RFC 6979 signing for every order): the same run's baseline for the nonce pool. Last line: JSON (the
default configuration's figures).
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
from decimal import Decimal
from pathlib import Path
from typing import Any

from hip3.bus import Bus, prepare_run_dir
from hip3.config import parse_config
from hip3.hyperliquid.signing import Signer
from hip3.messages import (
    AssetCtx,
    EntryIntent,
    Heartbeat,
    MarketTerm,
    MarketTerms,
    OrderRejected,
    OrderSubmitted,
    PositionSnapshot,
    Ready,
)

KEY = "0x" + "5a" * 32
N_MARKETS = 100
PX = 100.0
LAT_N = 300
LAT_GAP_S = 0.005
RATE = 10000
SECONDS = 1.5  # the WsClient budget (2000 messages per rolling minute, protocol §9.1) caps a longer run
STAGES = ("stage_gates", "stage_wire", "stage_sign", "stage_journal", "stage_write")
ROOT = Path(__file__).resolve().parents[1]


def _coins() -> list[str]:
    return [f"xyz:B{i:03d}" for i in range(N_MARKETS)]


def sim_toml() -> str:
    out = "[sim]\nl2_min_interval_ms = 500\n[sim.model]\ntick_ms = 200\noracle_interval_ms = 1000\n" \
          "refresh_ms = 1000\nmaker_lag_ms = 400\n"
    for c in _coins():
        out += f'[[sim.markets]]\nname = "{c}"\nsz_decimals = 2\nstart_px = {PX}\nvol_bps = 0.5\n'
    return out


def executor_toml(run_dir: Path, url: str, account: str, extra: str) -> str:
    text = f"""run_dir = "{run_dir}"
mode = "paper"
[exchange]
network = "sim"
rest_url = "{url}"
account_address = "{account}"
[bus]
transport = "ipc"
[logging]
stderr = false
level = "info"
[supervisor]
heartbeat_interval_ms = 100
[executor]
max_notional_per_market_usd = 1000000.0
max_total_notional_usd = 10000000.0
max_concurrent_positions = 1000
action_budget_orders = 1000000
{extra}
"""
    return text + "".join(f'[[markets]]\ncoin = "{c}"\n' for c in _coins())


def make_intent(i: int, coin: str, asset: int, prefix: str) -> EntryIntent:
    now = time.monotonic_ns()
    is_buy = i % 2 == 0
    px = Decimal("98") if is_buy else Decimal("102")  # 2 % away: an IOC miss, inside the oracle band
    return EntryIntent(intent_id=f"{prefix}{i}", coin=coin, asset=asset, is_buy=is_buy, px=px, sz=Decimal("0.2"),
                       reduce_only=False, valid_until_ns=now + 2_000_000_000, origin_recv_ns=now, created_ns=now,
                       edge_bps=10.0, signal_id="bench")


def pusher(cfg_text: str, run_dir: str, assets: dict[str, int], rate: int, seconds: float, prefix: str,
           out: Any) -> None:
    """The pusher process: ``rate`` intents/s in 1 ms slices, round-robin over the markets. Puts
    ``(pushed, dropped)`` on ``out`` (a drop: the PUSH socket refused, high-water mark or no peer)."""
    cfg = parse_config(cfg_text, "bench.toml")
    bus = Bus(cfg, "detector", run_dir=Path(run_dir))
    push = bus.pusher("intents")
    time.sleep(0.3)
    coins = list(assets)
    i = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while i < due:
            coin = coins[i % len(coins)]
            push.send(make_intent(i, coin, assets[coin], prefix))
            i += 1
        time.sleep(0.001)
    out.put((i, push.dropped))
    bus.close()


class Side:
    """This process's sockets: md, positions, inbox, exec."""

    def __init__(self, cfg_text: str, run_dir: Path, assets: dict[str, int]) -> None:
        cfg = parse_config(cfg_text, "bench.toml")
        prepare_run_dir(run_dir)
        self.assets = assets
        self.feed = Bus(cfg, "feed", run_dir=run_dir)
        self.md = self.feed.publisher("md")
        self.pt = Bus(cfg, "position_tracker", run_dir=run_dir)
        self.pos = self.pt.publisher("positions")
        self.pos.publish(PositionSnapshot(version=1, synced=True, positions=(), open_orders=(),
                                          realized_pnl_usd=Decimal(0), fees_usd=Decimal(0)), state_key="positions")
        self.sup = Bus(cfg, "supervisor", run_dir=run_dir)
        self.inbox = self.sup.puller("inbox")
        self.obs = Bus(cfg, "recorder", run_dir=run_dir)
        self.exec = self.obs.subscriber(["exec"])
        self.det = Bus(cfg, "detector", run_dir=run_dir)
        self.push = self.det.pusher("intents")
        self.ready = False
        self.stats: dict[str, int] = {}
        self.submitted: list[int] = []  # sent_ns of entry orders
        self.rejected: dict[str, int] = {}  # OrderRejected by reason

    def pump(self) -> None:
        self.md.on_subscription()
        self.pos.on_subscription()
        for m in self.inbox.drain():
            if isinstance(m, Ready) and m.actor == "executor":
                self.ready = m.ready
            elif isinstance(m, Heartbeat) and m.actor == "executor":
                self.stats = dict(m.stats)
        for m in self.exec.drain(100_000):
            if isinstance(m, OrderSubmitted):
                self.submitted.append(m.sent_ns)
            elif isinstance(m, OrderRejected):
                key = m.reason[:40] if m.reason.startswith(("exchange", "send_failed")) else m.reason.split(":")[0]
                self.rejected[key] = self.rejected.get(key, 0) + 1

    def marks(self) -> None:
        now = time.monotonic_ns()
        for c in self.assets:
            self.md.publish(AssetCtx(coin=c, oracle_px=PX, mark_px=PX, mid_px=PX, funding=0.0, open_interest=0.0,
                                     recv_ns=now))
        # The tracker's market terms (fees, open-interest caps), fresh: without them no entry is sent.
        wall_ms = time.time_ns() // 1_000_000
        terms = tuple(MarketTerm(coin=c, taker_fee_bps=9.0, maker_fee_bps=3.0, deployer_fee_scale=1.0,
                                 scale_source="meta", growth_mode=False, fee_source="exchange") for c in self.assets)
        self.pos.publish(MarketTerms(fees_ms=wall_ms, caps_ms=wall_ms, user_cross_rate=0.00045, user_add_rate=0.00015,
                                     referral_discount=0.0, dex_oi_cap_usd=0.0, dex_oi_usd=0.0, markets=terms),
                         state_key="terms")

    def idle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump()
            time.sleep(0.005)

    def close(self) -> None:
        for b in (self.feed, self.pt, self.sup, self.obs, self.det):
            b.close()


def _delta(after: dict[str, int], before: dict[str, int], prefix: str) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items())
            if k.startswith(prefix) and v - before.get(k, 0)}


def _stages(stats: dict[str, int]) -> dict[str, int]:
    return {f"{st}_{q}_us": stats[f"{st}_{q}_us"] for st in STAGES for q in ("p50", "p90")
            if f"{st}_{q}_us" in stats}


def run(extra: str = "", label: str = "", sim_batch: bool = True, rate: int = RATE) -> dict[str, object]:
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
    ex: subprocess.Popen[bytes] | None = None
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
        assets = {u["name"]: 110000 + i for i, u in enumerate(meta["universe"]) if u["name"] in set(_coins())}
        side = Side(cfg_text, run_dir, assets)
        ex = subprocess.Popen([sys.executable, "-m", "actors.executor", "--config", str(tmp / "executor.toml"),
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
        coins = list(assets)
        n0 = len(side.submitted)
        rej0 = dict(side.rejected)
        drop0 = side.push.dropped
        for i in range(LAT_N):
            coin = coins[i % len(coins)]
            side.push.send(make_intent(i, coin, assets[coin], "lat"))
            side.idle(LAT_GAP_S)
        side.idle(1.5)  # the executor publishes its stats every second; heartbeats carry them
        idle_stats = dict(side.stats)
        idle_sent = len(side.submitted) - n0
        idle_acct = {
            "pushed": LAT_N,
            "dropped_at_push": side.push.dropped - drop0,
            "received": idle_stats.get("entry_intents", 0) - stats0.get("entry_intents", 0),
            "verdicts": _delta(idle_stats, stats0, "entry_"),
            "sent": idle_sent,
            "order_rejections": _delta(side.rejected, rej0, ""),
        }

        # Phase 2: load from the pusher process.
        n1 = len(side.submitted)
        rej1 = dict(side.rejected)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(target=pusher, args=(cfg_text, str(run_dir), assets, rate, SECONDS, "ld", out))
        proc.start()
        t_end = time.monotonic() + SECONDS + 10
        while proc.is_alive() and time.monotonic() < t_end:
            side.idle(0.1)
            side.marks()
        pushed, dropped = out.get(timeout=5)
        proc.join(5)
        side.idle(2.5)  # past the last intent's validity (2 s) and the tick that drops it (100 ms)
        load = side.submitted[n1:]
        load_stats = dict(side.stats)
        # Steady-state rate: sent orders between the first and the last send of the load phase.
        span_s = (load[-1] - load[0]) / 1e9 if len(load) > 1 else 0.0
        verdicts = _delta(load_stats, idle_stats, "entry_")
        received = verdicts.pop("entry_intents", 0)
        accepted = verdicts.get("entry_accepted", 0)
        refused = {k.split("_", 1)[1]: v for k, v in verdicts.items()
                   if ":" in k and not k.startswith("entry_accepted")}
        rejections = _delta(side.rejected, rej1, "")
        send_failed = sum(v for k, v in rejections.items() if k.startswith("send_failed"))
        # Accepted, then still queued when the intent's validity ran out (the exchange's message budget
        # of 2000 a minute can run out under this synthetic load): dropped, never sent late.
        expired = sum(v for k, v in rejections.items() if k.startswith("expired"))
        load_acct = {
            "pushed": pushed,
            "dropped_at_push": dropped,
            "received": received,
            "refused_by_gate": refused,
            "accepted": accepted,
            "sent": len(load),
            "send_failed": send_failed,
            "expired_in_queue": expired,
            "unaccounted": pushed - dropped - sum(refused.values()) - len(load) - send_failed - expired,
            "order_rejections": rejections,
        }
        result: dict[str, object] = {
            "label": label or "default",
            "sim_sched": "batch" if sim_batch else "normal",
            "intents_per_s": round(len(load) / span_s) if span_s else 0,
            "added_latency_median_us": idle_stats.get("added_latency_p50_us"),
            "added_latency_p90_us": idle_stats.get("added_latency_p90_us"),
            "added_latency_p99_us": idle_stats.get("added_latency_p99_us"),
            "added_latency_max_us": idle_stats.get("added_latency_max_us"),
            "idle_stages": _stages(idle_stats),
            "idle_accounting": idle_acct,
            "load_offered_per_s": rate,
            "load_accounting": load_acct,
            "load_posts": load_stats.get("posts", 0) - idle_stats.get("posts", 0),
            # the executor's last-4096 window, i.e. the load phase's orders (batched: not the idle path)
            "load_latency_median_us": load_stats.get("added_latency_p50_us"),
            "load_latency_p90_us": load_stats.get("added_latency_p90_us"),
            "markets": N_MARKETS,
        }
        return result
    finally:
        if ex is not None:
            ex.terminate()
            try:
                ex.wait(10)
            except subprocess.TimeoutExpired:
                ex.kill()
        if side is not None:
            side.close()
        sim.terminate()
        sim.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    rate = RATE
    if "--rate" in sys.argv:
        rate = int(sys.argv[sys.argv.index("--rate") + 1])
    sim_batch = "--sim-normal" not in sys.argv
    variants = [("", "default (nonce pool, fsync 5 ms after the frame)")]
    if "--fsync-before" in sys.argv:
        variants.append(("journal_fsync_before_send = true", "fsync before the frame"))
    if "--no-sign-pool" in sys.argv:  # the same run's baseline for the nonce pool: RFC 6979 every order
        variants.append(("sign_nonce_pool = 0", "no nonce pool (RFC 6979)"))
    results = []
    for extra, label in variants:
        r = run(extra, label, sim_batch=sim_batch, rate=rate)
        results.append(r)
        print(json.dumps(r))
    print(json.dumps(results[0]))


if __name__ == "__main__":
    main()

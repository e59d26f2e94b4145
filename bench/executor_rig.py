"""The rig around the executor for ``bench.executor``: the simulator's and the executor's configs, and
this process standing in for the other actors.

* the simulator runs as its own process (``python -m hip3.sim``) with ``N_MARKETS`` synthetic markets
  (the executor's gates allow one pending entry per market, so concurrency needs markets) and a slow
  model; its address request budget is set far beyond the run (a real account earns it by trading;
  this one never fills);
* the executor actor runs as its own process (``python -m actors.executor``), paper mode, the key in
  its environment; caps raised for the bench (``[executor]`` below): notional caps, max positions and
  the per-second action budget;
* ``Side`` plays the other actors: a positions publisher (one synced, empty snapshot, and the account's
  request budget as the position tracker would read it), an md publisher (marks), the supervisor's
  inbox (READY and the executor's stats), an ``exec`` subscriber, and the exit watcher's flatten
  intents (probes);
* ``pusher`` is the process run per load step (PUSH on ``intents``) feeding entry intents with fresh
  ids and ``valid_until`` 2 s ahead.

Every entry is an IOC 2 % away from the mark: it passes every gate, is signed and posted, and the
simulator answers with a benign "could not immediately match" rejection (no position ever opens, so the
caps and the risk triggers never engage).
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from hip3.config import parse_config
from hip3.messages import (
    AssetCtx,
    EntryIntent,
    FlattenIntent,
    Heartbeat,
    MarketTerm,
    MarketTerms,
    OrderRejected,
    OrderSubmitted,
    PositionSnapshot,
    Ready,
    RequestBudgetReading,
)
from hip3.runtime.bus import Bus, prepare_run_dir

KEY = "0x" + "5a" * 32
N_MARKETS = 100
N_PROBE_MARKETS = 10  # the last ones: flatten probes only, never an entry
PX = 100.0
BUDGET = 10**12  # requests: far beyond any run (the simulator's initial buffer and the reading's cap)


def market_names() -> list[str]:
    return [f"xyz:B{i:03d}" for i in range(N_MARKETS)]


def sim_toml() -> str:
    out = f"[sim]\nl2_min_interval_ms = 500\nrequest_budget_initial = {BUDGET}\n" \
          "[sim.model]\ntick_ms = 200\noracle_interval_ms = 1000\nrefresh_ms = 1000\nmaker_lag_ms = 400\n"
    for name in market_names():
        out += f'[[sim.markets]]\nname = "{name}"\nsz_decimals = 2\nstart_px = {PX}\nvol_bps = 0.5\n'
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
    return text + "".join(f'[[markets]]\ncoin = "{c}"\n' for c in market_names())


def make_intent(i: int, coin: str, asset: int, prefix: str) -> EntryIntent:
    now = time.monotonic_ns()
    is_buy = i % 2 == 0
    px = Decimal("98") if is_buy else Decimal("102")  # 2 % away: an IOC miss, inside the oracle band
    return EntryIntent(intent_id=f"{prefix}{i}", coin=coin, asset=asset, is_buy=is_buy, px=px, sz=Decimal("0.2"),
                       reduce_only=False, valid_until_ns=now + 2_000_000_000, origin_recv_ns=now, created_ns=now,
                       edge_bps=10.0, signal_id="bench")


def make_flatten(i: int, coin: str, asset: int, prefix: str) -> FlattenIntent:
    now = time.monotonic_ns()
    return FlattenIntent(intent_id=f"{prefix}{i}", coin=coin, asset=asset, is_buy=True, px=Decimal("101"),
                         sz=Decimal("0.2"), reduce_only=True, valid_until_ns=now + 2_000_000_000,
                         origin_recv_ns=now, created_ns=now, reason="bench_probe")


def pusher(cfg_text: str, run_dir: str, assets: dict[str, int], rate: int, seconds: float, prefix: str,
           out: Any, started: Any) -> None:
    """The pusher process: ``rate`` intents/s in 1 ms slices, round-robin over the markets. Sets
    ``started`` when the first intent goes; puts ``(pushed, dropped, elapsed_s)`` on ``out`` (a drop: the
    PUSH socket refused, high-water mark or no peer)."""
    cfg = parse_config(cfg_text, "bench.toml")
    bus = Bus(cfg, "detector", run_dir=Path(run_dir))
    push = bus.pusher("intents")
    time.sleep(0.3)
    coins = list(assets)
    i = 0
    started.set()
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while i < due:
            coin = coins[i % len(coins)]
            push.send(make_intent(i, coin, assets[coin], prefix))
            i += 1
        time.sleep(0.001)
    out.put((i, push.dropped, time.monotonic() - start))
    bus.close()


def _prefix(intent_id: str) -> str:
    return intent_id.split("_", 1)[0] + "_" if "_" in intent_id else ""


class Side:
    """This process's sockets: md, positions, inbox, exec, and a pusher for the flatten probes."""

    def __init__(self, cfg_text: str, run_dir: Path, assets: dict[str, int]) -> None:
        cfg = parse_config(cfg_text, "bench.toml")
        prepare_run_dir(run_dir)
        self.assets = assets
        self.feed_bus = Bus(cfg, "feed", run_dir=run_dir)
        self.md = self.feed_bus.publisher("md")
        self.tracker_bus = Bus(cfg, "position_tracker", run_dir=run_dir)
        self.pos = self.tracker_bus.publisher("positions")
        self.pos.publish(PositionSnapshot(version=1, synced=True, positions=(), open_orders=(),
                                          realized_pnl_usd=Decimal(0), fees_usd=Decimal(0)), state_key="positions")
        self.pos.publish(RequestBudgetReading(cum_vlm_usd=Decimal(0), n_requests_used=0, n_requests_cap=BUDGET,
                                              n_requests_surplus=0, requested_ms=int(time.time() * 1000)),
                         state_key="request_budget")
        self.supervisor_bus = Bus(cfg, "supervisor", run_dir=run_dir)
        self.inbox = self.supervisor_bus.puller("inbox")
        self.recorder_bus = Bus(cfg, "recorder", run_dir=run_dir)
        self.exec = self.recorder_bus.subscriber(["exec"])
        self.detector_bus = Bus(cfg, "detector", run_dir=run_dir)
        self.push = self.detector_bus.pusher("intents")
        self.exit_watcher_bus = Bus(cfg, "exit_watcher", run_dir=run_dir)
        self.probe_push = self.exit_watcher_bus.pusher("intents")
        self.ready = False
        self.stats: dict[str, int] = {}
        self.submitted: list[int] = []  # sent_ns of entry orders
        self.sent_by_prefix: Counter[str] = Counter()
        self.sent_ids: set[str] = set()
        self.flatten_added_us: dict[str, list[float]] = {}
        self.rejected: dict[str, int] = {}  # OrderRejected by reason
        self.unsent: dict[str, Counter[str]] = {}  # prefix -> reason -> accepted entries dropped unsent

    def pump(self) -> None:
        self.md.on_subscription()
        self.pos.on_subscription()
        for msg in self.inbox.drain():
            if isinstance(msg, Ready) and msg.actor == "executor":
                self.ready = msg.ready
            elif isinstance(msg, Heartbeat) and msg.actor == "executor":
                self.stats = dict(msg.stats)
        for msg in self.exec.drain(100_000):
            if isinstance(msg, OrderSubmitted):
                prefix = _prefix(msg.intent_id)
                if msg.kind == "entry":
                    self.submitted.append(msg.sent_ns)
                    self.sent_by_prefix[prefix] += 1
                    self.sent_ids.add(msg.intent_id)
                elif msg.intent_recv_ns:
                    self.flatten_added_us.setdefault(prefix, []).append((msg.sent_ns - msg.intent_recv_ns) / 1000)
            elif isinstance(msg, OrderRejected):
                exchange_text = msg.reason.startswith(("exchange", "send_failed"))
                key = msg.reason[:40] if exchange_text else msg.reason.split(":")[0]
                self.rejected[key] = self.rejected.get(key, 0) + 1
                if not msg.reduce_only and msg.intent_id not in self.sent_ids:
                    self.unsent.setdefault(_prefix(msg.intent_id), Counter())[key] += 1

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
        for bus in (self.feed_bus, self.tracker_bus, self.supervisor_bus, self.recorder_bus, self.detector_bus,
                    self.exit_watcher_bus):
            bus.close()

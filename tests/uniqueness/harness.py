"""Drive the real executor process (``python -m actors.executor``, ipc bus) against the simulator process
with a stream of entry intents, kill -9 and restart it along the way, then check the simulator's order log:
every cloid and every nonce distinct, nonces strictly increasing for the signer, no intent sent twice.

The intents are IOC buys well below the book (they never fill: the executor's gates see no position, and
each order ends at once with the benign "could not immediately match"), one in flight per market across the
simulator's 25 markets, so the executor batches them. After every restart a sample of intents the killed
executor had already sent is delivered again: the sent-intent journal must refuse them."""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from eth_account import Account

from hip3.config import REPO_ROOT, Config, parse_config
from hip3.hyperliquid.wire import floor_size, round_price
from hip3.messages import (
    AssetCtx,
    EntryIntent,
    FeedState,
    Heartbeat,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    PositionSnapshot,
    Ready,
)
from hip3.runtime.bus import Bus, prepare_run_dir
from tests.actors.helpers import budget_reading
from tests.conftest import stop_process
from tests.security.helpers import SimProcess
from tests.terms_helpers import terms_msg

D = Decimal
# The address request budget far beyond the 10,000 orders this harness sends (none fills: no volume
# earns the account more); the budget itself is tested in tests/actors/test_admission.py.
QUIET_SIM = "[sim]\nrequest_budget_initial = 10000000\n[sim.model]\njump_prob = 0.0\noracle_interval_ms = 1000\n"


def _config(run_dir: Path, sim: SimProcess, account: str, markets: list[str]) -> tuple[Config, Path]:
    text = (f'run_dir = "{run_dir}"\nmode = "paper"\n[exchange]\nnetwork = "sim"\nrest_url = "{sim.url}"\n'
            f'account_address = "{account}"\n[bus]\ntransport = "ipc"\n[logging]\nstderr = false\nlevel = "warning"\n'
            "[supervisor]\nheartbeat_interval_ms = 100\n"
            "[executor]\nmax_notional_per_market_usd = 1000000.0\nmax_total_notional_usd = 10000000.0\n"
            "max_concurrent_positions = 100\naction_budget_orders = 100000\nbatch_interval_ms = 20\n"
            "new_queue_capacity = 5000\ninflight_limit = 10\npost_timeout_ms = 3000\nexpires_after_ms = 3000\n"
            + "".join(f'[[markets]]\ncoin = "{m}"\n' for m in markets))
    path = run_dir.parent / f"{run_dir.name}-executor.toml"
    path.write_text(text)
    return parse_config(text, str(path)), path


@dataclass
class Figures:
    orders_in_log: int = 0
    distinct_cloids: int = 0
    actions_signed: int = 0
    distinct_nonces: int = 0
    nonce_order_violations: int = 0
    intents_pushed: int = 0
    redeliveries: int = 0
    duplicates_refused: int = 0
    submitted_twice: int = 0
    intents_sent_twice: int = 0
    restarts: int = 0
    nonce_rejections: int = 0
    submitted_missing_from_log: int = 0
    orders_without_journal_line: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    intents_at_exchange: list[str] = field(default_factory=list)


class Harness:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.key = "0x" + secrets.token_hex(32)
        self.account = Account.from_key(self.key).address.lower()
        (base / "sim.toml").write_text(QUIET_SIM)
        self.sim = SimProcess(base / "sim", self.account, base / "sim.toml")
        state = self.sim.control(cmd="state")["markets"]
        self.markets = sorted(state)
        self.spec = {c: (int(m["asset"]), int(m["szDecimals"]), D(m["markPx"])) for c, m in state.items()}
        self.run_dir = base / "run"
        self.cfg, self.cfg_path = _config(self.run_dir, self.sim, self.account, self.markets)
        prepare_run_dir(self.run_dir)
        self.sup = Bus(self.cfg, "supervisor", run_dir=self.run_dir)
        self.inbox = self.sup.puller("inbox")
        self.feed = Bus(self.cfg, "feed", run_dir=self.run_dir)
        self.md = self.feed.publisher("md")
        self.user = self.feed.publisher("user")
        self.pt = Bus(self.cfg, "position_tracker", run_dir=self.run_dir)
        self.positions = self.pt.publisher("positions")
        self.positions.publish(PositionSnapshot(version=1, synced=True, positions=(), open_orders=(),
                                                realized_pnl_usd=D(0), fees_usd=D(0)), state_key="positions")
        self.positions.publish(budget_reading(), state_key="request_budget")
        st = FeedState(state="connected", conn_id=1, market_data_ready=True, user_ready=True, since_ns=1)
        self.md.publish(st, state_key="feed")
        self.user.publish(st, state_key="feed")
        self.det = Bus(self.cfg, "detector", run_dir=self.run_dir)
        self.intents = self.det.pusher("intents")
        self.cap_bus = Bus(self.cfg, "test", run_dir=self.run_dir)
        self.exec = self.cap_bus.subscriber(["exec"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.stats: dict[str, int] = {}  # the running executor's counters (its latest heartbeat)
        self._marks_at = 0.0
        self._ids = itertools.count(1)
        self.submitted: dict[str, str] = {}  # cloid -> intent id (as the executor reported it)
        self.rejected_reasons: list[str] = []
        self.stderr_path = base / "executor.stderr"

    # ---- the bus side ----

    def pump(self) -> None:
        for pub in (self.md, self.user, self.positions):
            pub.on_subscription()
        now = time.monotonic()
        if now - self._marks_at > 0.5:
            self._marks_at = now
            # The tracker's market terms, fresh (the executor refuses entries on unknown or old ones).
            self.positions.publish(terms_msg(self.markets, 9.0, fees_ms=time.time_ns() // 1_000_000),
                                   state_key="terms")
            for coin, (_, _, mark) in self.spec.items():
                self.md.publish(AssetCtx(coin=coin, oracle_px=float(mark), mark_px=float(mark), mid_px=float(mark),
                                         funding=0.0, open_interest=0.0, recv_ns=time.monotonic_ns()))
        for m in self.inbox.drain():
            if isinstance(m, Ready) and m.actor == "executor" and self.proc is not None and m.pid == self.proc.pid:
                self.ready = m.ready
            elif isinstance(m, Heartbeat) and m.actor == "executor" and self.proc is not None \
                    and m.pid == self.proc.pid:
                self.ready = m.ready
                self.stats = dict(m.stats)

    def drain_exec(self) -> list[Any]:
        out = list(self.exec.drain())
        for ev in out:
            if isinstance(ev, OrderSubmitted):
                self.submitted[ev.cloid] = ev.intent_id
            elif isinstance(ev, OrderRejected):
                self.rejected_reasons.append(ev.reason)
        return out

    def intent(self, coin: str) -> EntryIntent:
        asset, szd, mark = self.spec[coin]
        px = round_price(mark * D("0.97"), szd, False)  # 3 % under the book: never fills
        sz = floor_size(D(25) / px, szd)
        now = time.monotonic_ns()
        return EntryIntent(intent_id=f"u{next(self._ids)}-{secrets.token_hex(3)}", coin=coin, asset=asset,
                           is_buy=True, px=px, sz=sz, reduce_only=False, valid_until_ns=now + 3_000_000_000,
                           origin_recv_ns=now, created_ns=now, edge_bps=10.0, signal_id="u")

    # ---- the executor process ----

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIP3_")}
        env.update(HIP3_PRIVATE_KEY=self.key, PYTHONPATH=str(REPO_ROOT))
        self.ready = False
        self.stats = {}
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "actors.executor", "--config", str(self.cfg_path), "--run-dir",
                 str(self.run_dir)], env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        while not self.ready:
            assert time.monotonic() < deadline, self.stderr_path.read_text()[-2000:]
            assert self.proc.poll() is None, self.stderr_path.read_text()[-2000:]
            self.pump()
            time.sleep(0.01)
        time.sleep(0.1)  # our PUSH reconnects to the new PULL

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 15)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            for b in (self.sup, self.feed, self.pt, self.det, self.cap_bus):
                b.close()
            self.sim.stop()

    # ---- the run ----

    def signed(self) -> list[dict[str, Any]]:
        return [e for e in self.sim.orders() if e.get("signer") == self.account]

    def run(self, n_orders: int, restarts: int, timeout_s: float) -> Figures:
        fig = Figures()
        t0 = time.monotonic()
        kill_at = [n_orders * (i + 1) // (restarts + 1) for i in range(restarts)]
        outstanding: dict[str, float] = {}  # coin -> when its intent was pushed
        by_intent: dict[str, str] = {}  # intent id -> coin
        sent_intents: list[EntryIntent] = []
        self.start()
        n_submitted = 0
        while n_submitted < n_orders:
            assert time.monotonic() - t0 < timeout_s, (n_submitted, fig)
            self.pump()
            for ev in self.drain_exec():
                if isinstance(ev, OrderSubmitted):
                    n_submitted += 1
                iid = getattr(ev, "intent_id", "")
                if isinstance(ev, OrderFilled | OrderRejected) and iid in by_intent:
                    outstanding.pop(by_intent.pop(iid), None)
                elif isinstance(ev, OrderRejected | OrderFilled):
                    iid = self.submitted.get(ev.cloid, "")
                    if iid in by_intent:
                        outstanding.pop(by_intent.pop(iid), None)
            if kill_at and n_submitted >= kill_at[0]:
                kill_at.pop(0)
                self.kill()
                fig.restarts += 1
                outstanding.clear()
                by_intent.clear()
                self.start()
                # Redeliver intents that the killed executor had sent (its journal says so): every one must be
                # refused as a duplicate by the new process.
                journaled = {line.split()[1] for line in (self.run_dir / "sent_intents.log").read_text().splitlines()}
                done = [i for i in sent_intents if i.intent_id in journaled]
                sample = random.Random(fig.restarts).sample(done, min(50, len(done)))
                for i in sample:
                    deadline = time.monotonic() + 5
                    while True:  # IMMEDIATE: dropped until our PUSH has connected to the new PULL
                        now = time.monotonic_ns()
                        if self.intents.send(msgspec.structs.replace(i, valid_until_ns=now + 3_000_000_000,
                                                                     created_ns=now)):
                            break
                        assert time.monotonic() < deadline, "cannot reach the restarted executor"
                        time.sleep(0.01)
                fig.redeliveries += len(sample)
                deadline = time.monotonic() + 10
                while self.stats.get("entry_rejected:DuplicateIntent", 0) < len(sample):
                    assert time.monotonic() < deadline, (self.stats, len(sample))
                    self.pump()
                    time.sleep(0.01)
                fig.duplicates_refused += self.stats.get("entry_rejected:DuplicateIntent", 0)
                continue
            now_s = time.monotonic()
            for coin in self.markets:
                t = outstanding.get(coin)
                if t is not None and now_s - t < 2.0:
                    continue
                it = self.intent(coin)
                if self.intents.send(it):
                    outstanding[coin] = now_s
                    by_intent[it.intent_id] = coin
                    sent_intents.append(it)
                    fig.intents_pushed += 1
            time.sleep(0.001)
        self.stop()
        self.pump()
        self.drain_exec()
        fig.seconds = round(time.monotonic() - t0, 1)
        return self._check(fig, {i.intent_id for i in sent_intents})

    def _check(self, fig: Figures, pushed: set[str]) -> Figures:
        journal_lines = (self.run_dir / "sent_intents.log").read_text().splitlines()
        check_log(fig, self.signed(), journal_lines, self.submitted, self.rejected_reasons)
        assert set(fig.intents_at_exchange) <= pushed
        return fig


def check_log(fig: Figures, log: list[dict[str, Any]], journal_lines: list[str], submitted: dict[str, str],
              rejected_reasons: list[str]) -> Figures:
    """Fill ``fig`` from the simulator's order log records of one signer (in arrival order), the executor's
    sent-intent journal, and what the executors reported (cloid -> intent id, rejection reasons)."""
    fig.actions_signed = len(log)
    kinds: dict[str, int] = {}
    for e in log:
        kinds[e["action_type"]] = kinds.get(e["action_type"], 0) + 1
    fig.kinds = kinds
    nonces = [e["nonce"] for e in log]
    fig.distinct_nonces = len(set(nonces))
    fig.nonce_order_violations = sum(1 for a, b in itertools.pairwise(nonces) if b <= a)
    cloids = [c for e in log for c in e["cloids"]]
    fig.orders_in_log = len(cloids)
    fig.distinct_cloids = len(set(cloids))
    journal: dict[str, str] = {}
    for line in journal_lines:
        _, intent_id, cloid = line.split()
        journal[cloid] = intent_id
    fig.intents_at_exchange = [journal.get(c, "?") for c in cloids]
    fig.orders_without_journal_line = fig.intents_at_exchange.count("?")
    known = [i for i in fig.intents_at_exchange if i != "?"]
    fig.intents_sent_twice = len(known) - len(set(known))
    fig.nonce_rejections = sum(1 for r in rejected_reasons if "nonce" in r.lower())
    fig.submitted_missing_from_log = len(set(submitted) - set(cloids))
    fig.submitted_twice = len(submitted) - len(set(submitted.values()))
    return fig


def figures_json(fig: Figures) -> str:
    return json.dumps({k: v for k, v in fig.__dict__.items() if k != "intents_at_exchange"}, sort_keys=True)

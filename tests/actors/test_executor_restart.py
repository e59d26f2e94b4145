"""The executor as a real process (``python -m actors.executor``, ipc bus) against the simulator: killed
with SIGKILL while its posts are in flight, restarted, fed the same intents again: no intent reaches the
exchange twice (the sent-intent journal), and nonces stay unique across the restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from hip3.config import Config, parse_config
from hip3.messages import EntryIntent, Heartbeat, OrderSubmitted, PositionSnapshot, Ready
from hip3.runtime.bus import Bus, prepare_run_dir
from hip3.sim.app import SimServer
from tests.actors.helpers import (
    Capture,
    FakeFeed,
    account_of,
    budget_reading,
    entry,
    order_log,
    passive_px,
    wait,
)
from tests.conftest import stop_process
from tests.terms_helpers import terms_msg

ROOT = Path(__file__).resolve().parents[2]
MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA", "xyz:NVDA", "xyz:AAPL", "xyz:MSFT", "xyz:GOOGL", "xyz:AMZN")


def _config(run_dir: Path, sim: SimServer, account: str) -> tuple[Config, Path]:
    text = f"""run_dir = "{run_dir}"
mode = "paper"
[exchange]
network = "sim"
rest_url = "{sim.url}"
account_address = "{account}"
[bus]
transport = "ipc"
[logging]
stderr = false
[supervisor]
heartbeat_interval_ms = 100
[executor]
post_timeout_ms = 3000
expires_after_ms = 3000
max_total_notional_usd = 1000.0
""" + "".join(f'[[markets]]\ncoin = "{m}"\n' for m in MARKETS)
    path = run_dir / "executor.toml"
    path.write_text(text)
    return parse_config(text, str(path)), path


class Harness:
    def __init__(self, cfg: Config, cfg_path: Path, run_dir: Path, key: str, sim: SimServer) -> None:
        self.cfg, self.cfg_path, self.run_dir, self.key, self.sim = cfg, cfg_path, run_dir, key, sim
        prepare_run_dir(run_dir)
        self.feed = FakeFeed(cfg, sim)
        self.sup = Bus(cfg, "supervisor", run_dir=run_dir)
        self.inbox = self.sup.puller("inbox")
        self.pt = Bus(cfg, "position_tracker", run_dir=run_dir)
        self.positions = self.pt.publisher("positions")
        self.positions.publish(PositionSnapshot(version=1, synced=True, positions=(), open_orders=(),
                                                realized_pnl_usd=Decimal(0), fees_usd=Decimal(0)),
                               state_key="positions")
        self.positions.publish(budget_reading(), state_key="request_budget")
        self.cap = Capture(cfg, ["exec"])
        self.det = Bus(cfg, "detector", run_dir=run_dir)
        self.intents = self.det.pusher("intents")
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_msgs: list[Ready] = []
        self.stats_by_pid: dict[int, dict[str, int]] = {}  # the executor's latest heartbeat stats
        self._terms_ms = 0

    def tick(self) -> None:
        self.feed.pump()
        self.positions.on_subscription()
        now_ms = time.time_ns() // 1_000_000
        if now_ms - self._terms_ms > 1000:  # the tracker's market terms, kept fresh
            self._terms_ms = now_ms
            self.positions.publish(terms_msg(MARKETS, 9.0, fees_ms=now_ms), state_key="terms")
        for m in self.inbox.drain():
            if isinstance(m, Ready) and m.actor == "executor":
                self.ready_msgs.append(m)
            elif isinstance(m, Heartbeat) and m.actor == "executor":
                self.stats_by_pid[m.pid] = dict(m.stats)

    def stats(self) -> dict[str, int]:
        """The running executor's counters (from its heartbeats)."""
        assert self.proc is not None
        return self.stats_by_pid.get(self.proc.pid, {})

    def start(self) -> None:
        env = {**os.environ, "HIP3_PRIVATE_KEY": self.key, "PYTHONPATH": str(ROOT)}
        self.ready_msgs.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "actors.executor", "--config", str(self.cfg_path), "--run-dir", str(self.run_dir)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ok = wait(lambda: any(r.ready for r in self.ready_msgs), 30, self.tick)
        died = self.proc.poll() is not None and self.proc.stderr is not None
        assert ok, self.proc.stderr.read().decode() if died and self.proc.stderr else "not ready"
        self.feed.pump(force=True)
        time.sleep(0.2)  # the PUSH connects once the executor's PULL is bound

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
        for b in (self.feed, self.cap):
            b.close()
        for bus in (self.sup, self.pt, self.det):
            bus.close()


@pytest.fixture
def harness(run_dir: Path, sim_server: SimServer, paper_key: str) -> Iterator[Harness]:
    cfg, path = _config(run_dir, sim_server, account_of(paper_key))
    h = Harness(cfg, path, run_dir, paper_key, sim_server)
    try:
        yield h
    finally:
        h.stop()


def _fresh(i: EntryIntent) -> EntryIntent:
    now = time.monotonic_ns()
    return msgspec.structs.replace(i, valid_until_ns=now + 5_000_000_000, created_ns=now, origin_recv_ns=now)


def test_killed_executor_sends_no_intent_twice_after_restart(harness: Harness, run_dir: Path) -> None:
    h = harness
    h.start()
    h.sim.set_faults(post_delay_ms=400)  # the kill lands while posts are in flight
    intents = [entry(h.sim, c, is_buy=True, px=passive_px(h.sim, c, True)) for c in MARKETS]
    for i in intents[:4]:  # the other half is never delivered to the first executor
        assert h.intents.send(_fresh(i))
    assert wait(lambda: len(h.cap.of(OrderSubmitted)) >= 4, 5, h.tick)
    h.kill()
    first_run = {m.intent_id for m in h.cap.of(OrderSubmitted)}
    assert first_run
    not_sent_before = {i.intent_id for i in intents} - first_run
    assert not_sent_before
    h.sim.set_faults(post_delay_ms=0)

    h.start()
    n_before = len(h.cap.of(OrderSubmitted))
    for _ in range(2):
        for i in intents:
            assert h.intents.send(_fresh(i))
        time.sleep(0.3)

    def second_run() -> list[str]:
        return [m.intent_id for m in h.cap.of(OrderSubmitted)[n_before:]]

    # The restarted executor DID send what it had not sent before the kill, and refused the rest through
    # its journal: if it refused everything for another reason (not ready, no marks, a cap), this fails.
    assert wait(lambda: not_sent_before <= set(second_run()), 10, h.tick), (second_run(), h.stats())
    assert wait(lambda: h.stats().get("entry_rejected:DuplicateIntent", 0) > 0, 5, h.tick), h.stats()
    time.sleep(0.3)  # anything still in flight that should not be there would show up now
    h.tick()
    assert not set(second_run()) & first_run, "an intent sent before the kill was sent again"
    assert len(second_run()) == len(set(second_run()))

    # At the exchange: each intent at most once (cloid -> intent through the journal), nonces unique.
    journal = {}
    for line in (run_dir / "sent_intents.log").read_text().splitlines():
        _, intent_id, cloid = line.split()
        journal[cloid] = intent_id
    signer = h.cfg.exchange.account_address or ""
    log = [e for e in order_log(run_dir / "orders.jsonl") if e["signer"] == signer.lower()]
    cloids = [c for e in log for c in e["cloids"]]
    assert cloids and len(cloids) == len(set(cloids))
    sent_intents = [journal[c] for c in cloids]
    assert len(sent_intents) == len(set(sent_intents))
    assert set(sent_intents) <= {i.intent_id for i in intents}
    nonces = [e["nonce"] for e in log]
    assert len(nonces) == len(set(nonces)) and nonces == sorted(nonces)

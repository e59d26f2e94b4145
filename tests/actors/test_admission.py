"""The executor and the position tracker (threads, inproc) against a simulator that enforces the exchange's
per-address limits: a dead man's switch the exchange refuses is not re-armed, is reported once and never
reaches the hard stop; the address request budget is read by the tracker, shown in status, and entries
stop before it runs out while a flatten still goes through."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from hip3.execution.deadman import STATE_CODES
from hip3.messages import OrderFilled, OrderSubmitted
from hip3.runtime.bus import Bus
from hip3.runtime.inproc import InprocRun, inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from hip3.sim.params import ModelParams, SimParams
from hip3.ui.status_text import format_status
from tests.actors.helpers import EXTRA, Capture, FakeFeed, entry, flatten, order_log, passive_px, sim_account, wait
from tests.conftest import sim_config

MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA")
FAST = ModelParams(tick_ms=20, oracle_interval_ms=300, refresh_ms=200, maker_lag_ms=400)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, name: str, level: int | None = None) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == name and (level is None or r.levelno == level)]


class Graph:
    def __init__(self, run: InprocRun, feed: FakeFeed, cap: Capture, intents: Any, sim: SimServer, account: str,
                 run_dir: Path) -> None:
        self.run, self.feed, self.cap, self.intents, self.sim = run, feed, cap, intents, sim
        self.account, self.run_dir = account, run_dir

    def wait(self, pred: Any, timeout_s: float = 10.0) -> bool:
        return wait(pred, timeout_s, tick=self.feed.pump)

    def stats(self) -> dict[str, int]:
        return dict(self.run.call(lambda s: dict(s.slots["executor"].stats)))

    def status(self) -> dict[str, Any]:
        return dict(self.run.call(lambda s: s.status()))

    def submitted(self, intent_id: str) -> OrderSubmitted | None:
        return next((m for m in self.cap.of(OrderSubmitted) if m.intent_id == intent_id), None)

    def log(self) -> list[dict[str, Any]]:
        return [e for e in order_log(self.run_dir / "orders.jsonl") if e.get("account") == self.account]


@pytest.fixture
def make_graph(run_dir: Path, paper_key: str) -> Iterator[Any]:
    """``make_graph(sim_params, executor_extra)``: a simulator with these limits and the executor + position
    tracker against it."""
    account = Account.from_key(paper_key).address.lower()
    handler = _Records()
    logger = logging.getLogger("hip3.executor")
    logger.addHandler(handler)
    stack: list[Any] = []

    def make(params: SimParams, extra: str) -> tuple[Graph, _Records]:
        sim = SimServer(params, seed=11, funds={account: Decimal(100_000)}, order_log=str(run_dir / "orders.jsonl"))
        sim.start()
        stack.append(sim.stop)
        cfg = sim_config(run_dir, sim.url, account, MARKETS, EXTRA + extra)
        ctx = inproc_graph(cfg, signing_key=SigningKey(paper_key))
        run = ctx.__enter__()
        stack.append(lambda: ctx.__exit__(None, None, None))
        feed = FakeFeed(cfg, sim, context=run.context)
        feed.feed_state()
        cap = Capture(cfg, ["exec", "positions"], context=run.context)
        tbus = Bus(cfg, "detector", context=run.context, run_dir=cfg.run_path)
        stack.extend([feed.close, cap.close, tbus.close])
        g = Graph(run, feed, cap, tbus.pusher("intents"), sim, account, run_dir)
        assert g.wait(lambda: bool(run.call(lambda s: s.all_ready())), 20), g.status()
        assert g.wait(lambda: g.stats().get("marks_known_n", 0) == len(MARKETS), 10), g.status()
        return g, handler

    try:
        yield make
    finally:
        logger.removeHandler(handler)
        for fn in reversed(stack):
            fn()


def test_refused_dead_mans_switch_is_not_rearmed_reported_once_and_never_a_hard_stop(make_graph: Any) -> None:
    """The exchange refuses ``scheduleCancel`` below $1,000,000 of lifetime volume (its text). Re-arm period
    200 ms: in 2 s today's executor sent it 10 times, each a warning and an address request."""
    g, logs = make_graph(SimParams(model=FAST, schedule_cancel_min_volume_usd=1_000_000.0),
                         "schedule_cancel_rearm_ms = 200\n")
    assert g.wait(lambda: g.stats().get("schedule_cancel_state") == STATE_CODES["refused_volume"], 10), g.stats()
    time.sleep(2.0)  # ten re-arm periods
    tries = [e for e in g.log() if e["action_type"] == "scheduleCancel"]
    assert len(tries) == 1 and tries[0]["status"] == "err", tries
    stats = g.stats()
    assert stats["schedule_cancel_state"] == STATE_CODES["refused_volume"]
    assert stats["schedule_cancel_required_usd"] == 1_000_000 and stats["schedule_cancel_armed_until_s"] == 0
    warned = logs.events("schedule_cancel_refused", logging.WARNING)
    assert len(warned) == 1, [r.getMessage() for r in logs.records if r.levelno >= logging.WARNING]
    st = g.status()
    assert not st["hard_stop"]["latched"]
    assert "dead man's switch REFUSED by the exchange: lifetime volume below $1,000,000" in format_status(st)
    # Nothing else is affected: an entry goes out and fills.
    intent = entry(g.sim, "xyz:GOLD")
    assert g.intents.send(intent)
    assert g.wait(lambda: any(isinstance(m, OrderFilled) for m in g.cap.of(OrderFilled)), 10)
    assert not g.status()["hard_stop"]["latched"]


def test_entries_stop_before_the_request_budget_runs_out_and_the_flatten_still_goes(make_graph: Any) -> None:
    """The simulator's address budget: 60 requests plus 1 per USDC traded. The executor reads it through the
    tracker (every second here), counts its own actions, stops entries with 20 requests left (its reserve)
    and never gets the exchange's "Too many cumulative requests" refusal however long entries keep coming;
    the position is still flattened. Today's executor sends entries until the exchange refuses them."""
    g, logs = make_graph(SimParams(model=FAST, request_budget_initial=60, schedule_cancel_min_volume_usd=0.0),
                         "request_budget_reserve = 20\nrequest_budget_poll_ms = 1000\n")
    assert g.wait(lambda: g.stats().get("request_budget_known") == 1, 10), g.stats()
    opened = entry(g.sim, "xyz:GOLD")  # fills: a position (and about $15 of volume, 15 more requests)
    assert g.intents.send(opened)
    assert g.wait(lambda: bool(sim_account(g.sim, g.account)["positions"].get("xyz:GOLD")), 10)
    first_shed: float | None = None
    for i in range(400):  # IOC misses, one at a time, until 3 s after the executor first refused one itself
        coin = ("xyz:SILVER", "xyz:TSLA")[i % 2]
        miss = entry(g.sim, coin, px=passive_px(g.sim, coin, True))
        assert g.intents.send(miss)
        if not g.wait(lambda m=miss: g.submitted(m.intent_id) is not None, 0.3):
            first_shed = first_shed or time.monotonic()
        if first_shed is not None and time.monotonic() - first_shed > 3.0:
            break
        time.sleep(0.02)  # its answer (the market is released)
    stats = g.stats()
    assert first_shed is not None and stats.get("entry_shed:RequestBudgetLow", 0) >= 1, stats
    assert [e for e in g.log() if e.get("refused") == "request_budget"] == []  # the exchange never said no
    limits = g.sim.engine.limits
    room = limits.cap(g.sim.engine.accounts[g.account].cum_vlm) - limits.used[g.account]
    assert 20 <= room <= 26, room  # the budget used down to the reserve, not into it
    # Status and metrics show used against cap.
    assert g.wait(lambda: "entries STOPPED" in format_status(g.status()), 3), format_status(g.status())
    stats = g.stats()
    assert f"{stats['request_budget_used']:,} used of {stats['request_budget_cap']:,}" in format_status(g.status())
    assert logs.events("request_budget_low", logging.WARNING)
    # The flatten goes through on the reserve and the position closes.
    pos = Decimal(sim_account(g.sim, g.account)["positions"]["xyz:GOLD"])
    assert g.intents.send(flatten(g.sim, "xyz:GOLD", is_buy=pos < 0, sz=abs(pos)))
    assert g.wait(lambda: not sim_account(g.sim, g.account)["positions"].get("xyz:GOLD"), 10), g.log()[-3:]
    assert [e for e in g.log() if e.get("refused") == "request_budget"] == []
    assert not g.status()["hard_stop"]["latched"]


def test_entries_stop_while_the_tracker_cannot_read_the_budget_and_the_flatten_still_goes(make_graph: Any) -> None:
    """The tracker's ``userRateLimit`` reads fail (every /info answers HTTP 429): after two polls without a
    reading the executor refuses entries at intake (another client of the address may be spending the
    budget), says so once and in ``status``; a flatten still goes; the next reading lets entries through.
    Before, entries went on for as long as the reads failed."""
    g, logs = make_graph(SimParams(model=FAST, schedule_cancel_min_volume_usd=0.0),
                         "request_budget_poll_ms = 1000\nrequest_budget_max_age_polls = 2\n")
    assert g.wait(lambda: g.stats().get("request_budget_known") == 1, 10), g.stats()
    opened = entry(g.sim, "xyz:GOLD")
    assert g.intents.send(opened)
    assert g.wait(lambda: bool(sim_account(g.sim, g.account)["positions"].get("xyz:GOLD")), 10)
    g.sim.set_faults(rate_limit_http=True)
    try:
        assert g.wait(lambda: g.stats().get("request_budget_stale") == 1, 10), g.stats()
        refused = entry(g.sim, "xyz:SILVER")
        assert g.intents.send(refused)
        assert g.wait(lambda: g.stats().get("entry_shed:RequestBudgetStale", 0) >= 1, 5), g.stats()
        assert g.submitted(refused.intent_id) is None
        assert "entries STOPPED: the reading is older than 2 s" in format_status(g.status())
        assert len(logs.events("request_budget_stale", logging.WARNING)) == 1
        pos = Decimal(sim_account(g.sim, g.account)["positions"]["xyz:GOLD"])
        assert g.intents.send(flatten(g.sim, "xyz:GOLD", is_buy=pos < 0, sz=abs(pos)))
        assert g.wait(lambda: not sim_account(g.sim, g.account)["positions"].get("xyz:GOLD"), 10), g.log()[-3:]
    finally:
        g.sim.set_faults(rate_limit_http=False)
    assert g.wait(lambda: g.stats().get("request_budget_stale") == 0, 10), g.stats()
    again = entry(g.sim, "xyz:TSLA")
    assert g.intents.send(again)
    assert g.wait(lambda: g.submitted(again.intent_id) is not None, 10), g.stats()
    assert logs.events("request_budget_ok")
    assert not g.status()["hard_stop"]["latched"]

"""Positions hip3 did not open, against the simulator: the executor and the position tracker as threads
under the real supervisor core, a test-side feed for the marks, and an approved agent of the same account
placing orders directly at the simulator (an operator's manual orders: no hip3 client order id).

* A position on a market hip3 does not trade must not stop every entry ("no mark for position ...", every
  actor READY) nor keep the hard stop from ever reporting "done" (no spec to price its flatten).
* In "leave" mode (the default) hip3 leaves the operator's positions and orders alone: its entries in that
  market are refused, its hard stop flattens hip3's own part only, and the status shows the rest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hip3.messages import HardStopProgress, OrderFilled, OrderRejected, OrderSubmitted, PositionSnapshot
from hip3.runtime.bus import Bus
from hip3.runtime.inproc import InprocRun, inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from tests.actors.helpers import (
    EXTRA,
    Agent,
    Capture,
    FakeFeed,
    account_of,
    crossing_px,
    entry,
    flatten,
    market,
    passive_px,
    sim_account,
    size_for,
    wait,
)
from tests.conftest import sim_config

MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA", "xyz:NVDA")
UNCONFIGURED = "xyz:HOOD"
D = Decimal


def with_policy(policy: str | None) -> str:
    """The actor tests' config; no ``manual_positions`` key at all for the default."""
    if policy is None:
        return EXTRA
    return EXTRA.replace("[positions]\n", f'[positions]\nmanual_positions = "{policy}"\n', 1)


class G:
    def __init__(self, run: InprocRun, feed: FakeFeed, cap: Capture, intents: Any, sim: SimServer, account: str,
                 agent: Agent, run_dir: Path) -> None:
        self.run, self.feed, self.cap, self.intents, self.sim = run, feed, cap, intents, sim
        self.account, self.agent, self.run_dir = account, agent, run_dir

    def wait(self, pred: Any, timeout_s: float = 10.0) -> bool:
        return wait(pred, timeout_s, tick=self.feed.pump)

    def snapshot(self) -> PositionSnapshot:
        snaps = self.cap.of(PositionSnapshot)
        assert snaps, "no snapshot"
        return snaps[-1]  # type: ignore[no-any-return]

    def manual_ioc(self, coin: str, is_buy: bool, usd: float) -> Decimal:
        """An operator's IOC (no cloid) that fills; returns its size."""
        sz = size_for(self.sim, coin, usd)
        r = self.agent.place([(int(market(self.sim, coin)["asset"]), is_buy, crossing_px(self.sim, coin, is_buy),
                               sz, "Ioc")])
        assert r.ok and r.statuses[0].kind == "filled", r
        return sz

    def manual_gtc(self, coin: str, is_buy: bool) -> None:
        r = self.agent.place([(int(market(self.sim, coin)["asset"]), is_buy, passive_px(self.sim, coin, is_buy, 150),
                               size_for(self.sim, coin, 20), "Gtc")])
        assert r.ok and r.statuses[0].kind == "resting", r

    def enter(self, coin: str, is_buy: bool = True) -> tuple[str, Decimal]:
        """hip3's own entry (through the executor); returns (outcome, filled size)."""
        intent = entry(self.sim, coin, is_buy=is_buy, usd=30.0)
        assert self.intents.send(intent)
        out: list[Any] = []

        def done() -> bool:
            sub = next((m for m in self.cap.of(OrderSubmitted) if m.intent_id == intent.intent_id), None)
            rej = [m for m in self.cap.of(OrderRejected) if m.intent_id == intent.intent_id]
            if rej:
                out.append(("rejected", D(0)))
                return True
            if sub is None:
                return False
            fill = next((m for m in self.cap.of(OrderFilled) if m.cloid == sub.cloid), None)
            if fill is not None:
                out.append(("filled", fill.total_sz))
            return fill is not None

        if not self.wait(done, 5):
            return "no order", D(0)
        return out[0]  # type: ignore[no-any-return]

    def tracker_stats(self) -> dict[str, int]:
        """The tracker's counters (its heartbeats): ``outside_positions_seen`` counts the one log line and
        alert of each outside position (the log file of an inproc graph is the first test's)."""
        return dict(self.run.call(lambda s: s.slots["position_tracker"].stats))

    def executor_counts(self) -> dict[str, int]:
        return dict(self.run.call(lambda s: s.slots["executor"].stats))


@pytest.fixture
def g(run_dir: Path, sim_server: SimServer, paper_key: str, request: pytest.FixtureRequest) -> Iterator[G]:
    account = account_of(paper_key)
    cfg = sim_config(run_dir, sim_server.url, account, MARKETS, with_policy(getattr(request, "param", None)))
    agent = Agent(sim_server, account)
    with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
        feed = FakeFeed(cfg, sim_server, context=run.context)
        feed.feed_state()
        cap = Capture(cfg, ["exec", "positions"], context=run.context)
        tbus = Bus(cfg, "detector", context=run.context, run_dir=cfg.run_path)
        graph = G(run, feed, cap, tbus.pusher("intents"), sim_server, account, agent, run_dir)
        try:
            assert graph.wait(lambda: run.call(lambda s: s.all_ready()), 20), run.call(lambda s: s.status())
            assert graph.wait(lambda: run.call(
                lambda s: s.slots["executor"].stats.get("marks_known_n", 0)) == len(MARKETS), 10)
            yield graph
        finally:
            tbus.close()
            cap.close()
            feed.close()


def _owners(snap: PositionSnapshot) -> dict[str, tuple[str, Decimal]]:
    return {p.coin: (p.owner, p.size) for p in snap.outside}


def _held(snap: PositionSnapshot) -> set[str]:
    """Coins of every position the tracker reports, managed or not."""
    return {p.coin for p in snap.positions + getattr(snap, "outside", ())}


def test_a_position_on_an_unconfigured_market_blocks_no_entry_and_is_shown_and_logged_once(g: G) -> None:
    hood = g.manual_ioc(UNCONFIGURED, True, 25)
    assert g.wait(lambda: UNCONFIGURED in _held(g.snapshot()), 10), g.snapshot()
    # Entries in the configured markets still go through (today: "no mark for position xyz:HOOD").
    assert g.enter("xyz:GOLD")[0] == "filled", g.executor_counts()
    assert g.enter("xyz:SILVER", is_buy=False)[0] == "filled", g.executor_counts()
    assert _owners(g.snapshot())[UNCONFIGURED] == ("unconfigured", hood)
    assert all(p.coin != UNCONFIGURED for p in g.snapshot().positions)
    assert g.wait(lambda: {p.coin for p in g.snapshot().positions} == {"xyz:GOLD", "xyz:SILVER"}, 5)
    # The status shows it with what hip3 does with it; the tracker logged it once, not per snapshot.
    st = g.run.call(lambda s: s.status())["trading"]
    assert [(p["coin"], p["owner"]) for p in st["outside_positions"]] == [(UNCONFIGURED, "unconfigured")]
    assert "not configured" in st["outside_positions"][0]["action"]
    time.sleep(1.0)  # several periodic snapshots, resyncs and heartbeats later
    assert g.tracker_stats().get("outside_positions_seen") == 1, g.tracker_stats()
    assert sim_account(g.sim, g.account)["positions"][UNCONFIGURED] == str(hood)


def test_leave_a_manual_position_blocks_entries_in_its_market_only(g: G) -> None:
    gold = g.manual_ioc("xyz:GOLD", True, 25)
    assert g.wait(lambda: _owners(g.snapshot()).get("xyz:GOLD") == ("manual", gold), 10), g.snapshot()
    assert not g.snapshot().positions  # nothing for hip3's exits or hard stop
    assert g.intents.send(entry(g.sim, "xyz:GOLD", usd=30.0))
    assert g.wait(lambda: g.executor_counts().get("entry_skipped:ManualPositionOpen") == 1, 5), g.executor_counts()
    assert g.enter("xyz:TSLA")[0] == "filled"
    st = g.run.call(lambda s: s.status())["trading"]
    assert [(p["coin"], p["owner"]) for p in st["outside_positions"]] == [("xyz:GOLD", "manual")]
    assert "entries in this market blocked" in st["outside_positions"][0]["action"]
    # The operator closes it: entries there are allowed again, and the close is not one of hip3's trades.
    g.agent.place([(int(market(g.sim, "xyz:GOLD")["asset"]), False, crossing_px(g.sim, "xyz:GOLD", False), gold,
                    "Ioc")])
    assert g.wait(lambda: "xyz:GOLD" not in _owners(g.snapshot()), 10)
    assert g.wait(lambda: g.run.call(lambda s: s.status())["trading"]["outside_closes"] == 1, 5)
    assert g.run.call(lambda s: s.status())["trading"]["exits"] == 0
    assert g.enter("xyz:GOLD")[0] == "filled"


def test_an_operator_adding_to_hips_position_keeps_the_two_parts_apart(g: G) -> None:
    outcome, own = g.enter("xyz:TSLA")
    assert outcome == "filled"
    extra = g.manual_ioc("xyz:TSLA", True, 25)

    def split_seen() -> bool:
        s = g.snapshot()
        return [(p.coin, p.owner, p.size) for p in s.positions] == [("xyz:TSLA", "hip3", own)] and \
            _owners(s).get("xyz:TSLA") == ("manual", extra)

    assert g.wait(split_seen, 10), g.snapshot()
    # hip3's exit closes hip3's part only (a reduce-only order of its size): the operator's part stays.
    assert g.intents.send(flatten(g.sim, "xyz:TSLA", is_buy=False, sz=own))
    assert g.wait(lambda: not g.snapshot().positions and _owners(g.snapshot()).get("xyz:TSLA") == ("manual", extra), 10)
    assert D(sim_account(g.sim, g.account)["positions"]["xyz:TSLA"]) == extra
    # The ledger on disk says so too (a restarted tracker starts from it).
    assert (g.run_dir / "ownership.json").exists()


def test_leave_hard_stop_flattens_hips_own_part_and_leaves_the_operators(g: G) -> None:
    """Manual positions (configured and not), manual resting orders, and a position that is part hip3's and
    part the operator's: the hard stop flattens hip3's part, cancels nothing of the operator's, and reports
    done (today it never could: the unconfigured market has no spec to price a flatten with)."""
    hood = g.manual_ioc(UNCONFIGURED, True, 25)
    silver = g.manual_ioc("xyz:SILVER", False, 25)
    g.manual_gtc("xyz:GOLD", True)
    g.manual_gtc("xyz:NVDA", False)
    assert g.enter("xyz:TSLA")[0] == "filled"
    extra = g.manual_ioc("xyz:TSLA", True, 25)
    assert g.wait(lambda: _held(g.snapshot()) == {UNCONFIGURED, "xyz:SILVER", "xyz:TSLA"}
                  and len(g.snapshot().open_orders + getattr(g.snapshot(), "outside_orders", ())) == 2, 10)
    g.feed.pump(force=True)
    g.run.call(lambda s: s.hardstop("test", "test"))
    assert g.wait(lambda: any(p.done for p in g.cap.of(HardStopProgress)), 20), g.cap.of(HardStopProgress)
    first = g.cap.of(HardStopProgress)[0]
    assert first.positions == 1 and first.open_orders == 0  # hip3's TSLA part; no order of hip3's
    acct = sim_account(g.sim, g.account)
    assert acct["positions"] == {UNCONFIGURED: str(hood), "xyz:SILVER": str(-silver), "xyz:TSLA": str(extra)}
    assert acct["open_orders"] == 2
    assert not g.snapshot().positions and not g.snapshot().open_orders


@pytest.mark.parametrize("g", ["adopt"], indirect=True)
def test_adopt_the_operators_position_is_hips_to_manage(g: G) -> None:
    gold = g.manual_ioc("xyz:GOLD", True, 25)
    hood = g.manual_ioc(UNCONFIGURED, True, 25)
    adopted = [("xyz:GOLD", "adopted", gold)]
    assert g.wait(lambda: [(p.coin, p.owner, p.size) for p in g.snapshot().positions] == adopted, 10), g.snapshot()
    assert _owners(g.snapshot()) == {UNCONFIGURED: ("unconfigured", hood)}
    assert g.intents.send(entry(g.sim, "xyz:GOLD", usd=30.0))  # no second position beside the adopted one
    assert g.wait(lambda: g.executor_counts().get("entry_skipped:AlreadyHasPosition") == 1, 5), g.executor_counts()
    # Its close is not one of hip3's trades (its entry was the operator's): no loss limit, no cooldown.
    assert g.intents.send(flatten(g.sim, "xyz:GOLD", is_buy=False, sz=gold))
    assert g.wait(lambda: not g.snapshot().positions, 10)
    assert g.wait(lambda: g.run.call(lambda s: s.status())["trading"]["outside_closes"] == 1, 5)
    assert sim_account(g.sim, g.account)["positions"] == {UNCONFIGURED: str(hood)}

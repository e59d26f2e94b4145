"""Market terms through the real actors (position tracker + executor as threads, inproc) against the
simulator: the tracker reads fees and open-interest caps from the exchange and keeps them fresh; the
executor refuses an entry into a market at its cap before signing (nothing reaches the exchange), lets an
exit out at the cap priced no more aggressively than the oracle (the exchange refuses it otherwise), and
stops entries when the terms can no longer be read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eth_account import Account

from hip3.hyperliquid.rest import RestClient
from hip3.hyperliquid.wire import round_price
from hip3.messages import (
    MarketTerms,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    PositionClosed,
    PositionSnapshot,
    UserFill,
)
from hip3.runtime.bus import Bus
from hip3.runtime.inproc import InprocRun, inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from hip3.sim.params import DEFAULT_MARKETS, ModelParams, SimParams
from tests.actors.helpers import EXTRA, Capture, FakeFeed, account_of, entry, flatten, market, order_log, wait
from tests.conftest import sim_config

pytestmark = pytest.mark.timeout(90)

GOLD, SILVER = "xyz:GOLD", "xyz:SILVER"
TERMS = """
[market_terms]
refresh_interval_s = 5
at_cap_refresh_interval_s = 1
max_age_s = 30
at_cap_max_age_s = 3
cap_refusal_block_ms = 1000
"""


@pytest.fixture
def quiet_sim(paper_key: str, run_dir: Path) -> Iterator[SimServer]:
    """No random oracle moves: the oracle moves only when the test moves it."""
    markets = tuple(msgspec.structs.replace(m, vol_bps=0.0) for m in DEFAULT_MARKETS)
    params = SimParams(markets=markets, model=ModelParams(tick_ms=20, oracle_interval_ms=300, refresh_ms=200,
                                                          maker_lag_ms=400, jump_prob=0.0))
    server = SimServer(params, seed=5, funds={Account.from_key(paper_key).address.lower(): Decimal(100_000)},
                       order_log=str(run_dir / "orders.jsonl"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class G:
    def __init__(self, run: InprocRun, feed: FakeFeed, cap: Capture, intents: Any, sim: SimServer,
                 run_dir: Path) -> None:
        self.run, self.feed, self.cap, self.intents, self.sim, self.run_dir = run, feed, cap, intents, sim, run_dir

    def wait(self, pred: Any, timeout_s: float = 10.0) -> bool:
        return wait(pred, timeout_s, tick=self.feed.pump)

    def pump_for(self, seconds: float) -> None:
        """Let the feed publish the simulator's marks and oracles for a while."""
        self.wait(lambda: False, seconds)

    def terms(self) -> MarketTerms | None:
        t = self.cap.of(MarketTerms)
        return t[-1] if t else None

    def term(self, coin: str) -> Any:
        t = self.terms()
        return None if t is None else next((m for m in t.markets if m.coin == coin), None)

    def executor_stat(self, key: str) -> int:
        return int(self.run.call(lambda s: s.slots["executor"].stats.get(key, 0)))

    def submitted(self, intent_id: str) -> OrderSubmitted | None:
        return next((m for m in self.cap.of(OrderSubmitted) if m.intent_id == intent_id), None)

    def held(self, coin: str) -> Decimal:
        snaps = self.cap.of(PositionSnapshot)
        return next((p.size for p in snaps[-1].positions if p.coin == coin), Decimal(0)) if snaps else Decimal(0)


@pytest.fixture
def g(run_dir: Path, quiet_sim: SimServer, paper_key: str) -> Iterator[G]:
    cfg = sim_config(run_dir, quiet_sim.url, account_of(paper_key), (GOLD, SILVER), EXTRA + TERMS)
    with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
        feed = FakeFeed(cfg, quiet_sim, context=run.context)
        feed.feed_state()
        cap = Capture(cfg, ["exec", "positions"], context=run.context)
        tbus = Bus(cfg, "detector", context=run.context, run_dir=cfg.run_path)
        graph = G(run, feed, cap, tbus.pusher("intents"), quiet_sim, run_dir)
        try:
            assert graph.wait(lambda: bool(run.call(lambda s: s.all_ready())), 20), run.call(lambda s: s.status())
            assert graph.wait(lambda: graph.term(GOLD) is not None, 10)
            assert graph.wait(lambda: graph.executor_stat("marks_known_n") == 2, 10)
            yield graph
        finally:
            tbus.close()
            cap.close()
            feed.close()


def test_the_tracker_reads_the_exchanges_terms_and_keeps_them_fresh(g: G) -> None:
    gold = g.term(GOLD)
    assert gold.taker_fee_bps == pytest.approx(9.0) and gold.scale_source == "meta" and not gold.growth_mode
    assert gold.oi_cap_usd == 50_000_000.0 and not gold.at_oi_cap
    g.sim.set_terms(other_oi_usd={GOLD: 60_000_000.0})  # GOLD reaches its cap
    assert g.wait(lambda: g.term(GOLD).at_oi_cap, 4)  # the 1 s "at cap" read
    assert not g.term(SILVER).at_oi_cap
    g.sim.set_terms(growth_mode=[GOLD])  # the deployer turns growth mode on: a tenth of the fee
    assert g.wait(lambda: g.term(GOLD).taker_fee_bps == pytest.approx(0.9), 8)  # the 5 s full read
    assert g.term(GOLD).growth_mode and g.term(SILVER).taker_fee_bps == pytest.approx(9.0)
    assert g.wait(lambda: g.executor_stat("markets_at_oi_cap") == 1, 3)


def test_capped_entry_refused_before_signing_and_an_exit_at_the_cap_goes_out(g: G) -> None:
    opened = entry(g.sim, GOLD, is_buy=True, usd=20.0)
    assert g.intents.send(opened)
    assert g.wait(lambda: g.held(GOLD) == opened.sz)
    g.sim.set_terms(other_oi_usd={GOLD: 60_000_000.0, SILVER: 60_000_000.0})  # both at their cap
    assert g.wait(lambda: g.term(GOLD).at_oi_cap and g.term(SILVER).at_oi_cap, 4)
    g.pump_for(0.2)  # the executor reads the same state message
    refused = entry(g.sim, SILVER, is_buy=True)
    assert g.intents.send(refused)
    assert g.wait(lambda: g.executor_stat("entry_rejected:OpenInterestCap") >= 1, 5)
    assert g.submitted(refused.intent_id) is None  # never signed, never sent
    orders = [r for r in order_log(g.run_dir / "orders.jsonl") if r.get("action_type") == "order"]
    assert len(orders) == 1  # only the first entry ever reached the exchange
    # The exit: the oracle drops 1 % while the makers stay (their quotes now sit above it). A flatten priced
    # 2 % under the oracle is more aggressive than the oracle: at the cap the exchange refuses that, so
    # the executor sends it at the oracle, and it fills against the (higher) bid.
    oracle = float(market(g.sim, GOLD)["oraclePx"])
    g.sim.set_oracle(GOLD, oracle * 0.99, lag_ms=30_000)
    new_oracle = float(market(g.sim, GOLD)["oraclePx"])
    assert new_oracle < oracle
    g.pump_for(0.3)  # the feed's next AssetCtx carries the new oracle to the executor
    out = flatten(g.sim, GOLD, is_buy=False, sz=opened.sz)
    out = msgspec.structs.replace(out, px=round_price(Decimal(repr(new_oracle * 0.98)), 4, False))
    assert g.intents.send(out)
    assert g.wait(lambda: g.submitted(out.intent_id) is not None, 5)
    sub = g.submitted(out.intent_id)
    assert sub is not None and sub.px >= Decimal(repr(new_oracle)) * Decimal("0.9999") and sub.px > out.px
    cloid = sub.cloid
    assert g.wait(lambda: any(isinstance(m, OrderFilled) and m.cloid == cloid for m in g.cap.of(OrderFilled)), 5), [
        m for m in g.cap.of(OrderRejected) if m.cloid == cloid]
    assert g.wait(lambda: g.held(GOLD) == 0 and bool(g.cap.of(PositionClosed)), 5)
    assert g.run.call(lambda s: not s.latch.state.latched)


def test_entries_stop_when_the_terms_cannot_be_read(g: G) -> None:
    g.sim.set_faults(rate_limit_http=True)  # every /info read answers HTTP 429
    assert g.wait(lambda: (t := g.terms()) is not None and "read failed" in t.error, 6)
    assert g.wait(lambda: g.executor_stat("terms_caps_age_s") > 3, 8)
    refused = entry(g.sim, GOLD, is_buy=True)
    assert g.intents.send(refused)
    assert g.wait(lambda: g.executor_stat("entry_rejected:MarketTermsStale") >= 1, 5)
    assert g.submitted(refused.intent_id) is None
    g.sim.set_faults(rate_limit_http=False)
    assert g.wait(lambda: (t := g.terms()) is not None and t.error == "", 8)
    g.pump_for(0.3)
    again = entry(g.sim, GOLD, is_buy=True)
    assert g.intents.send(again)
    assert g.wait(lambda: g.submitted(again.intent_id) is not None, 5)


def test_a_fill_charged_off_the_model_is_reported(g: G) -> None:
    """The deployer triples GOLD's fee scale between two full reads: the next fill costs 27 bps while the
    model still says 9, and the tracker reports it (WARNING once, a counter in status)."""
    g.sim.set_terms(deployer_fee_scale={GOLD: 3.0})
    opened = entry(g.sim, GOLD, is_buy=True, usd=20.0)
    assert g.intents.send(opened)
    assert g.wait(lambda: g.held(GOLD) == opened.sz)
    # The test's feed forwards the exchange's userFills stream (what the real feed does).
    account = next(iter(g.sim.state()["accounts"]))
    for f in RestClient(g.sim.url).user_fills(account):
        g.feed.user.publish(UserFill(coin=f["coin"], px=Decimal(f["px"]), sz=Decimal(f["sz"]), is_buy=f["side"] == "B",
                                     time_ms=f["time"], oid=f["oid"], tid=f["tid"], cloid=f.get("cloid"),
                                     fee=Decimal(f["fee"]), closed_pnl=Decimal(f["closedPnl"]), crossed=f["crossed"],
                                     is_snapshot=False, recv_ns=time.monotonic_ns()))

    def mismatches() -> int:
        return int(g.run.call(lambda s: s.slots["position_tracker"].stats.get("fee_model_mismatch", 0)))

    assert g.wait(lambda: mismatches() == 1, 5)
    assert g.wait(lambda: g.term(GOLD).taker_fee_bps == pytest.approx(27.0), 8)  # the next full read

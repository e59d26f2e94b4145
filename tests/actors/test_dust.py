"""A remainder below the exchange's $10 minimum order value: position_tracker + executor + exit_watcher as
threads against the simulator.

Under hip3's [UNVERIFIED] reading of the exchange (a reduce-only order that closes the whole position is
exempt) the dust closes. If the exchange refuses it anyway (the simulator's ``enforced`` rule), hip3 says
so once, stops retrying (one refused order, not one per tick) and the hard stop ends "done" with the dust
listed, instead of retrying forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from hip3.messages import HardStopProgress
from hip3.runtime.inproc import inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from hip3.sim.params import ModelParams, SimParams
from tests.actors.helpers import Agent, Capture, FakeFeed, crossing_px, market, order_log, sim_account, wait
from tests.conftest import sim_config

pytestmark = pytest.mark.timeout(120)
COIN = "xyz:GOLD"  # szDecimals 4, about $4000: 0.002 is about $8
EXTRA = """
[supervisor]
actors = ["position_tracker", "executor", "exit_watcher"]
heartbeat_interval_ms = 100
[positions]
# The positions are opened by hand (an Agent order): hip3 manages them only when told to adopt them.
manual_positions = "adopt"
resync_interval_s = 0.5
snapshot_interval_ms = 100
[exits.time_stop]
threshold_ms = 1000
check_interval_ms = 200
"""


def _sim(paper_key: str, run_dir: Path, rule: str) -> SimServer:
    params = SimParams(reduce_only_min_value=rule,  # type: ignore[arg-type]
                       model=ModelParams(tick_ms=20, oracle_interval_ms=300, refresh_ms=200, maker_lag_ms=400))
    sim = SimServer(params, seed=5, funds={Account.from_key(paper_key).address.lower(): Decimal(10_000)},
                    order_log=str(run_dir / "orders.jsonl"))
    sim.start()
    return sim


@pytest.fixture(params=["enforced", "exempt_full_close"])
def dust_sim(request: pytest.FixtureRequest, paper_key: str, run_dir: Path) -> Iterator[tuple[SimServer, str]]:
    sim = _sim(paper_key, run_dir, request.param)
    account = Account.from_key(paper_key).address.lower()
    m = market(sim, COIN)
    agent = Agent(sim, account)
    for is_buy, sz in ((True, "0.0063"), (False, "0.0043")):  # about $25 long, then $17 sold: $8 left
        r = agent.place([(int(m["asset"]), is_buy, crossing_px(sim, COIN, is_buy), Decimal(sz), "Ioc")])
        assert r.ok and r.statuses[0].kind == "filled", r
    assert sim_account(sim, account)["positions"] == {COIN: "0.002"}
    try:
        yield sim, request.param
    finally:
        sim.stop()


def _reduce_only_orders(run_dir: Path, account: str) -> list[dict[str, Any]]:
    return [r for r in order_log(run_dir / "orders.jsonl")
            if r.get("signer") == account and r["action_type"] == "order" and any(r["reduce_only"])]


def test_a_remainder_below_ten_dollars_closes_or_is_left_as_dust_without_a_retry_loop(
    dust_sim: tuple[SimServer, str], paper_key: str, run_dir: Path
) -> None:
    sim, rule = dust_sim
    account = Account.from_key(paper_key).address.lower()
    cfg = sim_config(run_dir, sim.url, account, (COIN, "xyz:SILVER"), EXTRA)
    with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
        feed = FakeFeed(cfg, sim, context=run.context)
        feed.feed_state()
        cap = Capture(cfg, ["exec"], context=run.context)

        def stats(actor: str) -> dict[str, int]:
            return dict(run.call(lambda s: s.slots[actor].stats))

        try:
            assert wait(lambda: run.call(lambda s: s.all_ready()), 20, feed.pump), run.call(lambda s: s.status())
            if rule == "exempt_full_close":
                # The exit watcher's time stop closes the whole remainder: the exchange takes it.
                assert wait(lambda: not sim_account(sim, account)["positions"], 15, feed.pump)
                assert len(_reduce_only_orders(run_dir, account)) == 1
                return
            assert wait(lambda: stats("exit_watcher").get("dust_positions") == 1
                        and stats("executor").get("dust_positions") == 1, 15, feed.pump), \
                (stats("exit_watcher"), stats("executor"))
            wait(lambda: False, 3.0, feed.pump)  # 3 s more: a retry loop would send ~15 more closes
            assert len(_reduce_only_orders(run_dir, account)) == 1, _reduce_only_orders(run_dir, account)
            alerts = [a["text"] for a in run.call(lambda s: s.status())["alerts"]]
            said = [a for a in alerts if "refused to close 0.002 (below its $10 minimum order value" in a]
            assert len(said) == 2, alerts  # once by the exit watcher, once by the executor: no repeats
            assert sim_account(sim, account)["positions"] == {COIN: "0.002"}

            # The hard stop ends in a defined state: done, the dust listed, nothing retried.
            run.call(lambda s: s.hardstop("test: dust", "test"))
            assert wait(lambda: any(p.done for p in cap.of(HardStopProgress)), 10, feed.pump), \
                cap.of(HardStopProgress)
            done = next(p for p in cap.of(HardStopProgress) if p.done)
            assert done.dust == (f"{COIN} 0.002",) and done.positions == 0 and done.alert
            wait(lambda: False, 2.0, feed.pump)
            assert len(_reduce_only_orders(run_dir, account)) == 1
            hs = run.call(lambda s: s.status())["hard_stop"]
            assert hs["flatten"]["done"] and list(hs["flatten"]["dust"]) == [f"{COIN} 0.002"]
        finally:
            cap.close()
            feed.close()

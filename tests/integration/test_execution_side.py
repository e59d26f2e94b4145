"""The hard-stop sequence against the simulator: executor + position_tracker as threads under the real
supervisor core, a test-side feed for the marks. Resting orders and positions in several markets are
placed directly at the simulator (by an approved agent of the account, so the executor knows nothing
about them until the tracker's REST sync). They are not hip3's: with ``manual_positions = "adopt"`` hip3
manages them and the latch must bring both to zero AT THE SIMULATOR; with "leave" (the default) the hard
stop flattens hip3's own position and leaves the operator's positions and orders as they are."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hip3.messages import HardStopProgress, PositionSnapshot
from hip3.runtime.inproc import inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from tests.actors.helpers import (
    EXTRA,
    Agent,
    Capture,
    FakeFeed,
    account_of,
    crossing_px,
    market,
    passive_px,
    sim_account,
    size_for,
    wait,
)
from tests.conftest import sim_config

MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA", "xyz:NVDA")


def with_policy(policy: str) -> str:
    return EXTRA.replace("[positions]\n", f'[positions]\nmanual_positions = "{policy}"\n', 1)


def test_hard_stop_cancels_every_order_and_flattens_every_position_at_the_sim(
    run_dir: Path, sim_server: SimServer, paper_key: str
) -> None:
    account = account_of(paper_key)
    cfg = sim_config(run_dir, sim_server.url, account, MARKETS, with_policy("adopt"))
    agent = Agent(sim_server, account)
    # Positions in three markets (long, short, long), resting GTC orders in four.
    for coin, is_buy in (("xyz:GOLD", True), ("xyz:SILVER", False), ("xyz:TSLA", True)):
        m = market(sim_server, coin)
        r = agent.place([(int(m["asset"]), is_buy, crossing_px(sim_server, coin, is_buy),
                          size_for(sim_server, coin, 40), "Ioc")])
        assert r.ok and r.statuses[0].kind == "filled", r
    for coin in MARKETS:
        m = market(sim_server, coin)
        r = agent.place([(int(m["asset"]), True, passive_px(sim_server, coin, True, 150),
                          size_for(sim_server, coin, 20), "Gtc"),
                         (int(m["asset"]), False, passive_px(sim_server, coin, False, 150),
                          size_for(sim_server, coin, 20), "Gtc")])
        assert r.ok and all(s.kind == "resting" for s in r.statuses), r
    acct = sim_account(sim_server, account)
    assert len(acct["positions"]) == 3 and acct["open_orders"] == 8

    with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
        feed = FakeFeed(cfg, sim_server, context=run.context)
        feed.feed_state()
        cap = Capture(cfg, ["exec", "positions"], context=run.context)
        try:
            assert wait(lambda: run.call(lambda s: s.all_ready()), 20, feed.pump), run.call(lambda s: s.status())

            def tracker_sees_all() -> bool:
                snaps = cap.of(PositionSnapshot)
                return bool(snaps) and len(snaps[-1].positions) == 3 and len(snaps[-1].open_orders) == 8

            assert wait(tracker_sees_all, 10, feed.pump)
            feed.pump(force=True)
            run.call(lambda s: s.hardstop("test", "test"))

            def flat_at_sim() -> bool:
                a = sim_account(sim_server, account)
                return not a["positions"] and a["open_orders"] == 0

            assert wait(flat_at_sim, 20, feed.pump), sim_account(sim_server, account)
            assert wait(lambda: any(p.done for p in cap.of(HardStopProgress)), 15, feed.pump), cap.of(HardStopProgress)
            progress = cap.of(HardStopProgress)
            assert progress[0].positions == 3 and progress[0].open_orders == 8 and not progress[0].done
            done = next(p for p in progress if p.done)
            assert done.epoch == 1 and done.positions == 0 and done.open_orders == 0
            assert wait(lambda: run.call(lambda s: s.hardstop_progress is not None and s.hardstop_progress.done), 5)
            # Nothing is re-opened: the executor accepts no entry while latched, and the view stays flat.
            snap = cap.of(PositionSnapshot)[-1]
            assert snap.synced and not snap.positions and not snap.open_orders
            assert sim_account(sim_server, account)["positions"] == {}
            assert Decimal(sim_account(sim_server, account)["balance"]) > 0
        finally:
            cap.close()
            feed.close()

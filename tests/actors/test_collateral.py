"""Per-dex collateral end to end: position_tracker + executor as threads under the supervisor core, against a
simulator where the account's USDC sits on the validator perp dex (where a real deposit lands).

The dex has no usable collateral: the tracker is READY anyway (no restart, no hard stop), says so once and
in its status, and no entry leaves; an opt-in ``sendAsset`` funds it and entries resume within seconds;
when the collateral then drops to zero under an open position, entries stop again and the flatten still
closes the position.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from hip3.account.funding import move_to_dex
from hip3.hyperliquid.rest import RestClient
from hip3.hyperliquid.user_signed import SEND_ASSET_PRIMARY, SEND_ASSET_TYPES, send_asset_action, sign_user_signed
from hip3.messages import OrderFilled, OrderRejected, OrderSubmitted, PositionSnapshot
from hip3.runtime.bus import Bus
from hip3.runtime.inproc import InprocRun, inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from hip3.sim.params import ModelParams, SimParams
from tests.actors.helpers import EXTRA, Capture, FakeFeed, entry, flatten, order_log, sim_account, wait
from tests.conftest import sim_config

pytestmark = pytest.mark.timeout(120)
MARKETS = ("xyz:GOLD", "xyz:SILVER")


@pytest.fixture
def unfunded(paper_key: str, run_dir: Path) -> Iterator[SimServer]:
    params = SimParams(funds_on="perp", model=ModelParams(tick_ms=20, oracle_interval_ms=300, refresh_ms=200,
                                                          maker_lag_ms=400))
    sim = SimServer(params, seed=3, funds={Account.from_key(paper_key).address.lower(): Decimal(5000)},
                    order_log=str(run_dir / "orders.jsonl"))
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def _status(run: InprocRun) -> dict[str, Any]:
    st: dict[str, Any] = run.call(lambda s: s.status())
    return st


def _tracker_detail(run: InprocRun) -> str:
    return str(next(a for a in _status(run)["actors"] if a["name"] == "position_tracker")["ready_detail"])


def _to_perp(sim: SimServer, key: str, account: str, amount: Decimal) -> None:
    """Move collateral back off the dex (the operator, or another app, draining it)."""
    nonce = int(time.time() * 1000)
    action = send_asset_action(destination=account, source_dex="xyz", destination_dex="", token="USDC",
                               amount=amount, nonce=nonce, is_mainnet=False)
    sig = sign_user_signed(key, action, SEND_ASSET_TYPES, SEND_ASSET_PRIMARY)
    r = RestClient(sim.url).exchange({"action": action, "nonce": nonce, "signature": sig, "vaultAddress": None})
    assert r.ok, r


def test_unfunded_dex_refuses_entries_without_a_failure_and_a_transfer_resumes_them(
    unfunded: SimServer, paper_key: str, run_dir: Path
) -> None:
    sim = unfunded
    account = Account.from_key(paper_key).address.lower()
    cfg = sim_config(run_dir, sim.url, account, MARKETS, EXTRA + "[collateral]\nrecheck_unfunded_s = 1.0\n")
    with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
        feed = FakeFeed(cfg, sim, context=run.context)
        feed.feed_state()
        cap = Capture(cfg, ["exec", "positions"], context=run.context)
        tbus = Bus(cfg, "detector", context=run.context, run_dir=cfg.run_path)
        intents = tbus.pusher("intents")
        try:
            # READY: the tracker is synced; an unfunded dex is not its failure.
            assert wait(lambda: run.call(lambda s: s.all_ready()), 20, feed.pump), _status(run)

            def collateral() -> Any:
                snaps = [s for s in cap.of(PositionSnapshot) if s.collateral is not None]
                return snaps[-1].collateral if snaps else None

            assert wait(lambda: collateral() is not None, 10, feed.pump)
            c = collateral()
            assert c.dex == "xyz" and c.withdrawable == 0 and c.perp_withdrawable == 5000
            detail = _tracker_detail(run)
            assert "entries refused: dex 'xyz' has no usable collateral" in detail, detail
            assert "perp balance withdrawable 5000" in detail and "fund-dex" in detail
            assert wait(lambda: any("dex 'xyz' has no usable collateral" in a["text"]
                                    for a in _status(run)["alerts"]), 5, feed.pump), _status(run)["alerts"]
            assert wait(lambda: run.call(lambda s: s.slots["executor"].stats.get("marks_known_n", 0)) == 2, 10,
                        feed.pump)
            refused = entry(sim, "xyz:GOLD", usd=30)
            assert intents.send(refused)
            time.sleep(1.0)
            feed.pump()
            assert not [m for m in cap.of(OrderSubmitted) if m.intent_id == refused.intent_id]
            assert not [r for r in order_log(run_dir / "orders.jsonl") if r["action_type"] == "order"]

            # The opt-in transfer (a signed sendAsset): entries resume once the tracker sees it.
            move_to_dex(RestClient(sim.url), SigningKey(paper_key), account, "xyz", Decimal(2000),
                        is_mainnet=False, nonce_ms=int(time.time() * 1000))
            assert wait(lambda: (c := collateral()) is not None and c.withdrawable == 2000, 10, feed.pump)
            assert wait(lambda: _tracker_detail(run) == "REST synced", 5, feed.pump), _tracker_detail(run)
            time.sleep(0.3)  # the executor's snapshot follows the tracker's
            ok = entry(sim, "xyz:GOLD", usd=30)
            assert intents.send(ok)
            assert wait(lambda: any(isinstance(m, OrderFilled) and m.coin == "xyz:GOLD" for m in cap.of(OrderFilled)),
                        10, feed.pump)
            assert wait(lambda: "xyz:GOLD" in sim_account(sim, account)["positions"], 5, feed.pump)

            # The collateral drops to zero under the open position: entries stop, the exit still works.
            free = Decimal(sim_account(sim, account)["balance"]) - Decimal(10)  # what the position does not use
            _to_perp(sim, paper_key, account, free.quantize(Decimal(1)))
            assert wait(lambda: "entries refused" in _tracker_detail(run), 15, feed.pump), _tracker_detail(run)
            time.sleep(0.3)
            again = entry(sim, "xyz:SILVER", usd=30)
            assert intents.send(again)
            time.sleep(1.0)
            feed.pump()
            assert not [m for m in cap.of(OrderSubmitted) if m.intent_id == again.intent_id]
            held = Decimal(sim_account(sim, account)["positions"]["xyz:GOLD"])
            assert intents.send(flatten(sim, "xyz:GOLD", is_buy=False, sz=held))
            assert wait(lambda: not sim_account(sim, account)["positions"], 10, feed.pump), sim_account(sim, account)
            st = _status(run)
            assert not st["hard_stop"]["latched"] and all(a["restarts"] == 0 for a in st["actors"]), st
        finally:
            tbus.close()
            cap.close()
            feed.close()


def test_a_margin_refusal_is_benign_and_makes_the_tracker_look_again(
    sim_server: SimServer, paper_key: str, run_dir: Path
) -> None:
    """The dex is drained behind hip3's back (the next periodic resync is a minute away): the exchange
    refuses the next entry for margin. That refusal counts toward nothing (a trigger at 0 rejections would
    latch on it) and the tracker re-reads the collateral at once, so the next entry is refused before it
    is signed."""
    sim = sim_server
    account = Account.from_key(paper_key).address.lower()
    extra = (EXTRA.replace("resync_interval_s = 0.5", "resync_interval_s = 60.0")
             + "[risk]\nmax_rejections_per_bucket = 0\n")
    cfg = sim_config(run_dir, sim.url, account, MARKETS, extra)
    with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
        feed = FakeFeed(cfg, sim, context=run.context)
        feed.feed_state()
        cap = Capture(cfg, ["exec"], context=run.context)
        tbus = Bus(cfg, "detector", context=run.context, run_dir=cfg.run_path)
        intents = tbus.pusher("intents")
        try:
            assert wait(lambda: run.call(lambda s: s.all_ready()), 20, feed.pump), _status(run)
            assert wait(lambda: run.call(lambda s: s.slots["executor"].stats.get("marks_known_n", 0)) == 2, 10,
                        feed.pump)
            assert _tracker_detail(run) == "REST synced"
            _to_perp(sim, paper_key, account, Decimal(sim_account(sim, account)["balance"]))
            first = entry(sim, "xyz:GOLD", usd=30)
            assert intents.send(first)
            assert wait(lambda: any(r.intent_id == first.intent_id for r in cap.of(OrderRejected)), 10, feed.pump)
            rej = next(r for r in cap.of(OrderRejected) if r.intent_id == first.intent_id)
            assert rej.benign and "Insufficient margin to place order" in rej.reason
            assert wait(lambda: "entries refused" in _tracker_detail(run), 5, feed.pump), _tracker_detail(run)
            time.sleep(0.3)
            second = entry(sim, "xyz:SILVER", usd=30)
            assert intents.send(second)
            time.sleep(1.0)
            feed.pump()
            assert not [m for m in cap.of(OrderSubmitted) if m.intent_id == second.intent_id]
            st = _status(run)
            assert not st["hard_stop"]["latched"], st["hard_stop"]
        finally:
            tbus.close()
            cap.close()
            feed.close()

"""A host whose clock is 10 s behind (or ahead of) the exchange: the whole graph as threads against a
simulator whose clock is the host's + 10 s (or − 10 s).

Before, the executor signed ``expiresAfter`` = host time + 5 s: with the host 10 s behind, every action
arrived expired ("Action expired"), so no exit and no hard-stop flatten could ever execute and the position
stayed open; with the host ahead, ``expiresAfter`` reached 15 s into the exchange's future, past the local
post timeout. Now the feed measures the offset from the exchange's timestamps, the executor signs with the
exchange's time, the detector refuses entries with the measured offset in its reason, and positions close.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from hip3.messages import HardStopProgress
from hip3.runtime.inproc import InprocRun, inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from hip3.sim.params import ModelParams, SimParams
from tests.actors.helpers import Agent, Capture, crossing_px, market, sim_account, size_for, wait
from tests.conftest import sim_config

pytestmark = pytest.mark.timeout(120)

MARKETS = ("xyz:GOLD", "xyz:SILVER")
EXPIRES_AFTER_MS = 3000
EXTRA = f"""
[supervisor]
heartbeat_interval_ms = 100
[positions]
# The positions are opened by hand (an Agent order): hip3 manages them only when told to adopt them.
manual_positions = "adopt"
resync_interval_s = 1.0
snapshot_interval_ms = 100
[executor]
post_timeout_ms = 3000
expires_after_ms = {EXPIRES_AFTER_MS}
[exits.time_stop]
threshold_ms = 2000
check_interval_ms = 200
[clock]
max_skew_ms = 2000
"""


def _sim(paper_key: str, run_dir: Path, offset_ms: int) -> SimServer:
    params = SimParams(clock_offset_ms=offset_ms,
                       model=ModelParams(tick_ms=20, oracle_interval_ms=300, refresh_ms=200, maker_lag_ms=400))
    sim = SimServer(params, seed=11, funds={Account.from_key(paper_key).address.lower(): Decimal(100_000)},
                    order_log=str(run_dir / "orders.jsonl"))
    sim.start()
    return sim


@pytest.fixture(params=[10_000, -10_000], ids=["host-10s-behind", "host-10s-ahead"])
def skewed(request: pytest.FixtureRequest, paper_key: str, run_dir: Path) -> Iterator[tuple[SimServer, int]]:
    sim = _sim(paper_key, run_dir, request.param)
    try:
        yield sim, request.param
    finally:
        sim.stop()


def _open(sim: SimServer, account: str, coin: str, is_buy: bool, usd: float = 40) -> None:
    """A position opened by another signer of the account (no expiresAfter, nonce in the window)."""
    m = market(sim, coin)
    r = Agent(sim, account).place([(int(m["asset"]), is_buy, crossing_px(sim, coin, is_buy),
                                    size_for(sim, coin, usd), "Ioc")])
    assert r.ok and r.statuses[0].kind == "filled", r


def _actor(run: InprocRun, name: str) -> dict[str, Any]:
    st: dict[str, Any] = run.call(lambda s: s.status())
    return next(a for a in st["actors"] if a["name"] == name)


def _executor_actions(run_dir: Path, account: str) -> list[dict[str, Any]]:
    lines = (run_dir / "orders.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("signer") == account and r["action_type"] == "order"]


def test_a_skewed_host_refuses_entries_with_the_offset_and_still_closes_its_position(
    skewed: tuple[SimServer, int], paper_key: str, run_dir: Path
) -> None:
    sim, offset_ms = skewed
    account = Account.from_key(paper_key).address.lower()
    _open(sim, account, "xyz:GOLD", True)
    cfg = sim_config(run_dir, sim.url, account, MARKETS, EXTRA)
    with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
        assert wait(lambda: run.call(lambda s: s.all_ready()), 30), run.call(lambda s: s.status())
        side = "behind" if offset_ms > 0 else "ahead of"
        # The detector says why entries are refused, with the measured offset.
        assert wait(lambda: f"ms {side} the exchange" in _actor(run, "detector")["ready_detail"], 15), \
            _actor(run, "detector")
        detail = _actor(run, "detector")["ready_detail"]
        assert detail.startswith("entries blocked: host clock ") and "bound 2000 ms" in detail
        measured = int(detail.split("host clock ")[1].split(" ms")[0])
        assert abs(measured - abs(offset_ms)) < 500, detail
        assert wait(lambda: abs(_actor(run, "feed")["stats"].get("clock_skew_ms", 0) - offset_ms) < 500, 5)
        assert wait(lambda: abs(_actor(run, "executor")["stats"].get("signing_offset_ms", 0) - offset_ms) < 500, 5)
        # The exit watcher's time stop closes the position AT THE EXCHANGE.
        assert wait(lambda: not sim_account(sim, account)["positions"], 30), sim_account(sim, account)
        actions = _executor_actions(run_dir, account)
        assert actions and all(all(r["reduce_only"]) for r in actions), actions  # no entry left
        for r in actions:  # signed with the exchange's time: a life of expires_after_ms at the exchange
            assert 0 < r["expires_after"] - r["time_ms"] <= EXPIRES_AFTER_MS + 100, r
        st = run.call(lambda s: s.status())
        assert not st["hard_stop"]["latched"] and all(a["restarts"] == 0 for a in st["actors"]), st


def test_the_hard_stop_flattens_with_the_host_10s_behind(paper_key: str, run_dir: Path) -> None:
    sim = _sim(paper_key, run_dir, 10_000)
    account = Account.from_key(paper_key).address.lower()
    try:
        _open(sim, account, "xyz:GOLD", True)
        _open(sim, account, "xyz:SILVER", False)
        extra = EXTRA.replace("[supervisor]\n", '[supervisor]\nactors = ["feed", "position_tracker", "executor"]\n')
        cfg = sim_config(run_dir, sim.url, account, MARKETS, extra)
        with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
            cap = Capture(cfg, ["exec"], context=run.context)
            try:
                assert wait(lambda: run.call(lambda s: s.all_ready()), 30), run.call(lambda s: s.status())
                assert wait(lambda: _actor(run, "executor")["stats"].get("signing_offset_ms", 0) > 9_000, 10)
                run.call(lambda s: s.hardstop("test: skewed host", "test"))
                assert wait(lambda: not sim_account(sim, account)["positions"], 20), sim_account(sim, account)
                assert wait(lambda: any(p.done for p in cap.of(HardStopProgress)), 15), cap.of(HardStopProgress)
                done = next(p for p in cap.of(HardStopProgress) if p.done)
                assert done.positions == 0 and done.open_orders == 0 and done.dust == ()
            finally:
                cap.close()
    finally:
        sim.stop()

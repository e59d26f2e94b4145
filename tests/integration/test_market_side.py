"""feed + detector + exit_watcher as threads under the supervisor core, over inproc, against the simulator.

The test plays the position tracker (a ``positions`` publisher) and the executor (the ``intents`` PULL).
A scripted dislocation gives exactly one EntryIntent; a position in that market and the book regressing
to the oracle give exactly one FlattenIntent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eth_account import Account

from hip3.messages import DexCollateral, EntryIntent, FlattenIntent, Message, Position, PositionSnapshot
from hip3.runtime.bus import Bus
from hip3.runtime.inproc import inproc_graph
from hip3.sim.app import SimServer
from hip3.sim.params import DEFAULT_MARKETS, ModelParams, SimParams
from tests.conftest import sim_config
from tests.terms_helpers import terms_msg

pytestmark = pytest.mark.timeout(60)

COIN = "xyz:GOLD"
EXTRA = """
[supervisor]
actors = ["feed", "detector", "exit_watcher"]
[feed]
reconnect_base_ms = 100
[detector]
min_consecutive_oracle_moves = 1
"""


@pytest.fixture
def quiet_sim(paper_key: str, run_dir: Path) -> Iterator[SimServer]:
    """The simulator with no random oracle moves: only the test moves the oracle."""
    markets = tuple(msgspec.structs.replace(m, vol_bps=0.0) for m in DEFAULT_MARKETS)
    params = SimParams(markets=markets, model=ModelParams(tick_ms=20, oracle_interval_ms=300, refresh_ms=200,
                                                          maker_lag_ms=400, jump_prob=0.0))
    address = Account.from_key(paper_key).address.lower()
    server = SimServer(params, seed=5, funds={address: Decimal(100_000)})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _snapshot(version: int, positions: tuple[Position, ...] = ()) -> PositionSnapshot:
    # The tracker's snapshot carries the dex's collateral (the detector refuses entries until it knows it).
    funded = DexCollateral(dex="xyz", account_value=Decimal(100_000), withdrawable=Decimal(100_000),
                           margin_used=Decimal(0), perp_withdrawable=Decimal(0))
    return PositionSnapshot(version=version, synced=True, positions=positions, open_orders=(),
                            realized_pnl_usd=Decimal(0), fees_usd=Decimal(0), collateral=funded)


def test_dislocation_gives_one_entry_and_regression_one_flatten(
        quiet_sim: SimServer, paper_key: str, run_dir: Path) -> None:
    account = Account.from_key(paper_key).address.lower()
    cfg = sim_config(run_dir, quiet_sim.url, account, extra=EXTRA)
    with inproc_graph(cfg) as run:
        bus = Bus(cfg, "position_tracker", context=run.context)  # the test plays tracker + executor
        positions = bus.publisher("positions")
        intents = bus.puller("intents")
        got: list[Message] = []
        snap = _snapshot(1)

        def pump(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                positions.on_subscription()
                positions.publish(snap, state_key="positions")
                # The tracker's market terms: the simulator's default fee (9 bps a leg; threshold 25 bps).
                positions.publish(terms_msg([COIN, "xyz:SILVER"], 9.0, fees_ms=time.time_ns() // 1_000_000),
                                  state_key="terms")
                if intents.sock.poll(50):
                    got.extend(intents.drain())

        try:
            assert run.wait_for(lambda s: s.all_ready(), 20), run.call(lambda s: s.status())
            pump(1.0)  # a few quiet evaluations: no edge, no intent
            assert got == []
            gold = quiet_sim.state()["markets"][COIN]
            oracle = float(gold["oraclePx"])
            # +40 bps now; the makers follow only after 2.5 s: a stale ask about 37 bps below the oracle.
            quiet_sim.set_oracle(COIN, oracle * 1.004, lag_ms=2500)
            end = time.monotonic() + 2.0
            while time.monotonic() < end and not got:
                pump(0.05)
            entries = [m for m in got if isinstance(m, EntryIntent)]
            assert len(entries) == 1, got
            e = entries[0]
            assert e.coin == COIN and e.is_buy and not e.reduce_only and e.sz > 0 and e.edge_bps > 25
            assert e.taker_fee_bps == 9.0 and e.fee_source == "exchange"
            # The "executor" filled it: the tracker now reports a long held for 3 s (past min holding).
            snap = _snapshot(2, (Position(coin=COIN, asset=e.asset, is_long=True, size=e.sz, entry_px=e.px,
                                          opened_ms=time.time_ns() // 1_000_000 - 3000,
                                          entry_edge_bps=e.edge_bps),))
            pump(0.8)  # still dislocated: the bid is far below the oracle, no exit yet
            assert [m for m in got if isinstance(m, FlattenIntent)] == []
            pump(4.0)  # the makers catch up: the book is back at the oracle
            flats = [m for m in got if isinstance(m, FlattenIntent)]
            assert len(flats) == 1, got
            f = flats[0]
            assert f.coin == COIN and not f.is_buy and f.reduce_only and f.sz == e.sz
            assert f.reason == "mark_regression"
            assert len([m for m in got if isinstance(m, EntryIntent)]) == 1
            st = run.call(lambda s: s.status())
            assert all(a["ready"] and a["restarts"] == 0 for a in st["actors"]), st
        finally:
            bus.close()


def test_observe_mode_records_signals_and_sends_nothing(quiet_sim: SimServer, run_dir: Path) -> None:
    from hip3.config import parse_config
    from hip3.messages import Signal, SignalFollowup

    text = (f'run_dir = "{run_dir}"\nmode = "observe"\n[exchange]\nnetwork = "sim"\nrest_url = "{quiet_sim.url}"\n'
            '[bus]\ntransport = "inproc"\n[logging]\nstderr = false\n[[markets]]\ncoin = "xyz:GOLD"\n'
            '[supervisor]\nactors = ["feed", "detector"]\n[detector]\nmin_consecutive_oracle_moves = 1\n'
            'observe_followups_ms = [300, 600]\n')
    cfg = parse_config(text, "observe.toml")
    with inproc_graph(cfg) as run:
        bus = Bus(cfg, "test", context=run.context)
        intents = bus.puller("intents")
        signals = bus.subscriber(["signals"])
        got: list[Any] = []
        try:
            assert run.wait_for(lambda s: s.all_ready(), 20), run.call(lambda s: s.status())
            time.sleep(0.5)
            oracle = float(quiet_sim.state()["markets"][COIN]["oraclePx"])
            quiet_sim.set_oracle(COIN, oracle * 0.996, lag_ms=1500)
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                if signals.sock.poll(50):
                    got.extend(signals.drain())
            sigs = [m for m in got if isinstance(m, Signal)]
            det = run.call(lambda s: dict(s.slots["detector"].stats))
            assert len(sigs) == 1 and not sigs[0].is_buy and sigs[0].coin == COIN, {k: v for k, v in det.items() if v}
            assert sorted(m.offset_ms for m in got if isinstance(m, SignalFollowup)) == [300, 600]
            assert intents.sock.poll(100) == 0  # nothing was ever sent
        finally:
            bus.close()

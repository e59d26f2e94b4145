"""A short live paper session that records its market frames: the inproc graph (all five actors, real
classes) against the simulator, with scripted dislocations, paced so that it is not racing (see
``live_session``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import msgspec
from eth_account import Account

from hip3.config import Config
from hip3.journal.trades import TradeLog
from hip3.runtime.bus import Bus
from hip3.runtime.inproc import inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from hip3.sim.params import DEFAULT_MARKETS, ModelParams, SimParams
from tests.conftest import sim_config

MARKETS = ("xyz:GOLD", "xyz:SILVER")
# Entries on a single oracle move; everything else the defaults of the strategy.
EXTRA = """
[supervisor]
actors = ["feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder"]
[feed]
record_path = "frames.rec"
[detector]
min_consecutive_oracle_moves = 1
[gates]
# The quiet market below changes only at the jumps: a bbo is not stale for being unchanged.
max_bbo_age_ms = 0
max_ctx_age_ms = 60000
[positions]
snapshot_interval_ms = 500
"""

# Live == replay holds when every live decision meets the book of the last frame the feed saw, which is
# the replay's rule: so the market changes only at the test's jumps and, MAKER_LAG_MS later (at the next
# TICK_MS), when the makers catch up - no random walk, no scheduled oracle pushes or refreshes within the
# session - and the graph's reaction (milliseconds) always ends long before the next change. Timer-driven
# exits (time stop) then also meet an unchanged book, although their timers' phases differ between live
# and replay. l2Book is pushed on every change (the replay's depth).
TICK_MS = 250
MAKER_LAG_MS = 1500
HOUR_MS = 3_600_000


def quiet_params() -> SimParams:
    markets = tuple(msgspec.structs.replace(m, vol_bps=0.0) for m in DEFAULT_MARKETS)
    return SimParams(markets=markets, l2_min_interval_ms=0,
                     model=ModelParams(tick_ms=TICK_MS, oracle_interval_ms=HOUR_MS, refresh_ms=HOUR_MS,
                                       maker_lag_ms=MAKER_LAG_MS, jump_prob=0.0, size_jitter=0.0))


@contextmanager
def quiet_sim(key: str, run_dir: Path) -> Iterator[SimServer]:
    address = Account.from_key(key).address.lower()
    server = SimServer(quiet_params(), seed=5, funds={address: Decimal(100_000)})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def live_session(key: str, run_dir: Path, jumps: list[tuple[float, str, float]], tail_s: float = 3.0,
                 extra: str = "") -> tuple[Path, TradeLog, Config]:
    """Run the graph until READY, then ``(at_s, coin, bps)`` oracle jumps (makers follow after 1.5 s),
    then ``tail_s``; returns the recording, the live trades and the config."""
    with quiet_sim(key, run_dir) as sim:
        account = Account.from_key(key).address.lower()
        cfg = sim_config(run_dir, sim.url, account, MARKETS, EXTRA + extra)
        trades = TradeLog()
        with inproc_graph(cfg, signing_key=SigningKey(key)) as run:
            bus = Bus(cfg, "test", context=run.context)
            tap = bus.subscriber(["exec"])

            def pump(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    if tap.sock.poll(20):
                        for m in tap.drain():
                            trades.on_message(m)

            try:
                assert run.wait_for(lambda s: s.all_ready(), 30), run.call(lambda s: s.status())
                pump(1.0)
                t0 = time.monotonic()
                for at_s, coin, bps in jumps:
                    pump(max(0.0, t0 + at_s - time.monotonic()))
                    sim.jump(coin, bps)
                pump(tail_s)
            finally:
                bus.close()
        return run_dir / "frames.rec", trades, cfg

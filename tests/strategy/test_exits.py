"""Exits, long and short, at their boundaries; each flag alone, moves counted since entry, resync keeps
baselines, quick exits before the minimum hold, the decay horizon at the time stop."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from hip3.messages import FlattenIntent
from hip3.strategy.exit_watcher_core import ExitWatcherCore
from hip3.strategy.exits import ExitRules
from hip3.strategy.params import (
    ExitParams,
    MarkRegressionParams,
    OracleExitParams,
    OracleTrackerParams,
    TimeStopParams,
    TrailingParams,
)

from .helpers import MS, T0_MS, T0_NS, bbo, ctx, position, snapshot

C = "xyz:A"


def make(params: ExitParams | None = None, *, is_long: bool = True, entry: str = "100", oracle: float = 100.0,
         edge: float = 0.0) -> ExitWatcherCore:
    core = ExitWatcherCore(params or ExitParams(), OracleTrackerParams(), {C: 2}, id_prefix="t")
    core.on_ctx(ctx(C, oracle), T0_NS)
    core.on_position_snapshot(snapshot(position(C, is_long=is_long, entry=entry, edge=edge)), T0_NS, T0_MS)
    return core


def mr(**kw: object) -> ExitParams:
    return ExitParams(mark_regression=msgspec.structs.replace(MarkRegressionParams(), **kw))


def at(ms: float) -> int:
    return T0_NS + int(ms * MS)


# ---- mark regression, min hold (inclusive), exit price and intent fields ---------------------------

@pytest.mark.parametrize(
    ("is_long", "bid", "ask", "t_ms", "fires"),
    [
        (True, 99.95, 99.99, 1000, True),  # bid ≥ o(1 − 5 bps), min hold reached (inclusive)
        (True, 99.95, 99.99, 999, False),  # min hold not reached
        (True, 99.94, 99.99, 2000, False),  # below the level
        (False, 100.01, 100.05, 1000, True),  # ask ≤ o(1 + 5 bps)
        (False, 100.01, 100.06, 2000, False),
    ],
)
def test_mark_regression_boundaries(is_long: bool, bid: float, ask: float, t_ms: int, fires: bool) -> None:
    core = make(is_long=is_long)
    out = core.on_bbo(bbo(C, bid, ask, recv_ns=at(t_ms) - 5), at(t_ms))
    assert (out is not None) is fires
    if out is not None:
        assert out.reason == "mark_regression"
        assert out.is_buy is (not is_long) and out.reduce_only and out.sz == Decimal("2")
        assert out.valid_until_ns == at(t_ms) + 1000 * MS and out.origin_recv_ns == at(t_ms) - 5
        # bid × (1 − 50 bps) rounded down for a sell; ask × (1 + 50 bps) rounded up for a buy.
        assert out.px == (Decimal("99.45") if is_long else Decimal("100.56"))


def test_mark_regression_flag_off() -> None:
    core = make(mr(enabled=False))
    assert core.on_bbo(bbo(C, 99.99, 100.01), at(2000)) is None


def test_entry_edge_scaling_raises_threshold() -> None:
    on = make(mr(entry_edge_scaling=True), edge=40.0)  # base = max(5, 40 × 0.5) = 20 bps -> level 99.8
    off = make(edge=40.0)
    assert on.on_bbo(bbo(C, 99.85, 99.9), at(2000)) is not None
    assert off.on_bbo(bbo(C, 99.85, 99.9), at(2000)) is None


@pytest.mark.parametrize(
    ("is_long", "entry", "bid", "ask", "fires"),
    [
        (True, "100.2", 100.1, 100.15, False),  # PnL −10 bps: small loss, hold
        (True, "100.2", 100.0, 100.05, True),  # PnL −20 bps: exit
        (True, "99.9", 100.0, 100.05, True),  # profit: exit
        (False, "99.8", 99.85, 99.9, False),  # short PnL −10 bps: hold
        (False, "99.8", 99.95, 100.0, True),  # short PnL −20 bps: exit
    ],
)
def test_small_loss_hold(is_long: bool, entry: str, bid: float, ask: float, fires: bool) -> None:
    core = make(mr(min_loss_exit_bps=15.0), is_long=is_long, entry=entry)
    assert (core.on_bbo(bbo(C, bid, ask), at(2000)) is not None) is fires


def test_time_decay_horizon_is_the_configured_time_stop() -> None:
    """Latent 15: the floor is reached at time_stop.threshold_ms (20 s here), not a fixed 30 s."""
    p = ExitParams(mark_regression=MarkRegressionParams(time_decay=True, decay_start_ms=5000, min_decay_factor=0.2),
                   time_stop=TimeStopParams(threshold_ms=20_000))
    rules = ExitRules(p)
    assert rules._decay(5000 * MS) == 1.0
    assert rules._decay(12_500 * MS) == pytest.approx(0.6)
    assert rules._decay(20_000 * MS) == pytest.approx(0.2)
    assert rules._decay(29_000 * MS) == pytest.approx(0.2)
    explicit = ExitRules(msgspec.structs.replace(
        p, mark_regression=msgspec.structs.replace(p.mark_regression, decay_horizon_ms=30_000)))
    assert explicit._decay(20_000 * MS) == pytest.approx(0.52)


# ---- quick profit / edge evaporation bypass min hold ----------------------------------------------

@pytest.mark.parametrize(
    ("is_long", "bid", "ask", "t_ms", "fires"),
    [
        (True, 100.1, 100.2, 500, True),  # +10 bps at 500 ms, before the 1000 ms min hold
        (True, 100.1, 100.2, 499, False),
        (True, 100.09, 100.2, 600, False),
        (False, 99.8, 99.9, 500, True),
        (False, 99.8, 99.91, 600, False),
    ],
)
def test_quick_profit_bypasses_min_hold(is_long: bool, bid: float, ask: float, t_ms: int, fires: bool) -> None:
    core = make(mr(quick_profit_bps=10.0, enabled=False), is_long=is_long)
    out = core.on_bbo(bbo(C, bid, ask), at(t_ms))
    assert (out is not None) is fires
    if out is not None:
        assert out.reason == "quick_profit"


@pytest.mark.parametrize(
    ("is_long", "bid", "ask", "t_ms", "fires"),
    [
        (True, 99.5, 99.98, 500, True),  # (o − a)/o = 2 bps ≤ 2: the MM caught up
        (True, 99.5, 99.97, 500, False),
        (True, 99.5, 99.98, 499, False),
        (False, 100.02, 100.5, 500, True),
        (False, 100.03, 100.5, 500, False),
    ],
)
def test_edge_evaporation(is_long: bool, bid: float, ask: float, t_ms: int, fires: bool) -> None:
    core = make(mr(edge_evaporation=True, enabled=False), is_long=is_long)
    out = core.on_bbo(bbo(C, bid, ask), at(t_ms))
    assert (out is not None) is fires
    if out is not None:
        assert out.reason == "edge_evaporation"


# ---- oracle exits: deltas since entry, each flag alone ----------------------------------------------

def _oracle_only(**kw: object) -> ExitParams:
    return ExitParams(mark_regression=MarkRegressionParams(enabled=False),
                      oracle_exit=msgspec.structs.replace(OracleExitParams(), **kw))


@pytest.mark.parametrize("is_long", [True, False])
def test_oracle_reversal_counts_deltas_since_entry(is_long: bool) -> None:
    core = ExitWatcherCore(_oracle_only(), OracleTrackerParams(), {C: 2})
    step = -1 if is_long else 1  # moves against the position
    px = 100.0
    core.on_ctx(ctx(C, px), T0_NS)
    for _ in range(3):  # three moves "against" BEFORE entry
        px *= 1 + step * 0.001
        core.on_ctx(ctx(C, px), T0_NS)
    core.on_position_snapshot(snapshot(position(C, is_long=is_long)), T0_NS, T0_MS)
    px *= 1 + step * 0.001
    assert core.on_ctx(ctx(C, px), at(2000)) is None  # 1 since entry (seed bug: 4 ≥ 2 → false loss cut)
    px *= 1 + step * 0.001
    out = core.on_ctx(ctx(C, px), at(2000))
    assert out is not None and out.reason == "oracle_reversal"
    # No bbo: priced off mark ± slippage.
    assert out.is_buy is (not is_long)


@pytest.mark.parametrize("is_long", [True, False])
def test_oracle_catchup(is_long: bool) -> None:
    core = make(_oracle_only(), is_long=is_long)
    px = 100.0
    for i in range(3):
        px *= 1.001 if is_long else 0.999
        out = core.on_ctx(ctx(C, px), at(1500))
        assert (out is not None) is (i == 2)
    assert out is not None and out.reason == "oracle_catchup"


def test_oracle_exit_min_hold() -> None:
    core = make(_oracle_only(exit_with_moves=1))
    assert core.on_ctx(ctx(C, 100.1), at(999)) is None
    assert core.on_ctx(ctx(C, 100.2), at(1000)) is not None


def test_oracle_exit_needs_baseline() -> None:
    """No oracle known at open ⇒ the baseline is taken at the first ctx, never counting earlier moves."""
    core = ExitWatcherCore(_oracle_only(exit_with_moves=1), OracleTrackerParams(), {C: 2})
    core.on_position_snapshot(snapshot(position(C)), T0_NS, T0_MS)
    assert core.on_ctx(ctx(C, 100.0), at(2000)) is None
    assert core.on_ctx(ctx(C, 100.1), at(2000)) is not None


@pytest.mark.parametrize("is_long", [True, False])
def test_trailing_stop(is_long: bool) -> None:
    p = ExitParams(mark_regression=MarkRegressionParams(enabled=False), oracle_exit=OracleExitParams(enabled=False),
                   trailing=TrailingParams(enabled=True, activation_bps=5.0, trail_bps=3.0))
    core = make(p, is_long=is_long)
    sgn = 1 if is_long else -1
    assert core.on_ctx(ctx(C, 100 + sgn * 0.06), at(1500)) is None  # +6 bps: armed
    assert core.on_ctx(ctx(C, 100 + sgn * 0.04), at(1500)) is None  # 2 bps back: holds
    out = core.on_ctx(ctx(C, 100 + sgn * 0.02), at(1500))  # 4 bps back from the best
    assert out is not None and out.reason == "trailing_stop"


def test_trailing_not_armed_never_fires() -> None:
    p = ExitParams(oracle_exit=OracleExitParams(enabled=False), trailing=TrailingParams(enabled=True))
    core = make(p)
    assert core.on_ctx(ctx(C, 100.04), at(1500)) is None  # +4 bps < activation
    assert core.on_ctx(ctx(C, 99.0), at(1500)) is None


def test_profile_time_stop_scalper() -> None:
    core = ExitWatcherCore(_oracle_only(), OracleTrackerParams(), {C: 2})
    core.on_ctx(ctx(C, 100.0), T0_NS)
    core.set_profile(C, "scalper")
    core.on_position_snapshot(snapshot(position(C)), T0_NS, T0_MS)
    assert core.on_ctx(ctx(C, 100.001), at(4999)) is None
    out = core.on_ctx(ctx(C, 100.002), at(5000))
    assert out is not None and out.reason == "profile_time_stop"


# ---- time stop (strictly greater), each flag alone ------------------------------------------------

@pytest.mark.parametrize("is_long", [True, False])
def test_time_stop_on_tick(is_long: bool) -> None:
    core = make(ExitParams(mark_regression=MarkRegressionParams(enabled=False)), is_long=is_long)
    core.on_ctx(ctx(C, 100.0, mark=100.0), T0_NS)
    assert core.on_tick(at(30_000)) == []
    out = core.on_tick(at(30_000) + 1)
    assert len(out) == 1 and out[0].reason == "time_stop"
    assert out[0].px == (Decimal("99.5") if is_long else Decimal("100.5"))  # mark ∓ 50 bps


def test_time_stop_flag_off() -> None:
    core = make(ExitParams(time_stop=TimeStopParams(enabled=False),
                           mark_regression=MarkRegressionParams(enabled=False)))
    assert core.on_tick(at(60_000)) == []


@pytest.mark.parametrize(
    "flag",
    ["mark_regression", "quick_profit", "edge_evaporation", "oracle_exit", "trailing", "time_stop"],
)
def test_each_exit_flag_alone(flag: str) -> None:
    """With every other mechanism off, each one still fires on its own."""
    off = ExitParams(
        mark_regression=MarkRegressionParams(enabled=False),
        oracle_exit=OracleExitParams(enabled=False),
        trailing=TrailingParams(enabled=False),
        time_stop=TimeStopParams(enabled=False),
    )
    mrp = off.mark_regression
    if flag == "mark_regression":
        p = msgspec.structs.replace(off, mark_regression=msgspec.structs.replace(mrp, enabled=True))
    elif flag == "quick_profit":
        p = msgspec.structs.replace(off, mark_regression=msgspec.structs.replace(mrp, quick_profit_bps=5.0))
    elif flag == "edge_evaporation":
        p = msgspec.structs.replace(off, mark_regression=msgspec.structs.replace(mrp, edge_evaporation=True))
    elif flag == "oracle_exit":
        p = msgspec.structs.replace(off, oracle_exit=OracleExitParams(exit_with_moves=1))
    elif flag == "trailing":
        p = msgspec.structs.replace(off, trailing=TrailingParams(enabled=True, activation_bps=1.0, trail_bps=1.0))
    else:
        p = msgspec.structs.replace(off, time_stop=TimeStopParams())
    core = make(p)
    outs: list[FlattenIntent | None] = []
    outs.append(core.on_bbo(bbo(C, 100.1, 100.2), at(2000)))  # qp, mark regression
    outs.append(core.on_bbo(bbo(C, 99.0, 99.99), at(2000)))  # edge evaporation
    outs.append(core.on_ctx(ctx(C, 100.3), at(2000)))  # oracle with-move, trailing armed
    outs.append(core.on_ctx(ctx(C, 100.1), at(2000)))  # trailing gives back 2 bps
    outs.extend(core.on_tick(at(31_000)))
    fired = [o for o in outs if o is not None]
    assert len(fired) == 1  # exactly one flatten: the claim blocks the rest
    expected = {"oracle_exit": "oracle_catchup", "trailing": "trailing_stop"}.get(flag, flag)
    assert fired[0].reason == expected

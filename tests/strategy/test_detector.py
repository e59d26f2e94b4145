"""Detector: thresholds, filters in order, sizing, intents, followups; windowed oracle direction, EWMAs
per update, session size before the minimum boost, the configured correlation limit, invalid books."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from hip3.config import MarketConfig
from hip3.messages import FeedState
from hip3.strategy.detector import Skip, confidence, liquidity_factor
from hip3.strategy.detector_core import DetectorCore
from hip3.strategy.params import DetectorParams, GateParams, OracleTrackerParams
from tests.terms_helpers import known_terms

from .helpers import MS, T0_MS, T0_NS, bbo, ctx

G = "xyz:G"
GATES = GateParams(max_mark_mid_divergence_bps=0)


def make(p: DetectorParams | None = None, *, coins: tuple[str, ...] = (G,), trading: bool = True,
         threshold: float | None = None, szd: int = 2, taker_bps: float = 2.0) -> DetectorCore:
    """A detector whose market terms give a 2 bps taker fee a leg (a 4 bps round trip): with the default
    slippage (2) and minimum edge (5) the threshold is 11 bps."""
    markets = [MarketConfig(coin=c, threshold_bps=threshold) for c in coins]
    return DetectorCore(OracleTrackerParams(), GATES, p or DetectorParams(), markets, trading=trading,
                        sz_decimals=dict.fromkeys(coins, szd), assets={c: 110000 + i for i, c in enumerate(coins)},
                        id_prefix="t", terms=known_terms(coins, taker_bps))


def up_twice(core: DetectorCore, coin: str = G, start: float = 100.0, sign: int = 1) -> float:
    """Three ctx: two meaningful moves (10 bps) in one direction. Returns the final oracle."""
    px = start
    core.on_ctx(ctx(coin, px), T0_NS)
    for _ in range(2):
        px = round(px * (1 + sign * 0.001), 6)
        core.on_ctx(ctx(coin, px), T0_NS)
    return px


def test_buy_signal_and_intent() -> None:
    core = make()
    o = up_twice(core)  # 100.2001
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0, recv_ns=T0_NS + 7), T0_NS)
    (det,) = core.evaluate(T0_NS + 10, T0_MS)
    r = det.record
    assert r.is_buy and r.raw_edge_bps == pytest.approx((o - 100.0) / o * 1e4) and r.threshold_bps == 11.0
    assert r.net_edge_bps == pytest.approx(r.raw_edge_bps - 11.0) and r.strength == "medium"
    i = det.intent
    assert i is not None and i.is_buy and not i.reduce_only and i.px == Decimal("100")
    assert i.sz == Decimal("9.9")  # 100 × 0.10 × liq 1, capped at $1000 × 0.99 / mid, floored
    assert i.valid_until_ns == T0_NS + 10 + 500 * MS and i.origin_recv_ns == T0_NS + 7 and i.asset == 110000
    assert det.persist and det.signal.signal_id == r.signal_id == i.signal_id


def test_sell_signal() -> None:
    core = make()
    up_twice(core, sign=-1)  # 99.8001
    core.on_bbo(bbo(G, 100.0, 100.05, bid_sz=100.0), T0_NS)
    (det,) = core.evaluate(T0_NS, T0_MS)
    assert not det.record.is_buy and det.intent is not None and det.intent.px == Decimal("100")


@pytest.mark.parametrize("delta", [0.0, 1e-9])
def test_threshold_is_inclusive(delta: float) -> None:
    o = 100.2001
    edge = (o - 100.0) / o * 1e4
    core = make(threshold=edge + delta)
    up_twice(core)
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0), T0_NS)
    assert (len(core.evaluate(T0_NS, T0_MS)) == 1) is (delta == 0.0)


def _case(p: DetectorParams, *, moves: int = 2, sign: int = 1, ask_sz: float = 100.0, lag_ms: float = 0,
          spread: float = 0.05) -> tuple[DetectorCore, list[object]]:
    core = make(p)
    px = 100.0
    core.on_ctx(ctx(G, px), T0_NS)
    for _ in range(moves):
        px = round(px * (1 + sign * 0.001), 6)
        core.on_ctx(ctx(G, px), T0_NS)
    core.on_bbo(bbo(G, 99.5 - spread, 99.5, ask_sz=ask_sz), T0_NS)
    return core, list(core.evaluate(T0_NS + int(lag_ms * MS), T0_MS))


@pytest.mark.parametrize(
    ("p", "kw", "skip"),
    [
        (DetectorParams(max_entry_spread_bps=4.0), {}, Skip.SPREAD_CAP),
        (DetectorParams(max_entry_spread_bps=6.0), {}, Skip.NONE),
        (DetectorParams(), {"sign": -1, "moves": 1}, Skip.DIRECTION),  # edge > T but oracle fell
        (DetectorParams(min_consecutive_oracle_moves=0), {"sign": -1, "moves": 1}, Skip.DIRECTION),
        (DetectorParams(min_oracle_change_bps=11.0), {}, Skip.ORACLE_STEP),
        (DetectorParams(), {"moves": 1}, Skip.CONSECUTIVE),
        (DetectorParams(min_quote_lag_ms=30), {"lag_ms": 29}, Skip.QUOTE_LAG_FRESH),
        (DetectorParams(min_quote_lag_ms=30), {"lag_ms": 30}, Skip.NONE),
        (DetectorParams(max_quote_lag_ms=700), {"lag_ms": 700.001}, Skip.QUOTE_LAG_STALE),
        (DetectorParams(max_quote_lag_ms=700), {"lag_ms": 700}, Skip.NONE),
        (DetectorParams(edge_velocity_gate=True, min_edge_velocity_bps=11.0), {}, Skip.EDGE_VELOCITY),
        (DetectorParams(), {"ask_sz": 5.0}, Skip.LIQUIDITY),  # $497.5 ≤ $500
        (DetectorParams(min_confidence_entry=0.99), {}, Skip.CONFIDENCE),
    ],
)
def test_filters(p: DetectorParams, kw: dict[str, float], skip: Skip) -> None:
    core, out = _case(p, **kw)  # type: ignore[arg-type]
    assert (len(out) == 1) is (skip is Skip.NONE)
    if skip is not Skip.NONE:
        assert core.skips[skip] == 1


def test_dedup_same_oracle_same_side() -> None:
    core, out = _case(DetectorParams())
    assert len(out) == 1
    core.on_bbo(bbo(G, 99.4, 99.45, ask_sz=100.0), T0_NS)
    assert core.evaluate(T0_NS, T0_MS) == [] and core.skips[Skip.DEDUP] == 1
    core2, _ = _case(DetectorParams(signal_dedup=False))
    core2.on_bbo(bbo(G, 99.4, 99.45, ask_sz=100.0), T0_NS)
    assert len(core2.evaluate(T0_NS, T0_MS)) == 1


def test_baseline_filter() -> None:
    """A structural gap (oracle always ~50 bps above mid) is subtracted once enough samples exist."""
    p = DetectorParams(baseline_enabled=True, baseline_min_samples=3, min_edge_above_baseline_bps=8.0,
                       baseline_alpha=0.5, signal_dedup=False)
    core, _ = _case(p)
    for k in range(3):
        core.on_bbo(bbo(G, 99.45, 99.5 + k * 1e-6, ask_sz=100.0), T0_NS)
        core.evaluate(T0_NS, T0_MS)
    assert core.skips[Skip.BASELINE] >= 1


def test_direction_over_a_window_not_previous_evaluation() -> None:
    """After the oracle's two up-moves, 200 bbo-only evaluations later the direction still holds."""
    core = make()
    up_twice(core)
    for k in range(200):
        core.on_bbo(bbo(G, 100.3, 100.35 + k * 1e-6), T0_NS)
        assert core.evaluate(T0_NS, T0_MS) == []
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0), T0_NS)
    assert len(core.evaluate(T0_NS, T0_MS)) == 1


def test_ewmas_advance_per_update_not_per_evaluation() -> None:
    """Latent 11: evaluating without new market data does not advance any EWMA."""
    core = make()
    up_twice(core)
    core.on_bbo(bbo(G, 100.3, 100.35), T0_NS)
    core.evaluate(T0_NS, T0_MS)
    d = core._det[G]
    n, e, g = d.baseline_n, d.spread_ewma_bps, core.gates.states[G].spread_ewma_bps
    for _ in range(10):
        assert core.evaluate(T0_NS, T0_MS) == []
    assert (d.baseline_n, d.spread_ewma_bps, core.gates.states[G].spread_ewma_bps) == (n, e, g) and n == 1


def test_invalid_bbo_never_feeds_an_ewma() -> None:
    """Latent 20: a one-sided book is counted and skipped, the EWMAs stay as they were."""
    core = make()
    up_twice(core)
    core.on_bbo(bbo(G, 100.3, 100.35), T0_NS)
    core.evaluate(T0_NS, T0_MS)
    d = core._det[G]
    state = (d.baseline_n, d.spread_ewma_bps, core.gates.states[G].spread_ewma_bps)
    for bad in (bbo(G, 0.0, 100.35), bbo(G, 100.4, 100.35), bbo(G, float("nan"), 100.0)):
        assert core.on_bbo(bad, T0_NS) is False
        assert core.evaluate(T0_NS, T0_MS) == []
        assert core.evaluate(T0_NS, T0_MS, coins=[G, "xyz:UNKNOWN"]) == []
    assert (d.baseline_n, d.spread_ewma_bps, core.gates.states[G].spread_ewma_bps) == state
    assert core.stats()["bad_bbo_missing_side"] == 1 and core.stats()["bad_bbo_crossed"] == 1


def test_session_multiplier_before_min_notional_boost() -> None:
    """Latent 13: at MarketOpen (×0.5 size) a small order is boosted to ≥ $11 AFTER the multiplier."""
    p = DetectorParams(session_aware=True, min_book_notional_usd=0.0, sizing_alpha=0.1)
    core = make(p, threshold=5.0)
    up_twice(core)
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=1.5), T0_NS)  # 0.15 × 0.5 = 0.075 → $7.5 → boosted
    day = T0_MS - T0_MS % 86_400_000
    (det,) = core.evaluate(T0_NS, day + 15 * 3_600_000)  # 15:00 UTC
    assert det.record.threshold_bps == 10.0  # ×2 at MarketOpen
    assert det.intent is not None and det.intent.sz * det.intent.px >= Decimal(11)
    assert det.intent.sz == Decimal("0.12")  # ceil(11 / min(mid, ask)) to the lot: 0.11 would be $10.997


def test_spread_reduce_factor_applied() -> None:
    core = make(DetectorParams(min_book_notional_usd=0.0, signal_dedup=False), threshold=5.0)
    up_twice(core)
    core.on_bbo(bbo(G, 99.99, 100.0, ask_sz=1000.0), T0_NS)
    core.evaluate(T0_NS, T0_MS)  # spread EWMA 1 bps
    core.on_bbo(bbo(G, 99.96, 99.99, ask_sz=1000.0), T0_NS)  # 3 bps > thr (3 × 1.1)? EWMA 1.1, thr 3.3: no
    core.on_bbo(bbo(G, 99.94, 99.99, ask_sz=1000.0), T0_NS)  # 5 bps: EWMA 1.2, thr 3.6 → reduce ×0.2
    (det,) = core.evaluate(T0_NS, T0_MS)
    assert det.record.size_factor == 0.2 and det.intent is not None
    assert det.intent.sz == Decimal("1.98")  # 9.9 × 0.2


@pytest.mark.parametrize(("n", "kept"), [(3, 3), (4, 4), (5, 5), (1, 1)])
def test_correlation_filter_keeps_n(n: int, kept: int) -> None:
    """Latent 14: keeps correlation_max_simultaneous (not a fixed 2), strongest raw edge first."""
    coins = tuple(f"xyz:C{i}" for i in range(5))
    core = make(DetectorParams(correlation_filter=True, correlation_max_simultaneous=n), coins=coins)
    for i, c in enumerate(coins):
        up_twice(core, c)
        core.on_bbo(bbo(c, 99.9, 100.0 - i * 0.01, ask_sz=100.0), T0_NS)
    out = core.evaluate(T0_NS, T0_MS)
    assert sorted(d.record.coin for d in out) == sorted(list(reversed(coins))[:kept])
    assert core.counts["correlation_dropped"] == 5 - kept


def test_threshold_composition() -> None:
    p = DetectorParams(adaptive_threshold=True, session_aware=True, short_throttle=True, velocity_weight=True)
    core = make(p)
    up_twice(core)  # velocity ≈ 10 bps → weight 1
    core._det[G].spread_ewma_bps = 10.0  # floor 15 > base 11
    day = T0_MS - T0_MS % 86_400_000
    assert core.threshold_bps(G, True, day + 17 * 3_600_000) == pytest.approx(15 * 1.5, rel=1e-6)  # USActive
    assert core.threshold_bps(G, False, day) == pytest.approx(15 * 1.5, rel=1e-6)  # short throttle
    assert core.threshold_bps(G, True, day) == pytest.approx(15, rel=1e-6)
    core.book.markets[G].tracker.velocity_bps = 40.0  # weight clamps at 2
    assert core.threshold_bps(G, True, day) == pytest.approx(7.5)
    core.book.markets[G].tracker.velocity_bps = 0.0  # and at 0.5
    assert core.threshold_bps(G, True, day) == pytest.approx(30.0)


def test_confidence_and_liquidity() -> None:
    p = DetectorParams()
    assert liquidity_factor(500.0, p) == 0.0 and liquidity_factor(5000.0, p) == 1.0
    assert liquidity_factor(2750.0, p) == pytest.approx(0.5)
    # edge_f 1, vel_f 1 (v = 12 = 4m), consec 1, liq 1, spread_f 1 → 1.0
    assert confidence(40.0, 10.0, 12.0, 3, 1.0, 5.0, p) == pytest.approx(1.0)
    # no spread EWMA → 0.5 × 0.15; edge at T → 0
    assert confidence(10.0, 10.0, 0.0, 0, 0.0, 0.0, p) == pytest.approx(0.075)


def test_modes_ready_and_spec() -> None:
    observe = make(trading=False)
    up_twice(observe)
    observe.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0), T0_NS)
    (d,) = observe.evaluate(T0_NS, T0_MS)
    assert d.intent is None
    live = make()
    up_twice(live)
    live.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0), T0_NS)
    (d,) = live.evaluate(T0_NS, T0_MS, ready=False)
    assert d.intent is None and live.counts["not_ready"] == 1
    nospec = DetectorCore(OracleTrackerParams(), GATES, DetectorParams(), [MarketConfig(coin=G)], trading=True,
                          sz_decimals={}, assets={}, terms=known_terms([G]))
    up_twice(nospec)
    nospec.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0), T0_NS)
    (d,) = nospec.evaluate(T0_NS, T0_MS)
    assert d.intent is None and nospec.counts["no_spec"] == 1


def test_persist_dedup_and_followups() -> None:
    core = make(DetectorParams(signal_dedup=False))
    up_twice(core)
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0), T0_NS)
    (d1,) = core.evaluate(T0_NS, T0_MS)
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=99.0), T0_NS)
    (d2,) = core.evaluate(T0_NS + 499 * MS, T0_MS)
    assert d1.persist and not d2.persist and d2.intent is not None  # still goes to the executor
    assert core.due_followups(T0_NS + 999 * MS, T0_MS) == []
    core.on_bbo(bbo(G, 100.1, 100.15), T0_NS)
    (f,) = core.due_followups(T0_NS + 1000 * MS, T0_MS + 1000)
    assert f.signal_id == d1.record.signal_id and f.offset_ms == 1000 and f.best_px == 100.15
    assert f.exit_px == 100.1  # a buy signal's taker exit: the bid at the horizon
    assert f.edge_change_bps == pytest.approx(f.edge_bps - d1.record.raw_edge_bps)
    assert [x.offset_ms for x in core.due_followups(T0_NS + 10_000 * MS, T0_MS)] == [3000, 5000]


def test_feed_reconnect_clears_time_regression() -> None:
    core = make()
    up_twice(core)
    core.on_feed_state(FeedState(state="connected", conn_id=1, market_data_ready=True, user_ready=True, since_ns=0))
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0, exch_ms=10), T0_NS)
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0, exch_ms=5), T0_NS)
    assert core.evaluate(T0_NS, T0_MS) == []
    core.on_feed_state(FeedState(state="connected", conn_id=2, market_data_ready=True, user_ready=True, since_ns=0))
    core.on_bbo(bbo(G, 99.95, 100.0, ask_sz=100.0, exch_ms=1), T0_NS)
    assert len(core.evaluate(T0_NS, T0_MS)) == 1
    assert [t[2].name for t in core.take_gate_transitions()] == ["TIME_REGRESSION", "PASS"]


def test_params_defaults_and_toml() -> None:
    from hip3.config import parse_config

    cfg = parse_config(
        'mode = "observe"\n[gates]\nblackout_windows_utc = ["09:00-09:15"]\n[detector]\nentry_ttl_ms = 300\n'
        "[exits.mark_regression]\nquick_profit_bps = 3.0\n[exits.time_stop]\nthreshold_ms = 20000\n"
    )
    assert cfg.detector.entry_ttl_ms == 300 and cfg.exits.mark_regression.quick_profit_bps == 3.0
    assert cfg.exits.time_stop.threshold_ms == 20000 and cfg.oracle.min_move_bps == 2.0
    assert DetectorParams().observe_followups_ms == (1000, 3000, 5000)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_bbo_age_ms": -1}, GateParams)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"typo": 1}, DetectorParams)
    assert msgspec.structs.replace(DetectorParams(), sizing_alpha=0.2).sizing_alpha == 0.2

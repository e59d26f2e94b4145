"""Dislocation detector maths: threshold, the per-side filter chain, sizing and confidence.

Pure functions over one market's state; ``hip3.strategy.detector_core`` orchestrates them. Guards:
* Direction, step size and consecutive moves come from the windowed ``OracleTracker``, never from
  "the oracle change since the previous evaluation" (≈0 on 99 % of checks, which blocked 41+ bps
  signals in the Rust original).
* The session size multiplier (and the spread-shock factor) are applied *before* the
  minimum-notional boost, so no order below the exchange's $10 minimum leaves during US hours.
* Sizes are floored to szDecimals in Decimal; a zero size drops the signal (the exchange refuses it).
"""

from __future__ import annotations

from decimal import Decimal
from enum import IntEnum

from hip3.strategy.market_state import MarketState
from hip3.strategy.params import DetectorParams
from hip3.strategy.pricing import ZERO, ceil_to_decimals, float_to_decimal, floor_to_decimals

__all__ = [
    "EXIT_RUNNER",
    "EXIT_SCALPER",
    "EXIT_STANDARD",
    "DetectorMarket",
    "SideResult",
    "Skip",
    "base_threshold_bps",
    "confidence",
    "evaluate_side",
    "liquidity_factor",
    "strength",
]

EXIT_SCALPER = "scalper"
EXIT_STANDARD = "standard"
EXIT_RUNNER = "runner"
ORDER_CAP_HEADROOM = 0.99  # detector sizing stays under the executor's cap (valued at mark, not mid)


class Skip(IntEnum):
    """Why a side produced no signal (counted, never logged per message)."""

    NONE = 0
    NO_EDGE = 1
    DEDUP = 2
    SPREAD_CAP = 3
    BELOW_THRESHOLD = 4
    DIRECTION = 5
    ORACLE_STEP = 6
    CONSECUTIVE = 7
    QUOTE_LAG_FRESH = 8
    QUOTE_LAG_STALE = 9
    EDGE_VELOCITY = 10
    BASELINE = 11
    LIQUIDITY = 12
    CONFIDENCE = 13
    ZERO_SIZE = 14


class DetectorMarket:
    """Per-market detector state: EWMAs advance once per market-data update, not once per check."""

    __slots__ = (
        "baseline_bps",
        "baseline_n",
        "last_persist_ns_buy",
        "last_persist_ns_sell",
        "last_sig_oracle_buy",
        "last_sig_oracle_sell",
        "spread_ewma_bps",
        "threshold_bps",
    )

    def __init__(self, threshold_bps: float | None) -> None:
        self.threshold_bps = threshold_bps  # per-market override, else None
        self.spread_ewma_bps = 0.0  # 0 = no sample
        self.baseline_bps = 0.0
        self.baseline_n = 0
        self.last_sig_oracle_buy = 0.0
        self.last_sig_oracle_sell = 0.0
        self.last_persist_ns_buy = -(1 << 62)
        self.last_persist_ns_sell = -(1 << 62)

    def update_after_decision(self, m: MarketState, p: DetectorParams) -> None:
        """Advance the adaptive spread EWMA and the structural-gap baseline (valid BBO only)."""
        mid = (m.bid_px + m.ask_px) * 0.5
        spread = (m.ask_px - m.bid_px) / mid * 1e4
        e = self.spread_ewma_bps
        self.spread_ewma_bps = spread if e <= 0.0 else e + p.spread_ewma_alpha * (spread - e)
        gap = (m.oracle_px - mid) / m.oracle_px * 1e4
        self.baseline_bps = gap if self.baseline_n == 0 else self.baseline_bps + p.baseline_alpha * (
            gap - self.baseline_bps
        )
        self.baseline_n += 1


class SideResult:
    """A side that passed every filter: everything the signal record and the intent need."""

    __slots__ = (
        "baseline_gap_bps",
        "best_px",
        "book_sz",
        "coin",
        "confidence",
        "edge_above_baseline_bps",
        "exit_profile",
        "is_buy",
        "oracle_px",
        "raw_edge_bps",
        "size",
        "size_float",
        "threshold_bps",
        "velocity_bps",
    )

    def __init__(self, coin: str, is_buy: bool) -> None:
        self.coin = coin
        self.is_buy = is_buy
        self.raw_edge_bps = 0.0
        self.threshold_bps = 0.0
        self.oracle_px = 0.0
        self.best_px = 0.0
        self.book_sz = 0.0
        self.size_float = 0.0
        self.size: Decimal = ZERO
        self.confidence = 0.0
        self.velocity_bps = 0.0
        self.baseline_gap_bps = 0.0
        self.edge_above_baseline_bps = 0.0
        # Always Standard: the config refuses ``detector.exit_profile_enabled`` until the profile travels with
        # the position to the exit watcher.
        self.exit_profile = EXIT_STANDARD


def base_threshold_bps(p: DetectorParams, override_bps: float | None, round_trip_fee_bps: float) -> float:
    """The threshold's base: the round-trip taker fee (entry and exit legs, from the exchange's terms)
    + slippage + min edge; a market's configured threshold replaces that sum but never goes below the
    round-trip fee (an edge that does not pay both legs' fees is a loss)."""
    if override_bps is not None:
        return max(override_bps, round_trip_fee_bps)
    return round_trip_fee_bps + p.slippage_bps + p.min_edge_bps


def strength(net_edge_bps: float) -> str:
    return "weak" if net_edge_bps < 5.0 else "medium" if net_edge_bps < 15.0 else "strong"


def liquidity_factor(book_notional: float, p: DetectorParams) -> float:
    lo, hi = p.min_book_notional_usd, p.normal_book_notional_usd
    if book_notional <= lo:
        return 0.0
    if book_notional >= hi:
        return 1.0
    return (book_notional - lo) / (hi - lo)


def _vel_factor(v: float, m: float) -> float:
    if m <= 0.0 or v <= m:
        return 0.0
    return min(1.0, (v - m) / (3.0 * m))


def confidence(
    raw_edge: float, t: float, v: float, consec: int, liq: float, spread_ewma: float, p: DetectorParams
) -> float:
    """Confidence: weighted edge, velocity, consecutive moves, book depth and spread quality, in [0, 1]."""
    edge_f = min(1.0, max(0.0, (raw_edge - t) / (2.0 * t))) if t > 0.0 else 1.0
    vel_f = _vel_factor(v, p.min_oracle_change_bps)
    consec_f = min(consec, 3) / 3.0
    if spread_ewma <= 0.0 or t <= 0.0:
        spread_f = 0.5
    else:
        r = spread_ewma / t
        spread_f = 1.0 if r <= 1.0 else 0.0 if r >= 3.0 else (3.0 - r) / 2.0
    c = 0.30 * edge_f + 0.20 * vel_f + 0.20 * consec_f + 0.15 * liq + 0.15 * spread_f
    return min(1.0, max(0.0, c))


def size_order(
    book_sz: float,
    px: float,
    mid: float,
    liq: float,
    v: float,
    conf: float,
    size_mult: float,
    sz_decimals: int | None,
    p: DetectorParams,
) -> tuple[float, Decimal]:
    """Sizing -> (float size, floored Decimal size; ZERO if the signal must be dropped).

    ``size_mult`` = session size multiplier × spread-shock factor, applied BEFORE the minimum-notional
    boost. Without a spec (``sz_decimals`` None, observe mode) the Decimal is unfloored.
    """
    m = p.min_oracle_change_bps
    vel_mult = 1.0
    if p.oracle_velocity_sizing and v > m > 0.0:
        vel_mult = 1.0 + (p.velocity_size_cap - 1.0) * min(1.0, (v - m) / (3.0 * m))
    conf_mult = 0.5 + 0.5 * conf if p.confidence_sizing else 1.0
    size = book_sz * p.sizing_alpha * liq * vel_mult * conf_mult
    size = min(size, p.max_notional_usd * ORDER_CAP_HEADROOM / mid)
    size *= size_mult
    boost_px = min(mid, px)
    min_sz = p.min_order_notional_usd / boost_px
    if size < min_sz:
        size = min_sz
    if sz_decimals is None:
        return size, float_to_decimal(size) if size > 0.0 else ZERO
    out = floor_to_decimals(size, sz_decimals)
    if out * float_to_decimal(boost_px) < float_to_decimal(p.min_order_notional_usd):
        out = ceil_to_decimals(min_sz, sz_decimals)  # flooring must not undo the boost
    return size, out


def evaluate_side(
    m: MarketState,
    d: DetectorMarket,
    is_buy: bool,
    raw_edge: float,
    t: float,
    size_mult: float,
    sz_decimals: int | None,
    now_ns: int,
    p: DetectorParams,
    out: SideResult,
) -> Skip:
    """Filters 2–13 in order for one side; fills ``out`` and returns Skip.NONE on a signal."""
    o = m.oracle_px
    if p.signal_dedup and o == (d.last_sig_oracle_buy if is_buy else d.last_sig_oracle_sell):
        return Skip.DEDUP
    mid = (m.bid_px + m.ask_px) * 0.5
    if p.max_entry_spread_bps > 0.0 and (m.ask_px - m.bid_px) / mid * 1e4 > p.max_entry_spread_bps:
        return Skip.SPREAD_CAP
    if not (raw_edge > 0.0 and raw_edge >= t):
        return Skip.BELOW_THRESHOLD
    tr = m.tracker
    consec = tr.up if is_buy else tr.down
    v = tr.velocity_bps
    if p.oracle_direction_filter and consec <= 0:
        return Skip.DIRECTION
    if p.min_oracle_change_bps > 0.0 and v < p.min_oracle_change_bps:
        return Skip.ORACLE_STEP
    if consec < p.min_consecutive_oracle_moves:
        return Skip.CONSECUTIVE
    lag_ns = now_ns - m.oracle_change_ns
    if p.min_quote_lag_ms > 0 and lag_ns < p.min_quote_lag_ms * 1_000_000:
        return Skip.QUOTE_LAG_FRESH
    if p.max_quote_lag_ms > 0 and lag_ns > p.max_quote_lag_ms * 1_000_000:
        return Skip.QUOTE_LAG_STALE
    if p.edge_velocity_gate and v < p.min_edge_velocity_bps:
        return Skip.EDGE_VELOCITY
    eab = raw_edge
    if p.baseline_enabled and d.baseline_n >= p.baseline_min_samples:
        adj = max(0.0, d.baseline_bps) if is_buy else max(0.0, -d.baseline_bps)
        eab = raw_edge - adj
        if p.min_edge_above_baseline_bps > 0.0 and eab < p.min_edge_above_baseline_bps:
            return Skip.BASELINE
    px = m.ask_px if is_buy else m.bid_px
    book_sz = m.ask_sz if is_buy else m.bid_sz
    liq = liquidity_factor(book_sz * px, p)
    if liq <= 0.0:
        return Skip.LIQUIDITY
    conf = confidence(raw_edge, t, v, consec, liq, d.spread_ewma_bps, p)
    if p.min_confidence_entry > 0.0 and conf < p.min_confidence_entry:
        return Skip.CONFIDENCE
    size_f, size = size_order(book_sz, px, mid, liq, v, conf, size_mult, sz_decimals, p)
    if size <= ZERO:
        return Skip.ZERO_SIZE
    out.raw_edge_bps = raw_edge
    out.threshold_bps = t
    out.oracle_px = o
    out.best_px = px
    out.book_sz = book_sz
    out.size_float = size_f
    out.size = size
    out.confidence = conf
    out.velocity_bps = v
    out.baseline_gap_bps = d.baseline_bps if d.baseline_n else 0.0
    out.edge_above_baseline_bps = eab
    return Skip.NONE

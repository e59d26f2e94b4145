"""Exit rules for one position: precomputed price levels and the per-update checks.

Guards against:
* Quick profit and edge evaporation are checked BEFORE the minimum-holding stop, so they fire as
  soon as their own (shorter) holding time has passed: the edge decays in 1-3 s, and a 5 s minimum hold
  blocked these exits in the Rust original.
* Every mechanism is switched by its own flag (``mark_regression.enabled``, ``quick_profit_bps``,
  ``edge_evaporation``, ``oracle_exit.enabled``, ``trailing.enabled``, ``time_stop.enabled``); none is
  nested inside another's initialisation (the oracle exit was once silently off whenever mark regression
  was).
* Oracle reversal / catch-up count moves as deltas since entry (baselines recorded at open): moves before
  the entry once triggered an immediate false loss cut.
* The mark-regression time decay reaches its floor at the configured time stop (or an
  explicit ``decay_horizon_ms``), not a constant 30 s.
Hot path: levels are recomputed only when the oracle or the position changes; a market update costs a
few float comparisons and allocates nothing unless an exit fires.
"""

from __future__ import annotations

from decimal import Decimal

from hip3.strategy.detector import EXIT_RUNNER, EXIT_SCALPER
from hip3.strategy.oracle_tracker import OracleTracker
from hip3.strategy.params import ExitParams

__all__ = [
    "EDGE_EVAPORATION",
    "MARK_REGRESSION",
    "ORACLE_CATCHUP",
    "ORACLE_REVERSAL",
    "PROFILE_TIME_STOP",
    "QUICK_PROFIT",
    "TIME_STOP",
    "TRAILING_STOP",
    "ExitPosition",
    "ExitRules",
]

QUICK_PROFIT = "quick_profit"
EDGE_EVAPORATION = "edge_evaporation"
MARK_REGRESSION = "mark_regression"
PROFILE_TIME_STOP = "profile_time_stop"
TRAILING_STOP = "trailing_stop"
ORACLE_REVERSAL = "oracle_reversal"
ORACLE_CATCHUP = "oracle_catchup"
TIME_STOP = "time_stop"

_INF = float("inf")
_MS = 1_000_000


class ExitPosition:
    """The exit watcher's mirror of one position, with its baselines and precomputed levels."""

    __slots__ = (
        "against_moves_at_entry",
        "against_moves_to_exit",
        "asset",
        "busy",
        "coin",
        "entry_edge_bps",
        "entry_ns",
        "entry_px",
        "evaporation_px",
        "has_baseline",
        "is_long",
        "oracle_px_at_entry",
        "profile",
        "profile_stop_ns",
        "quick_profit_px",
        "regression_band_px",
        "regression_oracle_px",
        "size",
        "small_loss_px",
        "trail_activation_bps",
        "trail_armed",
        "trail_best_bps",
        "trail_gap_bps",
        "with_moves_at_entry",
        "with_moves_to_exit",
    )

    def __init__(
        self, coin: str, asset: int, is_long: bool, size: Decimal, entry_px: float, entry_ns: int,
        entry_edge_bps: float, profile: str,
    ) -> None:
        self.coin = coin
        self.asset = asset
        self.is_long = is_long
        self.size = size
        self.entry_px = entry_px
        self.entry_ns = entry_ns
        self.entry_edge_bps = entry_edge_bps
        self.profile = profile
        self.busy = False  # a flatten is claimed / pending for this market: no evaluation
        self.has_baseline = False
        self.with_moves_at_entry = 0
        self.against_moves_at_entry = 0
        self.oracle_px_at_entry = 0.0
        self.trail_best_bps = -_INF
        self.trail_armed = False
        self.trail_activation_bps = _INF
        self.trail_gap_bps = _INF
        self.against_moves_to_exit = 0
        self.with_moves_to_exit = 0
        self.profile_stop_ns = 0
        self.quick_profit_px = _INF if is_long else -_INF
        self.evaporation_px = _INF if is_long else -_INF
        self.small_loss_px = entry_px
        self.regression_oracle_px = 0.0
        self.regression_band_px = -1.0  # < 0: mark regression off or oracle unknown


class ExitRules:
    """Parameter-derived constants and the checks. One instance per exit watcher."""

    __slots__ = (
        "book_exit_slip",
        "decay",
        "decay_floor",
        "decay_span_ns",
        "decay_start_ns",
        "evaporation_min_ns",
        "min_hold_ns",
        "oracle_min_hold_ns",
        "oracle_slip",
        "p",
        "quick_profit_min_ns",
        "time_slip",
        "time_stop_ns",
    )

    def __init__(self, p: ExitParams) -> None:
        self.p = p
        mr = p.mark_regression
        self.quick_profit_min_ns = mr.quick_profit_min_holding_ms * _MS
        self.evaporation_min_ns = mr.edge_evap_min_holding_ms * _MS
        self.min_hold_ns = mr.min_holding_time_ms * _MS
        self.decay = mr.time_decay
        self.decay_start_ns = mr.decay_start_ms * _MS
        horizon_ms = mr.decay_horizon_ms or p.time_stop.threshold_ms
        self.decay_span_ns = max(0, horizon_ms - mr.decay_start_ms) * _MS
        self.decay_floor = mr.min_decay_factor
        self.oracle_min_hold_ns = p.oracle_exit.min_holding_time_ms * _MS
        self.time_stop_ns = p.time_stop.threshold_ms * _MS
        self.book_exit_slip = mr.slippage_bps / 1e4
        self.oracle_slip = p.oracle_exit.slippage_bps / 1e4
        self.time_slip = p.time_stop.slippage_bps / 1e4

    # ---- precomputation (position open/change, oracle change) -----------------------------------

    def init_position(self, pos: ExitPosition) -> None:
        """Thresholds that depend only on the position: quick-profit/small-loss levels, move counts."""
        p = self.p
        mr = p.mark_regression
        e = pos.entry_px
        if mr.quick_profit_bps > 0.0 and e > 0.0:
            d = e * mr.quick_profit_bps / 1e4
            pos.quick_profit_px = e + d if pos.is_long else e - d
        else:
            pos.quick_profit_px = _INF if pos.is_long else -_INF
        d = e * mr.min_loss_exit_bps / 1e4
        pos.small_loss_px = e - d if pos.is_long else e + d  # hold inside (small_loss_px, entry) for a long
        oe = p.oracle_exit
        n = oe.exit_against_moves
        if pos.profile == EXIT_RUNNER:
            n += 1
        elif pos.profile == EXIT_SCALPER:
            n = max(1, n - 1)
        if oe.dynamic_thresholds and pos.entry_edge_bps >= oe.high_edge_bps:
            n += 1
        pos.against_moves_to_exit = n
        pos.with_moves_to_exit = oe.exit_with_moves
        tr = p.trailing
        if pos.profile == EXIT_RUNNER:
            pos.trail_activation_bps, pos.trail_gap_bps = tr.runner_activation_bps, tr.runner_trail_bps
        elif pos.profile == EXIT_SCALPER:
            pos.trail_activation_bps, pos.trail_gap_bps = _INF, _INF
        else:
            pos.trail_activation_bps, pos.trail_gap_bps = tr.activation_bps, tr.trail_bps
        if pos.profile == EXIT_SCALPER:
            pos.profile_stop_ns = oe.scalper_time_stop_ms * _MS
        elif pos.profile == EXIT_RUNNER:
            pos.profile_stop_ns = oe.runner_time_stop_ms * _MS
        else:
            pos.profile_stop_ns = 0

    def set_baseline(self, pos: ExitPosition, tracker: OracleTracker) -> None:
        """Record the entry baseline: counts and oracle at open. Needs a known oracle."""
        if tracker.last_px <= 0.0:
            return
        pos.with_moves_at_entry = tracker.with_count(pos.is_long)
        pos.against_moves_at_entry = tracker.against_count(pos.is_long)
        pos.oracle_px_at_entry = tracker.last_px
        pos.has_baseline = True

    def on_oracle(self, pos: ExitPosition, oracle_px: float) -> None:
        """Recompute the oracle-dependent levels (edge evaporation, mark regression)."""
        mr = self.p.mark_regression
        if oracle_px <= 0.0:
            return
        if mr.edge_evaporation:
            d = oracle_px * mr.edge_evap_threshold_bps / 1e4
            pos.evaporation_px = oracle_px - d if pos.is_long else oracle_px + d
        if mr.enabled:
            base = mr.exit_threshold_bps
            if mr.entry_edge_scaling and pos.entry_edge_bps > 0.0:
                base = max(base, pos.entry_edge_bps * mr.entry_edge_scale_factor)
            pos.regression_oracle_px = oracle_px
            pos.regression_band_px = oracle_px * base / 1e4

    # ---- checks ---------------------------------------------------------------------------------

    def book_exit(self, pos: ExitPosition, bid_px: float, ask_px: float, now_ns: int) -> str | None:
        """The fast exits in order (quick profit, edge evaporation, mark regression); the exit reason or
        None. ``bid_px``/``ask_px`` must be a valid book (the caller checks)."""
        held_ns = now_ns - pos.entry_ns
        if pos.is_long:
            if bid_px >= pos.quick_profit_px and held_ns >= self.quick_profit_min_ns:
                return QUICK_PROFIT
            if ask_px >= pos.evaporation_px and held_ns >= self.evaporation_min_ns:
                return EDGE_EVAPORATION
            if held_ns < self.min_hold_ns or pos.regression_band_px < 0.0:
                return None
            if (bid_px >= pos.regression_oracle_px - pos.regression_band_px * self._decay(held_ns)
                    and not pos.small_loss_px < bid_px < pos.entry_px):
                return MARK_REGRESSION
            return None
        if ask_px <= pos.quick_profit_px and held_ns >= self.quick_profit_min_ns:
            return QUICK_PROFIT
        if bid_px <= pos.evaporation_px and held_ns >= self.evaporation_min_ns:
            return EDGE_EVAPORATION
        if held_ns < self.min_hold_ns or pos.regression_band_px < 0.0:
            return None
        if (ask_px <= pos.regression_oracle_px + pos.regression_band_px * self._decay(held_ns)
                and not pos.entry_px < ask_px < pos.small_loss_px):
            return MARK_REGRESSION
        return None

    def _decay(self, held_ns: int) -> float:
        if not self.decay or held_ns <= self.decay_start_ns:
            return 1.0
        span = self.decay_span_ns
        if span <= 0:
            return self.decay_floor
        f = 1.0 - (1.0 - self.decay_floor) * (held_ns - self.decay_start_ns) / span
        return f if f > self.decay_floor else self.decay_floor

    def oracle_exit(self, pos: ExitPosition, tracker: OracleTracker, oracle_px: float,
                    now_ns: int) -> str | None:
        """The oracle exits in order (profile time stop, trailing, reversal, catch-up); needs the entry baseline."""
        if not pos.has_baseline:
            return None
        p = self.p
        trailing = p.trailing.enabled and pos.trail_gap_bps < _INF
        if trailing:
            o0 = pos.oracle_px_at_entry
            pnl_bps = (oracle_px - o0) / o0 * 1e4 if pos.is_long else (o0 - oracle_px) / o0 * 1e4
            if pnl_bps > pos.trail_best_bps:
                pos.trail_best_bps = pnl_bps
            if pos.trail_best_bps >= pos.trail_activation_bps:
                pos.trail_armed = True
        held_ns = now_ns - pos.entry_ns
        if held_ns < self.oracle_min_hold_ns:
            return None
        if pos.profile_stop_ns and held_ns >= pos.profile_stop_ns:
            return PROFILE_TIME_STOP
        if trailing and pos.trail_armed and pos.trail_best_bps - pnl_bps >= pos.trail_gap_bps:
            return TRAILING_STOP
        if p.oracle_exit.enabled:
            if tracker.against_count(pos.is_long) - pos.against_moves_at_entry >= pos.against_moves_to_exit:
                return ORACLE_REVERSAL
            if tracker.with_count(pos.is_long) - pos.with_moves_at_entry >= pos.with_moves_to_exit:
                return ORACLE_CATCHUP
        return None

    def time_stop(self, pos: ExitPosition, now_ns: int) -> bool:
        """The time stop: held strictly longer than the threshold."""
        return self.p.time_stop.enabled and now_ns - pos.entry_ns > self.time_stop_ns

"""§8 exit rules for one position: precomputed price levels and the per-update checks.

Guards against:
* B45 — quick profit and edge evaporation are checked BEFORE the minimum-holding stop, so they fire as
  soon as their own (shorter) holding time has passed.
* B34 — every mechanism is switched by its own flag (``mark_regression.enabled``, ``quick_profit_bps``,
  ``edge_evaporation``, ``oracle_exit.enabled``, ``trailing.enabled``, ``time_stop.enabled``); none is
  nested inside another's initialisation.
* B35 — oracle reversal / catch-up count moves as deltas since entry (baselines recorded at open).
* latent 15 — the mark-regression time decay reaches its floor at the configured time stop (or an
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
        "against0",
        "against_n",
        "asset",
        "busy",
        "coin",
        "entry_edge_bps",
        "entry_ns",
        "entry_px",
        "evap_level",
        "has_baseline",
        "is_long",
        "mr_o",
        "mr_ob",
        "oracle0",
        "profile",
        "profile_stop_ns",
        "qp_level",
        "size",
        "sl_level",
        "trail_act",
        "trail_armed",
        "trail_best",
        "trail_gap",
        "with0",
        "with_n",
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
        self.with0 = 0
        self.against0 = 0
        self.oracle0 = 0.0
        self.trail_best = -_INF
        self.trail_armed = False
        self.trail_act = _INF
        self.trail_gap = _INF
        self.against_n = 0
        self.with_n = 0
        self.profile_stop_ns = 0
        self.qp_level = _INF if is_long else -_INF
        self.evap_level = _INF if is_long else -_INF
        self.sl_level = entry_px
        self.mr_o = 0.0
        self.mr_ob = -1.0  # < 0: mark regression off or oracle unknown


class ExitRules:
    """Parameter-derived constants and the checks. One instance per exit watcher."""

    __slots__ = (
        "decay",
        "decay_floor",
        "decay_span_ns",
        "decay_start_ns",
        "evap_min_ns",
        "fast_slip",
        "min_hold_ns",
        "or_min_ns",
        "oracle_slip",
        "p",
        "qp_min_ns",
        "time_slip",
        "time_stop_ns",
    )

    def __init__(self, p: ExitParams) -> None:
        self.p = p
        mr = p.mark_regression
        self.qp_min_ns = mr.quick_profit_min_holding_ms * _MS
        self.evap_min_ns = mr.edge_evap_min_holding_ms * _MS
        self.min_hold_ns = mr.min_holding_time_ms * _MS
        self.decay = mr.time_decay
        self.decay_start_ns = mr.decay_start_ms * _MS
        horizon_ms = mr.decay_horizon_ms or p.time_stop.threshold_ms
        self.decay_span_ns = max(0, horizon_ms - mr.decay_start_ms) * _MS
        self.decay_floor = mr.min_decay_factor
        self.or_min_ns = p.oracle_exit.min_holding_time_ms * _MS
        self.time_stop_ns = p.time_stop.threshold_ms * _MS
        self.fast_slip = mr.slippage_bps / 1e4
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
            pos.qp_level = e + d if pos.is_long else e - d
        else:
            pos.qp_level = _INF if pos.is_long else -_INF
        d = e * mr.min_loss_exit_bps / 1e4
        pos.sl_level = e - d if pos.is_long else e + d  # hold inside (sl_level, entry) for a long
        oe = p.oracle_exit
        n = oe.exit_against_moves
        if pos.profile == EXIT_RUNNER:
            n += 1
        elif pos.profile == EXIT_SCALPER:
            n = max(1, n - 1)
        if oe.dynamic_thresholds and pos.entry_edge_bps >= oe.high_edge_bps:
            n += 1
        pos.against_n = n
        pos.with_n = oe.exit_with_moves
        tr = p.trailing
        if pos.profile == EXIT_RUNNER:
            pos.trail_act, pos.trail_gap = tr.runner_activation_bps, tr.runner_trail_bps
        elif pos.profile == EXIT_SCALPER:
            pos.trail_act, pos.trail_gap = _INF, _INF
        else:
            pos.trail_act, pos.trail_gap = tr.activation_bps, tr.trail_bps
        if pos.profile == EXIT_SCALPER:
            pos.profile_stop_ns = oe.scalper_time_stop_ms * _MS
        elif pos.profile == EXIT_RUNNER:
            pos.profile_stop_ns = oe.runner_time_stop_ms * _MS
        else:
            pos.profile_stop_ns = 0

    def set_baseline(self, pos: ExitPosition, tracker: OracleTracker) -> None:
        """Record the entry baseline (B35): counts and oracle at open. Needs a known oracle."""
        if tracker.last_px <= 0.0:
            return
        pos.with0 = tracker.with_count(pos.is_long)
        pos.against0 = tracker.against_count(pos.is_long)
        pos.oracle0 = tracker.last_px
        pos.has_baseline = True

    def on_oracle(self, pos: ExitPosition, o: float) -> None:
        """Recompute the oracle-dependent levels (edge evaporation, mark regression)."""
        mr = self.p.mark_regression
        if o <= 0.0:
            return
        if mr.edge_evaporation:
            d = o * mr.edge_evap_threshold_bps / 1e4
            pos.evap_level = o - d if pos.is_long else o + d
        if mr.enabled:
            base = mr.exit_threshold_bps
            if mr.entry_edge_scaling and pos.entry_edge_bps > 0.0:
                base = max(base, pos.entry_edge_bps * mr.entry_edge_scale_factor)
            pos.mr_o = o
            pos.mr_ob = o * base / 1e4

    # ---- checks ---------------------------------------------------------------------------------

    def fast(self, pos: ExitPosition, b: float, a: float, now_ns: int) -> str | None:
        """§8.1 in order; the exit reason or None. ``b``/``a`` must be a valid book (caller checks)."""
        t = now_ns - pos.entry_ns
        if pos.is_long:
            if b >= pos.qp_level and t >= self.qp_min_ns:
                return QUICK_PROFIT
            if a >= pos.evap_level and t >= self.evap_min_ns:
                return EDGE_EVAPORATION
            if t < self.min_hold_ns or pos.mr_ob < 0.0:
                return None
            if b >= pos.mr_o - pos.mr_ob * self._decay(t) and not pos.sl_level < b < pos.entry_px:
                return MARK_REGRESSION
            return None
        if a <= pos.qp_level and t >= self.qp_min_ns:
            return QUICK_PROFIT
        if b <= pos.evap_level and t >= self.evap_min_ns:
            return EDGE_EVAPORATION
        if t < self.min_hold_ns or pos.mr_ob < 0.0:
            return None
        if a <= pos.mr_o + pos.mr_ob * self._decay(t) and not pos.entry_px < a < pos.sl_level:
            return MARK_REGRESSION
        return None

    def _decay(self, t: int) -> float:
        if not self.decay or t <= self.decay_start_ns:
            return 1.0
        span = self.decay_span_ns
        if span <= 0:
            return self.decay_floor
        f = 1.0 - (1.0 - self.decay_floor) * (t - self.decay_start_ns) / span
        return f if f > self.decay_floor else self.decay_floor

    def oracle(self, pos: ExitPosition, tracker: OracleTracker, o: float, now_ns: int) -> str | None:
        """§8.2 in order (profile time stop, trailing, reversal, catch-up); needs the entry baseline."""
        if not pos.has_baseline:
            return None
        p = self.p
        trailing = p.trailing.enabled and pos.trail_gap < _INF
        if trailing:
            o0 = pos.oracle0
            pnl = (o - o0) / o0 * 1e4 if pos.is_long else (o0 - o) / o0 * 1e4
            if pnl > pos.trail_best:
                pos.trail_best = pnl
            if pos.trail_best >= pos.trail_act:
                pos.trail_armed = True
        t = now_ns - pos.entry_ns
        if t < self.or_min_ns:
            return None
        if pos.profile_stop_ns and t >= pos.profile_stop_ns:
            return PROFILE_TIME_STOP
        if trailing and pos.trail_armed and pos.trail_best - pnl >= pos.trail_gap:
            return TRAILING_STOP
        if p.oracle_exit.enabled:
            if tracker.against_count(pos.is_long) - pos.against0 >= pos.against_n:
                return ORACLE_REVERSAL
            if tracker.with_count(pos.is_long) - pos.with0 >= pos.with_n:
                return ORACLE_CATCHUP
        return None

    def time_stop(self, pos: ExitPosition, now_ns: int) -> bool:
        """§8.3: held strictly longer than the threshold."""
        return self.p.time_stop.enabled and now_ns - pos.entry_ns > self.time_stop_ns

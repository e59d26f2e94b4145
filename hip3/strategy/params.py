"""Strategy parameters (oracle tracker, gates, detector, exits), decoded from the config's sections.

Every parameter carries the Rust original's *seed default* (never its prod value): the default config
must be conservative. Unknown keys are refused (``forbid_unknown_fields``), ranges are checked by
``msgspec.Meta`` at decode, and blackout/session windows are validated as ``"HH:MM-HH:MM"`` (UTC) at
decode so a typo stops the start instead of silently never blocking (the blackout windows around the US
open are what keeps correlated opening losses out).

TOML layout: ``[oracle]``, ``[gates]``, ``[detector]``, ``[exits]`` with sub-tables
``[exits.mark_regression]``, ``[exits.oracle_exit]``, ``[exits.trailing]``, ``[exits.time_stop]``.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

# NonNegFloat, PosFloat, NonNegMs, PosMs are bounded above too (``hip3.bounds``): ``inf`` or a typo with
# a few zeros too many is refused at load instead of silently meaning "never".
from hip3.bounds import NonNegBps, NonNegFloat, NonNegMs, PosFloat, PosMs, PosUsd, SlippageBps

Alpha = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Multiplier = Annotated[float, msgspec.Meta(ge=1.0, le=1000.0)]
# A count of oracle moves or signals: beyond this the condition could never be met.
MoveCount = Annotated[int, msgspec.Meta(ge=1, le=1000)]
# How long an intent, or a look at market data, may be old: more than a minute is a stale price.
FreshMs = Annotated[int, msgspec.Meta(gt=0, le=60_000)]

_WINDOW_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
MS_PER_DAY = 86_400_000


def parse_window(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` (UTC) -> (start, end) in ms since midnight; ``[start, end)``, may wrap midnight.

    Raises ``ValueError`` naming the value on bad syntax or an empty window (start == end).
    """
    m = _WINDOW_RE.match(text)
    if m is None:
        raise ValueError(f"time window {text!r} is not HH:MM-HH:MM (UTC)")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start = (h1 * 60 + m1) * 60_000
    end = (h2 * 60 + m2) * 60_000
    if end > MS_PER_DAY:
        raise ValueError(f"time window {text!r}: end after 24:00")
    if start == end % MS_PER_DAY:
        raise ValueError(f"time window {text!r} is empty")
    return start, end % MS_PER_DAY


def in_window(tod_ms: int, window: tuple[int, int]) -> bool:
    """True if ``tod_ms`` (ms since UTC midnight) lies in ``[start, end)``; handles wrap past midnight."""
    start, end = window
    if start < end:
        return start <= tod_ms < end
    return tod_ms >= start or tod_ms < end


def _check_windows(windows: tuple[str, ...]) -> None:
    for w in windows:
        parse_window(w)


class _Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class OracleTrackerParams(_Params, frozen=True):
    """Oracle movement tracker (shared by entry and exit logic)."""

    # A move smaller than this is "unchanged": slow creeps never register as moves.
    min_move_bps: NonNegFloat = 2.0


class GateParams(_Params, frozen=True):
    """Per-market pre-trade risk gates (in evaluation order)."""

    # 1. Block if the last BBO was *received* longer ago than this; 0 disables.
    max_bbo_age_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 2000
    # 2. Block if the last activeAssetCtx was *received* longer ago than this (not since the price last
    # changed: a quiet oracle is not stale); missing ctx blocks.
    max_ctx_age_ms: FreshMs = 8000
    # 3. Latch a block per market when a bbo's exchange `time` goes backwards (until reconnect).
    time_regression_enabled: bool = True
    # 4. Block if |mark − mid| / mid exceeds this; 0 disables.
    max_mark_mid_divergence_bps: NonNegBps = 50.0
    # 5. Spread shock: per-market EWMA × multiplier = thr; block above 2·thr, reduce size above thr.
    spread_shock_multiplier: PosFloat = 3.0
    spread_ewma_alpha: Alpha = 0.05
    spread_shock_size_factor: Fraction = 0.2
    # 6. Block if open interest × mark ≥ this; 0 disables (the seed never loaded a cap).
    max_open_interest_usd: NonNegFloat = 0.0
    # 9. UTC blackout windows "HH:MM-HH:MM", [start, end), may wrap midnight. Seed default: none.
    blackout_windows_utc: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_windows(self.blackout_windows_utc)


class DetectorParams(_Params, frozen=True):
    """Dislocation detector: threshold, filters, sizing, confidence, correlation filter, persistence
    dedup and followup snapshots."""

    # Threshold base = the round-trip taker fee (2 x this account's fee on the market, read from the
    # exchange: hip3.account.market_terms) + slippage + min edge. ``taker_fee_bps`` is gone (a constant 4 bps
    # against a real HIP-3 taker fee of 9+ bps): setting it stops the start with that reason.
    taker_fee_bps: float | None = None
    slippage_bps: NonNegFloat = 2.0
    min_edge_bps: NonNegFloat = 5.0
    # Adaptive floor: T0 = max(base, spread EWMA (per market) × multiplier).
    adaptive_threshold: bool = False
    spread_threshold_multiplier: NonNegFloat = 1.5
    spread_ewma_alpha: Alpha = 0.05
    # Session multipliers (threshold ×, size ×) by UTC window.
    session_aware: bool = False
    market_open_window_utc: str = "14:30-16:00"
    market_open_threshold_mult: PosFloat = 2.0
    market_open_size_mult: PosFloat = 0.5
    us_active_window_utc: str = "16:00-21:00"
    us_active_threshold_mult: PosFloat = 1.5
    us_active_size_mult: PosFloat = 0.75
    # Short-side throttle and velocity weight.
    short_throttle: bool = False
    short_threshold_mult: Multiplier = 1.5
    velocity_weight: bool = False
    velocity_reference_bps: PosFloat = 10.0
    # Filters.
    signal_dedup: bool = True
    max_entry_spread_bps: NonNegFloat = 0.0
    oracle_direction_filter: bool = True
    # Compared with the windowed tracker's velocity, not with the previous evaluation (the oracle moves
    # every few seconds, the book 100 times a second: that change is ~0 on almost every check).
    min_oracle_change_bps: NonNegFloat = 3.0
    min_consecutive_oracle_moves: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 2
    min_quote_lag_ms: NonNegMs = 0
    max_quote_lag_ms: NonNegMs = 0
    edge_velocity_gate: bool = False
    min_edge_velocity_bps: NonNegFloat = 5.0
    baseline_enabled: bool = False
    baseline_alpha: Alpha = 0.001
    baseline_min_samples: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 100
    min_edge_above_baseline_bps: NonNegFloat = 0.0
    min_confidence_entry: Fraction = 0.0
    # Sizing.
    sizing_alpha: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.10
    max_notional_usd: PosUsd = 1000.0
    min_order_notional_usd: PosFloat = 11.0
    min_book_notional_usd: NonNegFloat = 500.0
    normal_book_notional_usd: PosFloat = 5000.0
    oracle_velocity_sizing: bool = False
    velocity_size_cap: Multiplier = 1.5
    confidence_sizing: bool = False
    # Exit profile (Scalper/Standard/Runner): refused while the exits cannot use it (below).
    exit_profile_enabled: bool = False
    # Correlation filter: at most this many same-side signals per evaluation cycle (strongest kept).
    correlation_filter: bool = False
    correlation_max_simultaneous: MoveCount = 3
    # Persistence dedup window (same market+side) and intent time-to-live.
    persist_dedup_window_ms: NonNegMs = 500
    entry_ttl_ms: FreshMs = 500
    # Followup snapshots after each persisted signal.
    observe_followups_ms: tuple[PosMs, ...] = (1000, 3000, 5000)

    def __post_init__(self) -> None:
        if self.taker_fee_bps is not None:
            raise ValueError(
                "detector.taker_fee_bps is no longer used: the fee in the threshold comes from the exchange "
                "(userFees, the market's deployer fee scale and growth mode; see [market_terms]); remove it")
        _check_windows((self.market_open_window_utc, self.us_active_window_utc))
        if self.normal_book_notional_usd <= self.min_book_notional_usd:
            raise ValueError("normal_book_notional_usd must be > min_book_notional_usd")
        if self.exit_profile_enabled:
            # The profile is computed with the signal but does not travel to the position yet (no field on
            # EntryIntent/OrderSubmitted/Position), so the exits would ignore it: refuse, don't pretend.
            raise ValueError("exit profiles are not wired to the exits yet; leave exit_profile_enabled = false")


class MarkRegressionParams(_Params, frozen=True):
    """Fast exits (every book update). Each mechanism has its own switch: none is nested in another's
    initialisation, so turning one off never silently disables another."""

    enabled: bool = True  # the mark-regression exit itself (step 4)
    exit_threshold_bps: NonNegFloat = 5.0
    check_interval_ms: FreshMs = 200
    min_holding_time_ms: NonNegMs = 1000
    # Quick profit take (bypasses the minimum hold); 0 disables.
    quick_profit_bps: NonNegFloat = 0.0
    quick_profit_min_holding_ms: NonNegMs = 500
    # Edge evaporation (bypasses the minimum hold).
    edge_evaporation: bool = False
    edge_evap_min_holding_ms: NonNegMs = 500
    edge_evap_threshold_bps: Annotated[float, msgspec.Meta(ge=-10_000.0, le=10_000.0)] = 2.0
    # Small-loss hold: skip mark regression when −min_loss < PnL < 0; 0 disables.
    min_loss_exit_bps: NonNegFloat = 0.0
    entry_edge_scaling: bool = False
    entry_edge_scale_factor: NonNegFloat = 0.5
    time_decay: bool = False
    decay_start_ms: NonNegMs = 5000
    min_decay_factor: Fraction = 0.2
    # Where the decay reaches its floor; 0 = the configured time stop, not a fixed 30 s.
    decay_horizon_ms: NonNegMs = 0
    # Reduce-only IOC at mark ± this (every exit's ``slippage_bps``): below 10,000, or a sell is priced at
    # or below zero and the exit can never leave.
    slippage_bps: SlippageBps = 50.0


class OracleExitParams(_Params, frozen=True):
    """Oracle-driven exits, counted as moves since entry (moves before the entry never count against
    the new position)."""

    enabled: bool = True
    min_holding_time_ms: NonNegMs = 1000
    exit_against_moves: MoveCount = 2
    exit_with_moves: MoveCount = 3
    dynamic_thresholds: bool = False
    high_edge_bps: NonNegFloat = 40.0
    # Profile time stops (only when the detector assigns exit profiles).
    scalper_time_stop_ms: PosMs = 5000
    runner_time_stop_ms: PosMs = 120_000
    slippage_bps: SlippageBps = 50.0


class TrailingParams(_Params, frozen=True):
    """Trailing stop on the oracle move since entry."""

    enabled: bool = False
    activation_bps: NonNegFloat = 5.0
    trail_bps: PosFloat = 3.0
    runner_activation_bps: NonNegFloat = 3.0
    runner_trail_bps: PosFloat = 2.0


class TimeStopParams(_Params, frozen=True):
    """Time stop (polling) and the reduce-only pending alert."""

    enabled: bool = True
    # The exit of last resort. At most an hour: a longer one would switch it off in practice for a
    # strategy that holds positions for seconds (``enabled = false`` says so openly).
    threshold_ms: Annotated[int, msgspec.Meta(gt=0, le=3_600_000)] = 30_000
    check_interval_ms: FreshMs = 1000
    slippage_bps: SlippageBps = 50.0
    reduce_only_timeout_ms: Annotated[int, msgspec.Meta(gt=0, le=600_000)] = 60_000


class ExitParams(_Params, frozen=True):
    """Exits and flatten claims."""

    mark_regression: MarkRegressionParams = MarkRegressionParams()
    oracle_exit: OracleExitParams = OracleExitParams()
    trailing: TrailingParams = TrailingParams()
    time_stop: TimeStopParams = TimeStopParams()
    # Flatten intents' time-to-live at the executor.
    exit_ttl_ms: FreshMs = 1000
    # A flatten claim with no terminal event after this long is released (warning counted): never strand.
    # At most ten minutes: a stuck claim blocks every exit of its market until it expires.
    claim_expiry_ms: Annotated[int, msgspec.Meta(gt=0, le=600_000)] = 15_000

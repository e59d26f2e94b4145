"""Per-market pre-trade risk gates, evaluated in order; the first block wins.

Guards against:
* Every piece of gate state is per market: the spread EWMA, the time-regression latch,
  the OI cap, the param-change and halt flags. The seed kept single global values (and several gates
  could never fire). Here the OI cap and time regression are fed by the actor; the param-change, halt
  and market-disabled gates have inputs (``trip_param_change``, ``set_halted``, ``set_disabled``) but
  nothing calls them yet: they need a periodic meta refresh, not built. Inert, as in the seed.
* The spread EWMA is fed only after gates 1–4 pass and only from a valid BBO (the caller
  evaluates only valid books), so a one-sided book can never blow it up (in the Rust original it could
  grow until the decimal type overflowed).
* Gate 5, the spread-shock "reduce size" verdict, is returned as a size factor, not ignored.
* Nothing is logged here (a block logged per market per message filled 400 MB of logs in hours):
  ``transitions`` collects (coin, old, new) whenever a market's verdict changes, so the actor logs only
  transitions and counts the rest.
A block only suppresses new entries in that market; it never touches open positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from hip3.strategy.market_state import MarketState
from hip3.strategy.params import MS_PER_DAY, GateParams, in_window, parse_window

__all__ = ["GateState", "GateVerdict", "Gates"]


class GateVerdict(IntEnum):
    """Outcome of the gates for one market. Only PASS and SPREAD_REDUCE allow entries."""

    PASS = 0
    SPREAD_REDUCE = 1  # passes, with the size factor applied
    NO_BBO = 10
    BBO_INVALID = 11
    BBO_STALE = 12
    CTX_MISSING = 13
    CTX_STALE = 14
    TIME_REGRESSION = 15
    MARK_MISSING = 16
    MARK_MID_DIVERGENCE = 17
    SPREAD_SHOCK = 18
    OI_CAP = 19
    PARAM_CHANGE = 20
    HALTED = 21
    BLACKOUT = 22
    MARKET_DISABLED = 23

    @property
    def blocks(self) -> bool:
        return self >= GateVerdict.NO_BBO


class GateState:
    """Per-market gate state (spread EWMA, operator/exchange flags, last verdict for transitions)."""

    __slots__ = ("disabled", "halted", "last_verdict", "param_changed", "size_factor", "spread_ewma_bps")

    def __init__(self) -> None:
        self.spread_ewma_bps = 0.0  # 0 = no sample yet (the first value initialises)
        self.param_changed = False
        self.halted = False
        self.disabled = False
        self.size_factor = 1.0
        self.last_verdict = GateVerdict.NO_BBO


class Gates:
    """The nine pre-trade gates (+ the market-health skip), with per-market state."""

    __slots__ = ("_blackouts", "blocked", "p", "states", "transitions")

    def __init__(self, params: GateParams, coins: Iterable[str]) -> None:
        self.p = params
        self.states: dict[str, GateState] = {c: GateState() for c in coins}
        self._blackouts = tuple(parse_window(w) for w in params.blackout_windows_utc)
        self.transitions: list[tuple[str, GateVerdict, GateVerdict]] = []
        self.blocked: dict[GateVerdict, int] = dict.fromkeys(GateVerdict, 0)

    # ---- inputs that trip gates 6–8 and the health skip -------------------------------------------

    def trip_param_change(self, coin: str) -> None:
        """Gate 7: tick/lot/fee/szDecimals changed for this market — block entries permanently."""
        st = self.states.get(coin)
        if st is not None:
            st.param_changed = True

    def set_halted(self, coin: str, halted: bool) -> None:
        """Gate 8: the market is halted/inactive (from a meta refresh)."""
        st = self.states.get(coin)
        if st is not None:
            st.halted = halted

    def set_disabled(self, coin: str, disabled: bool) -> None:
        """The market-health tracker (an entry-throttling gate) disabled/re-enabled this market."""
        st = self.states.get(coin)
        if st is not None:
            st.disabled = disabled

    def in_blackout(self, now_ms: int) -> bool:
        tod = now_ms % MS_PER_DAY
        return any(in_window(tod, w) for w in self._blackouts)

    # ---- evaluation -------------------------------------------------------------------------------

    def check(self, m: MarketState, now_ns: int, now_ms: int) -> GateVerdict:
        """Run the gates for one market; record the verdict, its count and any transition."""
        st = self.states[m.coin]
        v = self._check(m, st, now_ns, now_ms)
        self.blocked[v] += 1
        if v is not st.last_verdict:
            self.transitions.append((m.coin, st.last_verdict, v))
            st.last_verdict = v
        return v

    def _check(self, m: MarketState, st: GateState, now_ns: int, now_ms: int) -> GateVerdict:
        p = self.p
        st.size_factor = 1.0
        if not m.has_bbo:
            return GateVerdict.NO_BBO
        if not m.bbo_valid:
            return GateVerdict.BBO_INVALID
        # 1. BBO freshness by receive time.
        if p.max_bbo_age_ms > 0 and now_ns - m.bbo_recv_ns > p.max_bbo_age_ms * 1_000_000:
            return GateVerdict.BBO_STALE
        # 2. Ctx freshness by receive time, not by price change; a missing ctx blocks.
        if not m.has_ctx:
            return GateVerdict.CTX_MISSING
        if now_ns - m.ctx_recv_ns > p.max_ctx_age_ms * 1_000_000:
            return GateVerdict.CTX_STALE
        # 3. Exchange time went backwards on this market (latched until reconnect).
        if p.time_regression_enabled and m.time_regressed:
            return GateVerdict.TIME_REGRESSION
        mid = (m.bid_px + m.ask_px) * 0.5
        # 4. Mark–mid divergence (fail closed on a missing mark while the gate is on).
        if p.max_mark_mid_divergence_bps > 0.0:
            if m.mark_px <= 0.0:
                return GateVerdict.MARK_MISSING
            if abs(m.mark_px - mid) / mid * 1e4 > p.max_mark_mid_divergence_bps:
                return GateVerdict.MARK_MID_DIVERGENCE
        # 5. Spread shock: per-market EWMA, fed only here (gates 1–4 passed, valid BBO).
        spread = (m.ask_px - m.bid_px) / mid * 1e4
        ewma = st.spread_ewma_bps
        ewma = spread if ewma <= 0.0 else ewma + p.spread_ewma_alpha * (spread - ewma)
        st.spread_ewma_bps = ewma
        thr = ewma * p.spread_shock_multiplier
        reduce = False
        if spread > 2.0 * thr:
            return GateVerdict.SPREAD_SHOCK
        if spread > thr:
            reduce = True
        # 6. Open-interest cap (notional at mark, falling back to the oracle).
        if p.max_open_interest_usd > 0.0:
            px = m.mark_px if m.mark_px > 0.0 else m.oracle_px
            if m.open_interest * px >= p.max_open_interest_usd:
                return GateVerdict.OI_CAP
        # 7. Param change (permanent).  8. Halt.
        if st.param_changed:
            return GateVerdict.PARAM_CHANGE
        if st.halted:
            return GateVerdict.HALTED
        # 9. Blackout windows (UTC, [start, end), may wrap midnight).
        if self._blackouts and self.in_blackout(now_ms):
            return GateVerdict.BLACKOUT
        # After the gates: market-health skip.
        if st.disabled:
            return GateVerdict.MARKET_DISABLED
        if reduce:
            st.size_factor = self.p.spread_shock_size_factor
            return GateVerdict.SPREAD_REDUCE
        return GateVerdict.PASS

    def take_transitions(self) -> list[tuple[str, GateVerdict, GateVerdict]]:
        """Verdict changes since the last call (the actor logs these, and only these)."""
        out = self.transitions
        self.transitions = []
        return out

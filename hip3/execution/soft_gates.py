"""Entry-throttling soft gates, fed by ``PositionClosed`` events.

Guards against:

* A burst gate that counted signals later rejected by other gates. Here the burst gate is split
  into a read-only ``check`` and a ``record_executed`` that the executor calls only after *every* gate
  passed.
* Closes reported to these gates only from one racy path (as in the seed). Here every gate learns from
  ``on_position_closed``, which the position tracker emits exactly once per close, whichever path closed.
* A market disabled by market health that could never trade again, so never recover. Here it is
  re-probed after ``reprobe_after_ms`` (its outcome history cleared).

All times are epoch milliseconds passed in by the caller (``now_ms``); nothing here reads a clock.
PnL is net of fees (``pnl_usd − fees_usd`` of the close). The state survives an executor restart
(``export``/``restore``, ``hip3.execution.risk_state``): ``on_change`` is called after every recorded
event so that it is saved; what ``check`` changes (expired windows) follows from the time alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal

from hip3.execution.params import SoftGateParams
from hip3.execution.risk_state import SoftGatesState
from hip3.messages import PositionClosed

__all__ = ["SoftGates", "net_pnl_usd"]


def net_pnl_usd(closed: PositionClosed) -> Decimal:
    """The close's PnL after fees (what every soft gate and the hard stop count)."""
    return closed.pnl_usd - closed.fees_usd


class SoftGates:
    """State of executor gates 1b–1f (and market health); one instance per executor."""

    def __init__(self, params: SoftGateParams) -> None:
        self.params = params
        # hourly drawdown: fixed window that restarts once it has elapsed
        self._dd_window_start_ms: int | None = None
        self._dd_sum_usd = Decimal(0)
        # correlation cooldown
        self._close_times_ms: deque[int] = deque()
        self._corr_until_ms = 0
        # burst, per market
        self._burst_times_ms: dict[str, deque[int]] = {}
        self._burst_until_ms: dict[str, int] = {}
        # tilt guard
        self._losses_in_row = 0
        self._tilt_until_ms = 0
        # re-entry delay
        self._last_close_ms: dict[str, int] = {}
        # market health
        self._outcomes: dict[str, deque[Decimal]] = {}
        self._disabled_since_ms: dict[str, int] = {}
        self.on_change: Callable[[], None] = lambda: None

    def export(self) -> SoftGatesState:
        return SoftGatesState(
            dd_window_start_ms=self._dd_window_start_ms, dd_sum_usd=self._dd_sum_usd,
            close_times_ms=tuple(self._close_times_ms), corr_until_ms=self._corr_until_ms,
            burst_times_ms={c: tuple(t) for c, t in self._burst_times_ms.items() if t},
            burst_until_ms=dict(self._burst_until_ms), losses_in_row=self._losses_in_row,
            tilt_until_ms=self._tilt_until_ms, last_close_ms=dict(self._last_close_ms),
            outcomes={c: tuple(o) for c, o in self._outcomes.items()},
            disabled_since_ms=dict(self._disabled_since_ms))

    def restore(self, st: SoftGatesState) -> None:
        """Continue from a saved state (an executor restart)."""
        self._dd_window_start_ms = st.dd_window_start_ms
        self._dd_sum_usd = st.dd_sum_usd
        self._close_times_ms = deque(st.close_times_ms)
        self._corr_until_ms = st.corr_until_ms
        self._burst_times_ms = {c: deque(t) for c, t in st.burst_times_ms.items()}
        self._burst_until_ms = dict(st.burst_until_ms)
        self._losses_in_row = st.losses_in_row
        self._tilt_until_ms = st.tilt_until_ms
        self._last_close_ms = dict(st.last_close_ms)
        maxlen = self.params.market_health.window_trades
        self._outcomes = {c: deque(o, maxlen=maxlen) for c, o in st.outcomes.items()}
        self._disabled_since_ms = dict(st.disabled_since_ms)
        self.on_change()

    # ------------------------------------------------------------------ checks (read-only)

    def check(self, coin: str, edge_bps: float, now_ms: int) -> str | None:
        """Gates 1b–1f then market health, in order; the first blocking gate's reason, else None.

        Read-only apart from expiring windows; ``record_executed`` records the burst signal.
        """
        p = self.params
        if p.hourly_drawdown.enabled:
            self._roll_drawdown(now_ms)
            if self._dd_sum_usd <= -Decimal(str(p.hourly_drawdown.max_loss_usd)):
                return f"MaxDrawdown: hourly net pnl {self._dd_sum_usd} <= -{p.hourly_drawdown.max_loss_usd}"
        if p.correlation_cooldown.enabled and now_ms < self._corr_until_ms:
            return f"CorrelationCooldown: {self._corr_until_ms - now_ms} ms left"
        if p.burst.enabled:
            reason = self._check_burst(coin, edge_bps, now_ms)
            if reason is not None:
                return reason
        if p.tilt_guard.enabled and now_ms < self._tilt_until_ms:
            return f"TiltGuard: {self._tilt_until_ms - now_ms} ms left"
        if p.reentry_delay.enabled:
            last = self._last_close_ms.get(coin)
            if last is not None and now_ms < last + p.reentry_delay.delay_ms:
                return f"ReEntryDelay: {last + p.reentry_delay.delay_ms - now_ms} ms left for {coin}"
        if p.market_health.enabled and self.market_disabled(coin, now_ms):
            return f"MarketHealth: {coin} disabled (score {self.health_score(coin):.2f})"
        return None

    def _check_burst(self, coin: str, edge_bps: float, now_ms: int) -> str | None:
        bp = self.params.burst
        if bp.bypass_edge_bps > 0 and edge_bps >= bp.bypass_edge_bps:
            return None
        until = self._burst_until_ms.get(coin, 0)
        if now_ms < until:
            return f"BurstSignal: {coin} in cooldown for {until - now_ms} ms"
        times = self._burst_times_ms.get(coin)
        if times is not None:
            while times and times[0] <= now_ms - bp.window_ms:
                times.popleft()
            if len(times) >= bp.max_signals:
                return f"BurstSignal: {coin} has {len(times)} executed signals in window"
        return None

    def check_concurrency(
        self, coin: str, is_long: bool, positions: Iterable[tuple[str, bool]]
    ) -> str | None:
        """Correlation-weighted concurrency, replacing the plain count when enabled.

        Each position (the proposed one included) weighs ``group_weight`` if ≥ 2 same-direction
        positions share its correlation group, else 1; reject if the sum exceeds ``max_weight``.
        """
        cp = self.params.correlation_concurrency
        allpos = [*positions, (coin, is_long)]
        counts: dict[tuple[str, bool], int] = {}
        for c, side in allpos:
            g = cp.groups.get(c)
            if g is not None:
                counts[(g, side)] = counts.get((g, side), 0) + 1
        total = 0.0
        for c, side in allpos:
            g = cp.groups.get(c)
            total += cp.group_weight if g is not None and counts[(g, side)] >= 2 else 1.0
        if total > cp.max_weight:
            return f"MaxConcurrentPositions: correlation-weighted {total:.2f} > {cp.max_weight}"
        return None

    # ------------------------------------------------------------------ recording

    def record_executed(self, coin: str, now_ms: int) -> None:
        """Record a signal that passed ALL executor gates (never one a later gate rejected); may start the
        market's cooldown."""
        bp = self.params.burst
        if not bp.enabled:
            return
        times = self._burst_times_ms.setdefault(coin, deque())
        while times and times[0] <= now_ms - bp.window_ms:
            times.popleft()
        times.append(now_ms)
        if len(times) >= bp.max_signals:
            self._burst_until_ms[coin] = now_ms + bp.cooldown_ms
            times.clear()
        self.on_change()

    def on_position_closed(self, closed: PositionClosed, now_ms: int) -> None:
        """Feed one close (exactly one per close, from the position tracker) to every gate."""
        p = self.params
        pnl = net_pnl_usd(closed)
        # hourly drawdown
        self._roll_drawdown(now_ms)
        self._dd_sum_usd += pnl
        # correlation cooldown
        cc = p.correlation_cooldown
        self._close_times_ms.append(now_ms)
        while self._close_times_ms and self._close_times_ms[0] <= now_ms - cc.window_ms:
            self._close_times_ms.popleft()
        if len(self._close_times_ms) >= cc.max_closes:
            self._corr_until_ms = now_ms + cc.cooldown_ms
            self._close_times_ms.clear()
        # tilt guard
        if pnl < 0:
            self._losses_in_row += 1
            if self._losses_in_row >= p.tilt_guard.max_consecutive_losses:
                self._tilt_until_ms = now_ms + p.tilt_guard.cooldown_ms
                self._losses_in_row = 0
        else:
            self._losses_in_row = 0
        # re-entry delay
        self._last_close_ms[closed.coin] = now_ms
        # market health
        mh = p.market_health
        outcomes = self._outcomes.setdefault(closed.coin, deque(maxlen=mh.window_trades))
        outcomes.append(pnl)
        score = self.health_score(closed.coin)
        if len(outcomes) >= mh.min_samples:
            if score < mh.disable_below_score and closed.coin not in self._disabled_since_ms:
                self._disabled_since_ms[closed.coin] = now_ms
            elif score >= mh.enable_at_score:
                self._disabled_since_ms.pop(closed.coin, None)
        self.on_change()

    def _roll_drawdown(self, now_ms: int) -> None:
        start = self._dd_window_start_ms
        if start is None or now_ms - start >= self.params.hourly_drawdown.window_ms:
            self._dd_window_start_ms = now_ms
            self._dd_sum_usd = Decimal(0)

    # ------------------------------------------------------------------ market health

    def health_score(self, coin: str) -> float:
        """0.6·win rate + 0.4·pnl quality over the rolling outcomes; 1.0 without data."""
        mh = self.params.market_health
        outcomes = self._outcomes.get(coin)
        if not outcomes:
            return 1.0
        n = len(outcomes)
        win_rate = sum(1 for x in outcomes if x > 0) / n
        avg = float(sum(outcomes, Decimal(0))) / n
        quality = 1.0 if avg >= 0 else max(0.0, 1.0 + avg / mh.pnl_floor_usd)
        return mh.win_rate_weight * win_rate + mh.pnl_weight * quality

    def market_disabled(self, coin: str, now_ms: int) -> bool:
        """True while market health has the market disabled; re-probes after ``reprobe_after_ms``."""
        since = self._disabled_since_ms.get(coin)
        if since is None:
            return False
        if now_ms - since >= self.params.market_health.reprobe_after_ms:
            # Re-probe: forget the history so the market must earn its disablement again.
            del self._disabled_since_ms[coin]
            self._outcomes.pop(coin, None)
            return False
        return True

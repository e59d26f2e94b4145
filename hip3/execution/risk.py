"""Hard-stop triggers, fed by REAL events.

Guards against dead triggers: the seed fed only rejection events into its risk monitor, so its loss,
consecutive-loss, flatten-failure and slippage triggers could never fire. Here:

* realised PnL (since start, or since the last reset) and consecutive losses come from ``PositionClosed``
  (net of fees, one event per close);
* flatten failures from flatten/hard-stop orders that were rejected non-benignly, timed out, or gave up;
* non-benign *exchange* rejections are counted per fixed hour bucket (benign ones never count;
  local send failures and drops are not exchange rejections);
* slippage from entry fills ("realised slippage = expected − actual edge"): the signal's edge
  against the edge of the fill's average price over the oracle when the fill is known. Measured against
  the IOC's limit price it could never fire: a buy never fills above its limit;
* an external trigger (e.g. the supervisor's restart limit) latches the same way;
* the daily loss cap: realised PnL net of fees since 00:00 UTC (``now_ms // 86_400_000`` with the
  injected clock) at or below ``-daily_loss_cap_usd`` latches, and ``entry_block`` refuses entries for
  the rest of that UTC day, also after the operator's reset (which re-arms everything else): a day's
  budget is spent. Unrealised PnL does not count, deliberately: positions live seconds (the time stop),
  the executor's notional caps bound what is open, and a mark-to-market trigger would latch and flatten
  on a momentary mark spike that the exits ride out; it could not be restored after a restart either
  (marks are not durable). The worst day is thus about the cap plus the loss of what is open at the
  moment it trips.

First trigger wins: its reason is kept and returned once; later triggers are ignored until ``reset``
(the operator's reset of the hard stop). ``now_ms`` is passed in; nothing here reads a clock. The state
survives an executor restart (``export``/``restore``, ``hip3.execution.risk_state``): ``on_change`` is
called after every change so that it is saved.
"""

from __future__ import annotations

import datetime as _dt
from collections import deque
from collections.abc import Callable
from decimal import Decimal

from hip3.execution.params import RiskParams
from hip3.execution.risk_catchup import close_key
from hip3.execution.risk_state import RiskMonitorState
from hip3.execution.soft_gates import net_pnl_usd
from hip3.messages import OrderRejected, PositionClosed

__all__ = ["MS_PER_DAY", "RiskMonitor"]

MS_PER_DAY = 86_400_000
_RECENT_CLOSES = 256  # keys remembered: far more closes than the caps allow in the catch-up's lookback


def _utc_date(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()


def _nothing() -> None:
    pass


class RiskMonitor:
    """Returns a hard-stop reason the first time a trigger fires (the actor then sends a HardStopRequest)."""

    def __init__(self, params: RiskParams) -> None:
        self.params = params
        self.reason: str | None = None
        self.realized_usd = Decimal(0)
        self.consecutive_losses = 0
        self.flatten_failures = 0
        self._bucket = -1
        self.rejections_in_bucket = 0
        self.slippage_streak = 0
        self._max_loss = Decimal(str(params.max_loss_usd))
        self._daily_cap = Decimal(str(params.daily_loss_cap_usd))
        self.day = -1  # the UTC day of ``daily_realized_usd``
        self.daily_realized_usd = Decimal(0)
        # Set when the saved state could not be used: entries are refused until the operator's reset.
        self.unusable: str | None = None
        self.on_change: Callable[[], None] = _nothing
        self._recent_closes: deque[str] = deque(maxlen=_RECENT_CLOSES)

    def reset(self) -> None:
        """Operator reset of the hard stop: every trigger is armed again. The reason, the loss,
        flatten-failure, rejection and slippage streaks are cleared and the realised PnL counts again
        from zero ("since reset"), so the loss that latched the stop does not re-latch it at once. The
        day's tally is kept: the daily cap is a budget for the UTC day, not a latch."""
        self.reason = None
        self.realized_usd = Decimal(0)
        self.consecutive_losses = 0
        self.flatten_failures = 0
        self._bucket = -1
        self.rejections_in_bucket = 0
        self.slippage_streak = 0
        self.on_change()

    def export(self) -> RiskMonitorState:
        return RiskMonitorState(
            reason=self.reason, realized_usd=self.realized_usd, consecutive_losses=self.consecutive_losses,
            flatten_failures=self.flatten_failures, rejection_bucket=self._bucket,
            rejections_in_bucket=self.rejections_in_bucket, slippage_streak=self.slippage_streak, day=self.day,
            daily_realized_usd=self.daily_realized_usd, recent_closes=tuple(self._recent_closes))

    def restore(self, st: RiskMonitorState) -> None:
        """Continue from a saved state (an executor restart)."""
        self.reason = st.reason
        self.realized_usd = st.realized_usd
        self.consecutive_losses = st.consecutive_losses
        self.flatten_failures = st.flatten_failures
        self._bucket = st.rejection_bucket
        self.rejections_in_bucket = st.rejections_in_bucket
        self.slippage_streak = st.slippage_streak
        self.day = st.day
        self.daily_realized_usd = st.daily_realized_usd
        self._recent_closes = deque(st.recent_closes, maxlen=_RECENT_CLOSES)
        self.on_change()

    def counted(self, key: str) -> bool:
        """Was the close with this ``close_key`` counted already (here or before a restart)?"""
        return key in self._recent_closes

    def first_count(self, closed: PositionClosed) -> bool:
        """True the first time a close is seen (then it is remembered); False for the same close again (read
        back from the recorder's journal at start and also delivered on the bus). A close without a time
        cannot be keyed: it always counts."""
        if closed.closed_ms <= 0:
            return True
        key = close_key(closed)
        if key in self._recent_closes:
            return False
        self._recent_closes.append(key)
        return True

    def _fire(self, reason: str) -> str | None:
        if self.reason is not None:
            return None
        self.reason = reason
        self.on_change()
        return reason

    def _roll_day(self, now_ms: int) -> None:
        """A new UTC day starts a new daily tally (a clock that went back keeps the later day's)."""
        day = now_ms // MS_PER_DAY
        if day > self.day:
            self.day = day
            self.daily_realized_usd = Decimal(0)

    def entry_block(self, now_ms: int) -> tuple[str, str] | None:
        """(reason code, detail) while entries must be refused whatever the latch says: the day's loss
        reached the cap (until 00:00 UTC), or the saved state could not be used (until the reset)."""
        if self.unusable is not None:
            return "RiskStateUnusable", self.unusable
        if self.daily_realized_usd <= -self._daily_cap and now_ms // MS_PER_DAY <= self.day:
            return ("DailyLossCap", f"realised pnl on {_utc_date(self.day)} (UTC) {self.daily_realized_usd} "
                    f"<= -{self._daily_cap}; entries resume at 00:00 UTC")
        return None

    def on_position_closed(self, closed: PositionClosed, now_ms: int | None = None) -> str | None:
        """One close (net of fees). ``now_ms`` (the executor's clock) decides the UTC day; without it,
        the close's own time."""
        pnl = net_pnl_usd(closed)
        self._roll_day(closed.closed_ms if now_ms is None else now_ms)
        self.daily_realized_usd += pnl
        self.realized_usd += pnl
        self.on_change()
        if pnl < 0:
            self.consecutive_losses += 1
        else:
            self.consecutive_losses = 0
        # Flatten failures count in a row: any close means flattening works again.
        self.flatten_failures = 0
        if self.realized_usd < -self._max_loss:
            return self._fire(f"max_loss: realised pnl {self.realized_usd} < -{self._max_loss}")
        if self.daily_realized_usd <= -self._daily_cap:
            return self._fire(f"daily_loss: realised pnl on {_utc_date(self.day)} (UTC) {self.daily_realized_usd} "
                              f"<= -{self._daily_cap}; entries refused until 00:00 UTC")
        if self.consecutive_losses > self.params.max_consecutive_failures:
            return self._fire(
                f"consecutive_losses: {self.consecutive_losses} > {self.params.max_consecutive_failures}"
            )
        return None

    def on_order_rejected(self, rej: OrderRejected, now_ms: int, *, is_flatten: bool = False) -> str | None:
        """Every terminal rejection of our orders. ``is_flatten``: a flatten or hard-stop order."""
        if rej.benign:
            return None  # routine rejections (IOC no match, reduce-only, minimum) never count
        if is_flatten:
            reason = self.on_flatten_failed(rej.reason)
            if reason is not None:
                return reason
        if not rej.reason.startswith("exchange:"):
            return None
        bucket = now_ms // self.params.rejection_bucket_ms
        if bucket != self._bucket:
            self._bucket = bucket
            self.rejections_in_bucket = 0
        self.rejections_in_bucket += 1
        self.on_change()
        if self.rejections_in_bucket > self.params.max_rejections_per_bucket:
            return self._fire(
                f"rejections: {self.rejections_in_bucket} non-benign in one bucket"
                f" > {self.params.max_rejections_per_bucket}"
            )
        return None

    def on_flatten_failed(self, why: str) -> str | None:
        """A flatten order failed (non-benign rejection, timeout, requeue budget exhausted)."""
        self.flatten_failures += 1
        self.on_change()
        if self.flatten_failures > self.params.max_flatten_failed:
            return self._fire(
                f"flatten_failed: {self.flatten_failures} > {self.params.max_flatten_failed} ({why})"
            )
        return None

    def on_entry_filled(self, expected_edge_bps: float, avg_px: Decimal, is_buy: bool,
                        oracle_px: float) -> str | None:
        """Realised slippage of an entry fill: the signal's edge minus the edge actually captured, the
        fill's average price against ``oracle_px`` (the oracle when the fill is known; a buy's edge is
        ``(oracle − px) / oracle``). Positive is adverse: the oracle came back, or the fill was worse.
        An unknown oracle (<= 0) or price leaves the streak as it is."""
        if not oracle_px > 0.0 or avg_px <= 0:
            return None
        px = float(avg_px)
        actual_bps = ((oracle_px - px) if is_buy else (px - oracle_px)) / oracle_px * 10_000
        slip_bps = expected_edge_bps - actual_bps
        before = self.slippage_streak
        if slip_bps > self.params.max_slippage_bps:
            self.slippage_streak += 1
        else:
            self.slippage_streak = 0
        if self.slippage_streak != before:
            self.on_change()
        if self.slippage_streak >= self.params.slippage_consecutive_trades:
            return self._fire(
                f"slippage: {self.slippage_streak} consecutive entries > {self.params.max_slippage_bps} bps"
            )
        return None

    def on_external(self, reason: str) -> str | None:
        """Any other trigger (supervisor restart limit, operator): latches like the others."""
        return self._fire(f"external: {reason}")

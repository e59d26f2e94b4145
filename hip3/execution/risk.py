"""Hard-stop triggers (strategy.md §11), fed by REAL events.

Guards against latent 5: the seed fed only rejection events into its risk monitor, so its loss,
consecutive-loss, flatten-failure and slippage triggers could never fire. Here:

* realised PnL (since start, or since the last reset) and consecutive losses come from ``PositionClosed``
  (net of fees, one event per close);
* flatten failures from flatten/hard-stop orders that were rejected non-benignly, timed out, or gave up;
* non-benign *exchange* rejections are counted per fixed hour bucket (B23: benign ones never count;
  local send failures and drops are not exchange rejections);
* slippage from entry fills (§11 "realised slippage = expected − actual edge"): the signal's edge
  against the edge of the fill's average price over the oracle when the fill is known. Measured against
  the IOC's limit price (session 1) it could never fire: a buy never fills above its limit;
* an external trigger (e.g. the supervisor's restart limit) latches the same way.

First trigger wins: its reason is kept and returned once; later triggers are ignored until ``reset``
(the operator's reset of the hard stop). ``now_ms`` is passed in; nothing here reads a clock.
"""

from __future__ import annotations

from decimal import Decimal

from hip3.execution.params import RiskParams
from hip3.execution.soft_gates import net_pnl_usd
from hip3.messages import OrderRejected, PositionClosed

__all__ = ["RiskMonitor"]


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

    def reset(self) -> None:
        """Operator reset of the hard stop: every trigger is armed again. The reason, the loss,
        flatten-failure, rejection and slippage streaks are cleared and the realised PnL counts again
        from zero ("since reset"), so the loss that latched the stop does not re-latch it at once."""
        self.reason = None
        self.realized_usd = Decimal(0)
        self.consecutive_losses = 0
        self.flatten_failures = 0
        self._bucket = -1
        self.rejections_in_bucket = 0
        self.slippage_streak = 0

    def _fire(self, reason: str) -> str | None:
        if self.reason is not None:
            return None
        self.reason = reason
        return reason

    def on_position_closed(self, closed: PositionClosed) -> str | None:
        pnl = net_pnl_usd(closed)
        self.realized_usd += pnl
        if pnl < 0:
            self.consecutive_losses += 1
        else:
            self.consecutive_losses = 0
        # Flatten failures count in a row: any close means flattening works again.
        self.flatten_failures = 0
        if self.realized_usd < -self._max_loss:
            return self._fire(f"max_loss: realised pnl {self.realized_usd} < -{self._max_loss}")
        if self.consecutive_losses > self.params.max_consecutive_failures:
            return self._fire(
                f"consecutive_losses: {self.consecutive_losses} > {self.params.max_consecutive_failures}"
            )
        return None

    def on_order_rejected(self, rej: OrderRejected, now_ms: int, *, is_flatten: bool = False) -> str | None:
        """Every terminal rejection of our orders. ``is_flatten``: a flatten or hard-stop order."""
        if rej.benign:
            return None  # B23: routine rejections never count
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
        if self.rejections_in_bucket > self.params.max_rejections_per_bucket:
            return self._fire(
                f"rejections: {self.rejections_in_bucket} non-benign in one bucket"
                f" > {self.params.max_rejections_per_bucket}"
            )
        return None

    def on_flatten_failed(self, why: str) -> str | None:
        """A flatten order failed (non-benign rejection, timeout, requeue budget exhausted)."""
        self.flatten_failures += 1
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
        if slip_bps > self.params.max_slippage_bps:
            self.slippage_streak += 1
        else:
            self.slippage_streak = 0
        if self.slippage_streak >= self.params.slippage_consecutive_trades:
            return self._fire(
                f"slippage: {self.slippage_streak} consecutive entries > {self.params.max_slippage_bps} bps"
            )
        return None

    def on_external(self, reason: str) -> str | None:
        """Any other trigger (supervisor restart limit, operator): latches like the others."""
        return self._fire(f"external: {reason}")

"""The exchange's per-address limits, as the simulator enforces them: the action request budget and the
dead man's switch's rules. The texts are the exchange's (``hip3.hyperliquid.errors``).

Request budget [DOCS "Rate limits and user limits"]: every L1 action counts against its account, a batch
of n orders or cancels n; the cap is an initial buffer (10,000; ``SimParams.request_budget_initial``, so
that a test can exhaust it quickly) plus one request per USDC of the account's lifetime volume. Over the
cap an action is refused with "Too many cumulative requests sent (A > B) for cumulative volume traded $X.
Place taker orders to free up 1 request per USDC traded." [OBS], except one request every 10 s; cancels
have the larger cap ``min(cap + 100,000, 2 × cap)``. ``userRateLimit`` reports the count and the cap.

Dead man's switch [DOCS; the volume gate OBS]: arming ``scheduleCancel`` with a time is refused while the
account's lifetime volume is below ``SimParams.schedule_cancel_min_volume_usd`` (the exchange: $1,000,000)
and once it triggered ``schedule_cancel_daily_limit`` times (10) in the current UTC day.

Readings no source states [UNVERIFIED], the same as the bot's (``hip3.execution.admission``): the
over-budget allowance is one request of weight 1; a refused action is not counted; ``scheduleCancel``
counts as an ordinary action; removing the switch (no time) is never refused; a trigger counts even when
there was no open order to cancel.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from hip3.hyperliquid.errors import rate_limit_error, schedule_cancel_daily_error, schedule_cancel_volume_error

__all__ = ["AddressLimits", "action_weight"]

_CANCEL_EXTRA = 100_000
_THROTTLED_EVERY_MS = 10_000
_DAY_MS = 86_400_000
_CENT = Decimal("0.01")
_CANCEL_TYPES = frozenset({"cancel", "cancelByCloid"})


def action_weight(action: dict[str, Any]) -> int:
    """How many requests an action counts: the length of its orders or cancels, else 1."""
    for key in ("orders", "cancels"):
        items = action.get(key)
        if isinstance(items, list) and items:
            return len(items)
    return 1


def _plain(x: Decimal) -> str:
    s = format(x.normalize(), "f")
    return s if s not in ("-0", "") else "0"


class AddressLimits:
    """Request counts, throttle times and scheduled-cancel triggers per account (lower-case address)."""

    def __init__(self, initial: int, min_switch_volume_usd: Decimal, daily_triggers: int) -> None:
        self.initial = initial
        self.min_switch_volume_usd = min_switch_volume_usd
        self.daily_triggers = daily_triggers
        self.used: dict[str, int] = {}
        self._throttled_ms: dict[str, int] = {}
        self._triggers: dict[str, tuple[int, int]] = {}  # account -> (UTC day, triggers that day)

    def cap(self, cum_vlm: Decimal) -> int:
        return self.initial + int(cum_vlm)

    def charge(self, account: str, cum_vlm: Decimal, action_type: str, n: int, now_ms: int) -> str | None:
        """Count an action of ``n`` requests, or return the exchange's refusal (then nothing is counted)."""
        used = self.used.get(account, 0)
        cap = self.cap(cum_vlm)
        limit = min(cap + _CANCEL_EXTRA, 2 * cap) if action_type in _CANCEL_TYPES else cap
        if used + n > limit:
            last = self._throttled_ms.get(account)
            if n > 1 or (last is not None and now_ms - last < _THROTTLED_EVERY_MS):
                vlm = cum_vlm.quantize(_CENT, rounding=ROUND_DOWN)
                return rate_limit_error(used + n, limit, _plain(vlm))
            self._throttled_ms[account] = now_ms
        self.used[account] = used + n
        return None

    def rate_limit_info(self, account: str, cum_vlm: Decimal) -> dict[str, Any]:
        """The ``userRateLimit`` answer."""
        return {"cumVlm": _plain(cum_vlm.quantize(Decimal("1e-6"))) if cum_vlm else "0.0",
                "nRequestsUsed": self.used.get(account, 0), "nRequestsCap": self.cap(cum_vlm),
                "nRequestsSurplus": 0}

    def schedule_cancel_refusal(self, account: str, cum_vlm: Decimal, now_ms: int) -> str | None:
        """Why arming the switch is refused now (the exchange's text), or None."""
        if cum_vlm < self.min_switch_volume_usd:
            return schedule_cancel_volume_error(int(self.min_switch_volume_usd), _plain(cum_vlm))
        day, n = self._triggers.get(account, (-1, 0))
        if day == now_ms // _DAY_MS and n >= self.daily_triggers:
            return schedule_cancel_daily_error(self.daily_triggers)
        return None

    def on_trigger(self, account: str, now_ms: int) -> None:
        """The account's switch fired."""
        today = now_ms // _DAY_MS
        day, n = self._triggers.get(account, (today, 0))
        self._triggers[account] = (today, n + 1 if day == today else 1)

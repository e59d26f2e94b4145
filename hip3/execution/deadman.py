"""The dead man's switch (``scheduleCancel``): when to re-arm it, and when to stop because the exchange
refuses it.

Exchange behaviour: ``{"type":"scheduleCancel","time":T}`` cancels every open order of the account at T
(at least 5 s ahead); re-armed before T, it never fires. The exchange refuses it below a lifetime traded
volume ("Cannot set scheduled cancel time until enough volume traded. Required: $1000000. Traded: $X.",
seen on testnet and mainnet) and lets it trigger at most 10 times per UTC day, after which arming it is
refused ("Too many scheduled cancels triggered for the day ..."). Re-armed every 20 s, each time a request
of the address budget, a refused switch would be sent and refused about 4,300 times a day, each time a
warning in the log. So:

* a volume refusal stops the re-arming until the account's lifetime volume (``cumVlm``, read with the
  request budget) reaches the figure the refusal named (never, if it named none);
* the daily limit stops it until the next 00:00 UTC;
* each says so once at WARNING (the caller logs the ``Note``) and in the executor's stats (``status``);
* neither is an order rejection: nothing here reaches the hard stop's triggers;
* any other failure (timeout, disconnect, another error) is retried at the next period, with a warning
  on the first failure after a success only.

Pure: times are wall-clock ms passed in.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from hip3.hyperliquid.errors import ERR_SCHEDULE_CANCEL_DAILY_PREFIX, parse_schedule_cancel_volume_error

__all__ = ["STATE_CODES", "DeadMansSwitch", "Note", "SwitchState"]

SwitchState = Literal["off", "armed", "refused_volume", "refused_daily", "failing"]
# For the heartbeat's integer stats (``schedule_cancel_state``); ``status`` spells them out.
STATE_CODES: dict[SwitchState, int] = {"off": 0, "armed": 1, "refused_volume": 2, "refused_daily": 3, "failing": 4}
_DAY_MS = 86_400_000
_NEVER = 1 << 62


class Note(msgspec.Struct, frozen=True):
    """A state change worth one log line: ``event`` and its fields; ``warning`` False means INFO."""

    event: str
    detail: str
    warning: bool = True


class DeadMansSwitch:
    """Re-arming decisions for ``scheduleCancel``; the actor sends, this decides and keeps the state."""

    def __init__(self, after_ms: int) -> None:
        self.after_ms = after_ms
        self.state: SwitchState = "off"
        self.armed_until_ms = 0
        self.required_usd: Decimal | None = None  # the volume a refusal named
        self._retry_at_ms = 0
        self._in_flight = False

    def want(self, now_ms: int) -> int | None:
        """The time to arm the switch for if a ``scheduleCancel`` should be sent now, else None (one in
        flight, or refused and not yet worth trying again)."""
        if self._in_flight or now_ms < self._retry_at_ms:
            return None
        return now_ms + self.after_ms

    def on_sent(self) -> None:
        self._in_flight = True

    def on_not_sent(self) -> None:
        """The post never left (disconnected, over the transport's budget, signing failed)."""
        self._in_flight = False

    def on_answer(self, ok: bool, error: str, until_ms: int, now_ms: int) -> Note | None:
        """The exchange's answer to the ``scheduleCancel`` for ``until_ms`` (``error``: its text, or why there
        was none). Returns a note to log when the state changed in a way the operator must hear of."""
        self._in_flight = False
        before = self.state
        if ok:
            self.state = "armed"
            self.armed_until_ms = until_ms
            self._retry_at_ms = 0
            if before in ("refused_volume", "refused_daily"):
                return Note("schedule_cancel_accepted", f"the exchange accepts the dead man's switch again "
                            f"(armed until {until_ms})", warning=False)
            return None
        required = parse_schedule_cancel_volume_error(error)
        if required is not None or error.startswith("Cannot set scheduled cancel time"):
            self.state = "refused_volume"
            self.required_usd = required
            self.armed_until_ms = 0
            self._retry_at_ms = _NEVER
            need = f"${required:,.0f}" if required is not None else "an unknown amount"
            return Note("schedule_cancel_refused", f"the exchange refuses the dead man's switch: the account's "
                        f"lifetime volume is below {need}; not re-armed until it is (orders are not cancelled "
                        f"if hip3 dies): {error[:200]}")
        if error.startswith(ERR_SCHEDULE_CANCEL_DAILY_PREFIX):
            self.state = "refused_daily"
            self.armed_until_ms = 0
            self._retry_at_ms = (now_ms // _DAY_MS + 1) * _DAY_MS
            return Note("schedule_cancel_refused", f"the exchange refuses the dead man's switch: it triggered "
                        f"too often today; not re-armed before 00:00 UTC: {error[:200]}")
        self.state = "failing"
        if before != "failing":
            return Note("schedule_cancel_failed", f"the dead man's switch was not armed; retried at the next "
                        f"period: {error[:200]}")
        return None

    def on_volume(self, cum_vlm_usd: Decimal) -> Note | None:
        """The account's lifetime volume (from the request budget's reading): once it reaches what a volume
        refusal named, the switch is tried again."""
        req = self.required_usd
        if self.state != "refused_volume" or req is None or cum_vlm_usd < req or self._retry_at_ms == 0:
            return None
        self._retry_at_ms = 0
        return Note("schedule_cancel_retry", f"lifetime volume ${cum_vlm_usd:,.0f} reached the ${req:,.0f} the "
                    "exchange asked for: arming the dead man's switch again", warning=False)

    def on_disconnected(self) -> None:
        """The order-entry connection is down: whether the switch is still armed is not known here."""
        self.armed_until_ms = 0

    def stats(self) -> dict[str, int]:
        out = {"schedule_cancel_state": STATE_CODES[self.state],
               "schedule_cancel_armed_until_s": self.armed_until_ms // 1000}
        if self.required_usd is not None:
            out["schedule_cancel_required_usd"] = int(self.required_usd)
        return out

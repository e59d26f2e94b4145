"""What the exchange needs before an entry can work, folded into one reason: collateral and clock.

Two facts about the account's situation at the exchange, not about hip3's processes, decide whether an
entry may be sent:

* the traded HIP-3 dex has usable collateral (``hip3.account.collateral``; from the position tracker's
  ``PositionSnapshot.collateral``): an unfunded dex refuses every entry with a margin error;
* the host's clock is within ``[clock] max_skew_ms`` of the exchange's (``hip3.account.exchange_clock``; from the
  feed's ``ExchangeClock``): beyond it hip3's time-based decisions and the exchange's checks disagree.

Both are entry conditions, never READY conditions of an actor: an actor that is doing its job stays READY
(the supervisor would otherwise restart it until its restart limit latched the hard stop), and exits,
flattens and the hard stop never wait for them. The detector folds this into ``EntryReadiness`` (its
status line says why entries are blocked); the executor checks it again before gating an entry.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hip3.account.collateral import CollateralParams, collateral_problem
from hip3.account.exchange_clock import ClockParams, ExchangeTime, skew_problem
from hip3.messages import DexCollateral, ExchangeClock, PositionSnapshot

__all__ = ["ENTRIES_ALLOWED", "ENTRIES_BLOCKED_PREFIX", "EntryConditions", "format_status_lines", "status_view"]

# The detector's READY detail: this when entries may go, else the prefix and the reason (``status``).
ENTRIES_ALLOWED = "entries allowed"
ENTRIES_BLOCKED_PREFIX = "entries blocked: "


class EntryConditions:
    """Folds the latest ``PositionSnapshot.collateral`` and ``ExchangeClock`` into ``problem()``."""

    __slots__ = ("_problem", "clock", "clock_params", "collateral", "collateral_params", "refuse_unknown", "time")

    def __init__(self, collateral: CollateralParams, clock: ClockParams, *, refuse_unknown: bool = True) -> None:
        """``refuse_unknown=False`` (the executor's second check): a collateral not read yet or a clock not
        measured yet is not a refusal there; only a known problem is. The detector, the first check and
        the source of every entry, refuses both until they are known."""
        self.collateral_params = collateral
        self.clock_params = clock
        self.refuse_unknown = refuse_unknown
        self.collateral: DexCollateral | None = None
        self.clock: ExchangeClock | None = None
        self.time = ExchangeTime()  # the exchange's time from the monotonic clock (the executor signs with it)
        self._problem = self._evaluate()

    def on_snapshot(self, snap: PositionSnapshot) -> None:
        if snap.collateral is not None and snap.collateral != self.collateral:
            self.collateral = snap.collateral
            self._problem = self._evaluate()

    def on_clock(self, msg: ExchangeClock) -> None:
        self.clock = msg
        self.time.on_clock(msg)
        self._problem = self._evaluate()

    def clock_problem(self) -> str:
        if self.clock is None:
            if not self.refuse_unknown:
                return ""
            return "the exchange's clock is not measured yet (no exchange timestamp received)"
        return skew_problem(self.clock.skew_ms, self.clock_params.max_skew_ms)

    def _evaluate(self) -> str:
        if self.collateral is None and not self.refuse_unknown:
            return self.clock_problem()
        return collateral_problem(self.collateral, self.collateral_params) or self.clock_problem()

    def problem(self) -> str:
        """"" when entries may go; else the one reason (collateral first: it is the operator's to fix).
        Evaluated when a snapshot or clock message changes it, so this is free on the detector's path."""
        return self._problem


def status_view(collateral_params: CollateralParams, clock_params: ClockParams, detector: tuple[bool, str] | None,
                skew_ms: int | None, collateral: DexCollateral | None) -> dict[str, Any]:
    """What ``status`` shows before and while trading: may entries go (the detector's READY and detail),
    the dex's collateral and the clock's offset against their bounds."""
    entries = None
    if detector is not None:
        ready, detail = detector
        allowed = ready and detail == ENTRIES_ALLOWED
        reason = detail.removeprefix(ENTRIES_BLOCKED_PREFIX) if ready else f"detector not READY ({detail})"
        entries = {"allowed": allowed, "reason": "" if allowed else reason}
    coll = None
    if collateral is not None:
        coll = {**msgspec.to_builtins(collateral), "problem": collateral_problem(collateral, collateral_params)}
    return {"entries": entries, "collateral": coll,
            "clock": {"skew_ms": skew_ms, "max_skew_ms": clock_params.max_skew_ms}}


def format_status_lines(status: dict[str, Any]) -> list[str]:
    """Entries allowed or why not, the dex's collateral, the clock, the hard stop's flatten and dust, alerts."""
    out: list[str] = []
    entries = status.get("entries")
    if entries:
        out.append("entries   " + ("allowed" if entries["allowed"] else f"BLOCKED: {entries['reason']}"))
    c = status.get("collateral")
    if c:
        state = "NOT USABLE: entries refused (see above)" if c["problem"] else "ok"
        out.append(f"collateral dex {c['dex']!r}: withdrawable {c['withdrawable']} USDC (accountValue "
                   f"{c['account_value']}, margin used {c['margin_used']}; perp balance {c['perp_withdrawable']}): "
                   f"{state}")
    clk = status.get("clock")
    if clk and clk.get("skew_ms") is not None:
        out.append(f"clock     exchange - host {clk['skew_ms']:+d} ms (bound {clk['max_skew_ms']} ms)")
    flatten = (status.get("hard_stop") or {}).get("flatten")
    if flatten:
        state = "done" if flatten["done"] else f"{flatten['positions']} positions, {flatten['open_orders']} orders left"
        out.append(f"flatten   {state} after {flatten['attempts']} attempts")
        if flatten.get("dust"):
            out.append(f"dust      {', '.join(flatten['dust'])}: the exchange refuses to close them (below its $10 "
                       "minimum order value); close them by hand")
    for a in (status.get("alerts") or [])[-3:]:
        out.append(f"alert     [{a['level']}] {a['actor']}: {a['text']}")
    return out

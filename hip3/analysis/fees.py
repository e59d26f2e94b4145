"""The taker fees the analysis assumes: ONE place, so the exchange's real fee model can replace it.

The follow-up analysis scores a signal as a taker round trip (enter at the touch, exit at the opposite
touch some seconds later), so it needs the taker rate per market and leg. ``TakerFees`` is that: a
default rate and per-market overrides. The default is Hyperliquid's tier-0 perp taker rate (0.045 %) times
the HIP-3 multiplier at the default deployer fee scale 1.0 (2x): 9 bps a leg, 18 bps a round trip. Growth
mode (per asset) cuts that by 90 %, a deployer's fee scale changes it, volume tiers and staking discounts
lower it: an operator with other terms passes ``--taker-fee-bps`` (or a per-market table) until the fee
model built from ``userFees``, the deployer fee scale and growth mode is wired here.

Where that model connects: anything with ``taker_bps(coin) -> float`` is a ``FeeModel``; pass it to
``hip3.analysis.followups.analyse`` (``fees=``). Realised trades (the session report, the replay's journal,
the optimiser's objective) never use this: they take the fee of each exchange fill (``hip3.journal.report``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

# Tier 0 (no volume) perp taker 0.045 % x 2 for a HIP-3 market at deployer fee scale 1.0, no growth mode,
# no discounts: the protocol doc's worked example. [UNVERIFIED] for any given dex until a real fill's
# ``fee`` confirms it (the fee scale and growth mode are the deployer's choice and change over time).
HIP3_TIER0_TAKER_BPS = 9.0
LEGS_PER_ROUND_TRIP = 2


class FeeModel(Protocol):
    """The taker fee of one leg in a market, in basis points of notional."""

    def taker_bps(self, coin: str) -> float: ...


class TakerFees:
    """A default taker rate per leg, with per-market overrides (bps)."""

    def __init__(self, default_bps: float = HIP3_TIER0_TAKER_BPS, per_market: Mapping[str, float] | None = None):
        if not default_bps >= 0.0:
            raise ValueError(f"taker fee must be >= 0 bps, got {default_bps!r}")
        self.default_bps = float(default_bps)
        self.per_market = dict(per_market or {})
        for coin, bps in self.per_market.items():
            if not bps >= 0.0:
                raise ValueError(f"taker fee for {coin} must be >= 0 bps, got {bps!r}")

    def taker_bps(self, coin: str) -> float:
        return self.per_market.get(coin, self.default_bps)

    def describe(self) -> str:
        extra = "".join(f", {c} {b:g}" for c, b in sorted(self.per_market.items()))
        return f"taker {self.default_bps:g} bps a leg{extra}"


def round_trip_bps(fees: FeeModel, coin: str) -> float:
    """The fees of entering and leaving ``coin`` as a taker, in bps of notional."""
    return LEGS_PER_ROUND_TRIP * fees.taker_bps(coin)

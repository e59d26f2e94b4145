"""Bounded numeric types for the config Structs: every number a config holds is finite and in range.

A config value that is infinite, NaN or absurdly large can switch a safety mechanism off without a word:
``inf`` as a notional cap removes the cap, a timeout of ``1e18`` ms never fires, a loss limit of a billion
dollars is no limit. msgspec accepts ``inf`` for a float with only a lower bound, so every type here has
an upper bound too. The bounds are wide: they catch typos (a few zeros too many, ``inf``, ``nan``), not
choices; a field whose safety depends on a tighter range says so itself (the slippage of a flatten, the
heartbeat timeout, the loss limits) with its own ``msgspec.Meta``.

New config keys should use these types (or their own ``msgspec.Meta`` with both bounds):
``tests/test_config_bounds.py`` walks every numeric key of ``Config`` and tries 0, a negative, a huge,
an infinite and a NaN value; each must be refused with the key named, or be listed there with the reason
it is harmless.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "MAX_BPS",
    "MAX_COUNT",
    "MAX_DURATION_MS",
    "MAX_FLOAT",
    "MAX_USD",
    "MIN_SLIPPAGE_BPS",
    "NonNegBps",
    "NonNegCount",
    "NonNegFloat",
    "NonNegMs",
    "NonNegUsd",
    "PosBps",
    "PosCount",
    "PosFloat",
    "PosMs",
    "PosUsd",
    "SlippageBps",
]

# One day: no timer, window or timeout of hip3 is meant to be longer.
MAX_DURATION_MS = 86_400_000
# Ten million dollars: far above any notional or loss figure this strategy's thin books can carry; a
# larger number is a typo, and for a cap or a loss limit it means "no limit".
MAX_USD = 10_000_000.0
# One million of anything counted (orders, signals, samples, queue slots).
MAX_COUNT = 1_000_000
# 100 %: a price distance, an edge or a threshold in basis points never needs more.
MAX_BPS = 10_000.0
# A float with no natural unit (a multiplier, a weight): finite, and nowhere near float overflow.
MAX_FLOAT = 1e12

PosMs = Annotated[int, msgspec.Meta(gt=0, le=MAX_DURATION_MS)]
NonNegMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_DURATION_MS)]
PosCount = Annotated[int, msgspec.Meta(gt=0, le=MAX_COUNT)]
NonNegCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
PosUsd = Annotated[float, msgspec.Meta(gt=0, le=MAX_USD)]
NonNegUsd = Annotated[float, msgspec.Meta(ge=0, le=MAX_USD)]
PosBps = Annotated[float, msgspec.Meta(gt=0, le=MAX_BPS)]
NonNegBps = Annotated[float, msgspec.Meta(ge=0, le=MAX_BPS)]
PosFloat = Annotated[float, msgspec.Meta(gt=0, le=MAX_FLOAT)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0, le=MAX_FLOAT)]
# The price distance of a reduce-only order (a hard-stop flatten, an exit) from the mark. At 10,000 bps a
# sell's limit is at or below zero: no flatten could ever be priced. Below 1 bp the limit sits at the
# mark, inside the spread of every HIP-3 book: the IOC would miss the book on every try.
MIN_SLIPPAGE_BPS = 1.0
SlippageBps = Annotated[float, msgspec.Meta(ge=MIN_SLIPPAGE_BPS, lt=MAX_BPS)]

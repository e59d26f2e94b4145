"""Collateral on the traded HIP-3 dex: may an entry use it? (the exchange's per-dex margin).

On the exchange each HIP-3 dex has its own margin: a deposit lands on the validator perp dex (""), and an
order on the builder dex (``xyz``) is refused with ``Insufficient margin to place order.`` until USDC is
moved there with the user-signed ``sendAsset`` (the master key must sign; an API wallet cannot), or the
account's dex abstraction pulls it from the perp balance. A bot that only checked its total balance would
start, look READY and then see every entry refused.

So the position tracker reads ``clearinghouseState`` with the dex (and without, for the perp balance) at
start and on every resync (``DexCollateral`` on the ``PositionSnapshot``), and entries are refused, with
one line naming the dex, the balance and how to fund it, while the dex's free collateral is below
``[collateral] min_free_usd``. Only entries: the tracker stays READY (it is synced), the supervisor sees
no failure (no restart loop, no hard stop) and reduce-only exits and the hard stop keep working when the
collateral drops to zero under an open position.

``source = "dex+perp"`` counts the perp balance too, for an account with dex abstraction enabled (the
exchange then pulls collateral from it). How abstraction reports the dex's own balance is not documented:
[UNVERIFIED] (``COLLATERAL_SOURCES``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from hip3.hyperliquid.rest import ClearinghouseState
from hip3.messages import DexCollateral

__all__ = ["COLLATERAL_SOURCES", "CollateralParams", "collateral_from_states", "collateral_problem",
           "describe", "fund_hint", "usable_usd"]

_ZERO = Decimal(0)

# [UNVERIFIED] What backs an order on a HIP-3 dex: its own balance ("dex", the documented per-dex margin),
# or, with the account's dex abstraction enabled, that balance plus the validator perp dex's ("dex+perp";
# the docs say collateral is pulled automatically, not how clearinghouseState then reports it).
COLLATERAL_SOURCES = ("dex", "dex+perp")


class CollateralParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[collateral]``: when the traded dex counts as funded, and the opt-in transfer's amount.

    * ``min_free_usd``: entries are refused while the dex's free collateral (``withdrawable``) is below
      this. The default covers the exchange's $10 minimum order at 1x leverage.
    * ``source``: ``"dex"`` (the dex's own balance) or ``"dex+perp"`` (plus the perp balance, for an
      account with dex abstraction enabled; [UNVERIFIED], see ``COLLATERAL_SOURCES``).
    * ``recheck_unfunded_s``: while the dex is unfunded the tracker re-reads it this often (a transfer
      made meanwhile is seen in seconds, not at the next ``positions.resync_interval_s``).
    * ``transfer_usd``: what ``python supervisor.py fund-dex`` moves from the perp balance to the dex when
      no ``--usd`` is given; 0 (the default) = nothing configured. Nothing moves unless that command is run.
    """

    min_free_usd: Annotated[float, msgspec.Meta(gt=0.0, le=1e9)] = 10.0
    source: Literal["dex", "dex+perp"] = "dex"
    recheck_unfunded_s: Annotated[float, msgspec.Meta(ge=1.0, le=3600.0)] = 10.0
    transfer_usd: Annotated[float, msgspec.Meta(ge=0.0, le=1e9)] = 0.0


def collateral_from_states(dex: str, dex_state: ClearinghouseState,
                           perp_state: ClearinghouseState | None) -> DexCollateral:
    """The dex's collateral from ``clearinghouseState`` with the dex (and without it, for the perp
    balance). A missing field reads as 0 (nothing usable), never as funded."""
    ms = dex_state.margin_summary
    account_value = ms.account_value if ms is not None else _ZERO
    margin_used = ms.total_margin_used if ms is not None else _ZERO
    withdrawable = dex_state.withdrawable if dex_state.withdrawable is not None else _ZERO
    if perp_state is None:
        perp = Decimal(-1)
    else:
        perp = perp_state.withdrawable if perp_state.withdrawable is not None else _ZERO
    return DexCollateral(dex=dex, account_value=account_value, withdrawable=withdrawable, margin_used=margin_used,
                         perp_withdrawable=perp, time_ms=dex_state.time or 0)


def usable_usd(c: DexCollateral, source: str = "dex") -> Decimal:
    """What an entry can use: the dex's free collateral (plus the perp balance with ``dex+perp``)."""
    usable = max(_ZERO, c.withdrawable)
    if source == "dex+perp" and c.perp_withdrawable > 0:
        usable += c.perp_withdrawable
    return usable


def fund_hint(dex: str) -> str:
    return (f"move USDC to it: `python supervisor.py fund-dex --usd N` (a sendAsset from the perp balance to "
            f"{dex!r}, signed by the account's own key; an API wallet cannot) or in the app, or enable dex "
            "abstraction and set [collateral] source = \"dex+perp\"")


def describe(c: DexCollateral) -> str:
    perp = "unknown" if c.perp_withdrawable < 0 else f"{c.perp_withdrawable.normalize():f}"
    return (f"accountValue {c.account_value.normalize():f}, withdrawable {c.withdrawable.normalize():f}, "
            f"margin used {c.margin_used.normalize():f} USDC; perp balance withdrawable {perp}")


def collateral_problem(c: DexCollateral | None, params: CollateralParams) -> str:
    """The one line that refuses entries ("" when the dex is funded enough)."""
    if c is None:
        return "the dex's collateral is not known yet (no REST sync)"
    usable = usable_usd(c, params.source)
    floor = Decimal(repr(params.min_free_usd))
    if usable >= floor and usable > 0:
        return ""
    return (f"dex {c.dex!r} has no usable collateral ({usable.normalize():f} < {floor.normalize():f} USDC free; "
            f"{describe(c)}): {fund_hint(c.dex)}; exits keep working")

"""Which positions are hip3's, and what hip3 does with the ones it did not open.

An account can hold positions hip3 did not open: on a market hip3 does not trade, or on one of hip3's
markets, opened by hand in the exchange's UI, by another tool, or already there when hip3 started. Two
incidents shaped this module:

* one position on a market that is not configured stopped every entry, silently, with every actor READY:
  the executor's total-exposure gate needs a mark for every position, and hip3 has no market data for a
  market it does not trade (the hard stop could not flatten it either, so it never reported "done");
* a position opened by hand on a configured market was closed by hip3's exits about a second later: the
  exit watcher mirrored every position of the account as its own.

The position tracker classifies once; every other actor reads the result from the ``PositionSnapshot``
(``split``): ``positions``/``open_orders`` hold what hip3 manages, ``outside``/``outside_orders`` the rest.

* owner "hip3": hip3's own fills. Exits, hard stop, caps, as always.
* owner "adopted" (``[positions] manual_positions = "adopt"``): opened outside hip3 on a configured
  market; hip3 manages it exactly like its own (exits, hard-stop flatten, caps, no second entry).
* owner "manual" (``"leave"``, the default): opened outside hip3 on a configured market. hip3 never sends
  an exit, a hard-stop flatten or a cancel for it (or for the account's orders that are not hip3's), and
  refuses its own entries in that market while it exists (``blocking_position``).
* owner "unconfigured": a market hip3 does not trade, in either mode: never touched, never blocks.

The hard stop flattens ``positions`` and cancels ``open_orders``: hip3's own always (leaving them open is
never right), adopted ones in "adopt" mode, and nothing of the operator's in "leave" mode (flattening a
manual hedge could book exactly the loss it was hedging; hip3 cannot know, the operator does). Its "done"
means hip3's part is flat; ``status`` still lists what it left.

Caps (``max_total_notional_usd``, ``max_concurrent_positions``) bound hip3's own trading and count only
``positions``: an operator's position has its own margin at the exchange (which refuses orders the account
cannot margin) and a size its owner chose; counting it would let one large hedge stop hip3 for good (the
incident above, with a reason attached), and hip3 has no mark for an unconfigured market to value it
with. The account-level effects reach hip3 through the balance (dynamic sizing) and the exchange's margin
checks; ``status`` shows every outside position with its size and entry price.

How hip3 tells its own part of a position (``own_after_fill``, the one rule for the live path and for a
rebuild from the exchange's history):

* every order hip3 sends carries a client order id with hip3's prefix (``wire.new_cloid``): a fill with it
  is hip3's, any other (no cloid, another tool's) is not; stateless, so it survives every restart;
* per coin, ``own`` is the part of the net position hip3's fills put there: always of the net's sign and at
  most its size, the rest being the operator's. A position opened from flat (or flipped through zero)
  belongs to whoever's fill opened it; a hip3 fill adds to ``own``; an operator's fill leaves it, except
  that ``own`` never exceeds what is left (an operator who reduces hip3's position reduced hip3's part).
  An operator's order that increases hip3's position thus adds a manual part beside hip3's, and hip3's
  exits close only hip3's part (a reduce-only order of ``own``'s size) in "leave" mode;
* a position the ledger has no record of (already there at a first start) is manual.

Restarts and gaps: see ``hip3.positions.ownership_ledger``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from typing import Literal

import msgspec

from hip3.hyperliquid.wire import is_hip3_cloid
from hip3.messages import OpenOrder, Position, PositionSnapshot

__all__ = [
    "ADOPTED",
    "HIP3",
    "MANUAL",
    "UNCONFIGURED",
    "Policy",
    "blocking_position",
    "clamp_own",
    "describe",
    "own_after_fill",
    "split",
]

Policy = Literal["leave", "adopt"]
HIP3 = "hip3"
ADOPTED = "adopted"
MANUAL = "manual"
UNCONFIGURED = "unconfigured"
_ZERO = Decimal(0)


def clamp_own(own: Decimal, net: Decimal) -> Decimal:
    """``own`` limited to what the net position can hold: the net's sign, at most its size."""
    if own == 0 or net == 0 or (own > 0) != (net > 0):
        return _ZERO
    return net if abs(own) > abs(net) else own


def own_after_fill(own: Decimal, net_before: Decimal, signed_sz: Decimal, is_own: bool) -> Decimal:
    """hip3's part of a coin's position after one fill (``signed_sz`` > 0 buys) moved it from
    ``net_before``. A position opened from flat or flipped through zero is whoever's fill opened it."""
    net_after = net_before + signed_sz
    if net_after == 0:
        return _ZERO
    if net_before == 0 or (net_before > 0) != (net_after > 0):
        return net_after if is_own else _ZERO
    return clamp_own(own + signed_sz if is_own else own, net_after)


def _signed(p: Position) -> Decimal:
    return p.size if p.is_long else -p.size


def _part(p: Position, signed: Decimal, owner: str) -> Position:
    return msgspec.structs.replace(p, is_long=signed > 0, size=abs(signed), owner=owner)


def split(
    snap: PositionSnapshot,
    own: Mapping[str, Decimal],
    configured: Collection[str],
    policy: Policy,
    others: Iterable[Position] = (),
) -> PositionSnapshot:
    """The published snapshot: the book's net positions and the account's open orders divided into what
    hip3 manages (``positions``, ``open_orders``) and what it leaves (``outside``, ``outside_orders``).
    ``own``: hip3's part per coin (signed); ``others``: positions outside the tracker's dex (shown only)."""
    managed: list[Position] = []
    outside: list[Position] = []
    for p in snap.positions:
        net = _signed(p)
        if p.coin not in configured:
            outside.append(_part(p, net, UNCONFIGURED))
            continue
        mine = clamp_own(own.get(p.coin, _ZERO), net)
        manual = net - mine
        if manual == 0:
            managed.append(p if p.owner == HIP3 else _part(p, net, HIP3))
        elif policy == "adopt":
            managed.append(_part(p, net, ADOPTED))
        else:
            if mine != 0:
                managed.append(_part(p, mine, HIP3))
            outside.append(_part(p, manual, MANUAL))
    outside.extend(others)
    orders: list[OpenOrder] = []
    outside_orders: list[OpenOrder] = []
    for o in snap.open_orders:
        if is_hip3_cloid(o.cloid) or (policy == "adopt" and o.coin in configured):
            orders.append(o)
        else:
            outside_orders.append(o)
    return msgspec.structs.replace(
        snap,
        positions=tuple(managed),
        open_orders=tuple(orders),
        outside=tuple(outside),
        outside_orders=tuple(outside_orders),
    )


def blocking_position(snap: PositionSnapshot, coin: str) -> Position | None:
    """A position in ``coin`` that hip3 leaves alone ("manual"): entries in that market wait until it is
    gone (a second position of hip3's beside the operator's would mix the two, and hip3's exits could
    not tell them apart at the exchange, which nets them)."""
    for p in snap.outside:
        if p.coin == coin and p.owner == MANUAL:
            return p
    return None


def describe(p: Position) -> str:
    """One line for ``status`` and the logs: what hip3 does with this position and why."""
    if p.owner == UNCONFIGURED:
        return "market not configured: hip3 never trades, exits or counts it"
    if p.owner == MANUAL:
        return ('opened outside hip3, left alone (manual_positions = "leave"): no exit, no hard-stop flatten, '
                "entries in this market blocked while it is open")
    if p.owner == ADOPTED:
        return 'opened outside hip3, managed by hip3 (manual_positions = "adopt")'
    return "hip3's own"

"""The position book's records: a position as the book holds it, what each change returns, one row of the
exchange's answer, and the ``PositionClosed`` of a close (one builder for every path that closes)."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from hip3.messages import Fill, PositionClosed

__all__ = ["BookPosition", "BookResult", "ExchangePosition", "closed_record", "exit_reason_of"]

ZERO = Decimal(0)


class ExchangePosition(msgspec.Struct, frozen=True):
    """One ``assetPositions[].position`` row of clearinghouseState(dex): signed ``szi``."""

    coin: str
    szi: Decimal
    entry_px: Decimal


class BookResult(msgspec.Struct):
    fills: list[Fill] = msgspec.field(default_factory=list)
    closed: list[PositionClosed] = msgspec.field(default_factory=list)
    changed: bool = False
    suspect: bool = False  # resync: a contradicting empty response was held back
    stale_skipped: list[str] = msgspec.field(default_factory=list)  # resync: closed locally after the request
    unknown: list[str] = msgspec.field(default_factory=list)  # resync: rows without a usable entry price
    # (cloid, close) closed by a hip3 cloid whose OrderSubmitted (the exit reason) has not arrived yet
    held: list[tuple[str, PositionClosed]] = msgspec.field(default_factory=list)


def exit_reason_of(kind: str, reason: str) -> str:
    """A close's exit reason from its closing order: "flip" for an entry, else the flatten's reason."""
    return "flip" if kind == "entry" else reason or kind


class BookPosition(msgspec.Struct):
    """A position as the book holds it (``Position`` is what it publishes)."""

    coin: str
    asset: int
    is_long: bool
    size: Decimal
    entry_px: Decimal
    opened_ms: int
    entry_edge_bps: float = 0.0
    entry_cloid: str | None = None
    fees_usd: Decimal = ZERO
    realized_usd: Decimal = ZERO
    closed_sz: Decimal = ZERO
    closed_notional: Decimal = ZERO
    last_fill_ms: int = 0
    cost: Decimal = ZERO  # entry notional of the open size: PnL is exact on a full close


def closed_record(p: BookPosition, reason: str, time_ms: int) -> PositionClosed:
    exit_px = p.closed_notional / p.closed_sz if p.closed_sz else p.entry_px
    return PositionClosed(
        coin=p.coin,
        is_long=p.is_long,
        size=p.closed_sz,
        entry_px=p.entry_px,
        exit_px=exit_px,
        pnl_usd=p.realized_usd,
        fees_usd=p.fees_usd,
        hold_ms=max(0, time_ms - p.opened_ms),
        exit_reason=reason,
        closed_ms=time_ms,
    )

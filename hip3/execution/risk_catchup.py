"""Closes the executor missed while it was down, read back from the recorder's journal.

A ``PositionClosed`` the position tracker publishes while no executor is running reaches no executor:
PUB/SUB keeps nothing for a subscriber that is not there. That is the loss a crash is most likely to
hide: an IOC flatten the executor sent just before it died fills a few milliseconds later, and the loss
it books would never count towards a limit.

The executor's own saved state (``hip3.execution.risk_state``) stays the authority: it is what the
executor counted, and it lists the natural keys of the closes it counted. The recorder's journal is a
second, independent record of the same bus messages, off the hot path: it may lag by its commit
interval, or be absent (no recorder, a replay). So at start, after restoring its state, the executor
counts every close in the journal since shortly before its last save whose key it has not counted, and
the executor's dedupe by key makes a close that also arrives on the bus count once. If the journal
cannot be read, one warning line says so and the executor goes on from its own state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path

from hip3.messages import PositionClosed

__all__ = ["LOOKBACK_MS", "CatchUpError", "close_key", "missed_closes"]

# How far before the last save to look: a close's time is the fill's, which can precede the moment the
# executor counted (and saved) it by the bus and exchange latency; the key dedupes the overlap.
LOOKBACK_MS = 60_000

_QUERY = ("SELECT coin, is_long, size, entry_px, exit_px, pnl_usd, fees_usd, hold_ms, exit_reason, closed_ms "
          "FROM closes WHERE closed_ms >= ? ORDER BY closed_ms")


def close_key(closed: PositionClosed) -> str:
    """A close's natural key (the recorder's primary key too): one close counts once, however often seen."""
    return (f"{closed.coin}|{closed.closed_ms}|{int(closed.is_long)}|{closed.size.normalize():f}|"
            f"{closed.entry_px.normalize():f}")


class CatchUpError(Exception):
    """The journal exists but cannot be read. ``str(e)`` is one line."""


def missed_closes(db_path: Path, since_ms: int, counted: Callable[[str], bool]) -> list[PositionClosed]:
    """Closes in the journal at ``db_path`` since ``since_ms`` whose key ``counted`` does not know, oldest
    first. No journal: none. Raises ``CatchUpError``."""
    if not db_path.is_file():
        return []
    try:
        con = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.5)
        try:
            rows = con.execute(_QUERY, (since_ms,)).fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise CatchUpError(f"journal {db_path} cannot be read for missed closes: {e}") from None
    out: list[PositionClosed] = []
    for coin, is_long, size, entry_px, exit_px, pnl, fees, hold_ms, reason, closed_ms in rows:
        try:
            closed = PositionClosed(
                coin=str(coin), is_long=bool(is_long), size=Decimal(size), entry_px=Decimal(entry_px),
                exit_px=Decimal(exit_px), pnl_usd=Decimal(pnl), fees_usd=Decimal(fees), hold_ms=int(hold_ms or 0),
                exit_reason=str(reason or "external"), closed_ms=int(closed_ms))
        except (InvalidOperation, TypeError, ValueError):
            raise CatchUpError(f"journal {db_path} holds a close that does not parse ({coin}, {closed_ms})") from None
        if not (closed.pnl_usd.is_finite() and closed.fees_usd.is_finite()):
            raise CatchUpError(f"journal {db_path} holds a close with a non-finite PnL ({coin}, {closed_ms})")
        if not counted(close_key(closed)):
            out.append(closed)
    return out

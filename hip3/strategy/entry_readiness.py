"""May the detector send entries now? READY-TRADING from the state streams.

Entries are allowed only when ALL hold: a trading mode; the hard stop not latched; the feed connected
with market data ready and the user streams acked; a position snapshot that is ``synced``; and, after
any disconnect or feed connection change (``FeedState.conn_id``), the position tracker has resynced:
a synced snapshot whose ``feed_conn_id`` is the current connection (recovery: block → reconnect →
resubscribe → READY → refresh positions → resume). Until then the reason is reported, so a blocked
bot says why. The first feed connection needs no such cycle (the tracker's start-up sync is the
``synced`` flag itself).

The match is exact, whatever order the two streams arrive in and however often the tracker restarts.
It replaced "``synced=False`` then ``synced=True``", which blocked entries for good when the tracker's
resync overtook the feed's new connection on the bus, or when a restarted tracker synced before it first
published (found by the fault tests: the detector waited for a resync that had already happened). A
snapshot without ``feed_conn_id`` (0: an older tracker) still uses that order.

Last, the exchange's own preconditions (``hip3.account.entry_conditions``): usable collateral on the dex and the
host's clock within bound, each refusing with one line that says what to do.
"""

from __future__ import annotations

import re

from hip3.account.entry_conditions import ENTRIES_ALLOWED, ENTRIES_BLOCKED_PREFIX, EntryConditions
from hip3.messages import ExchangeClock, FeedState, PositionSnapshot

__all__ = ["ENTRIES_ALLOWED", "ENTRIES_BLOCKED_PREFIX", "EntryReadiness", "reason_key"]

_NUMBER = re.compile(r"[-+]?\d[\d.]*")


def reason_key(reason: str) -> str:
    """A blocked reason without its numbers: the measured clock offset or a balance changes every
    second, the reason does not (log and report transitions only, never once per message)."""
    return _NUMBER.sub("#", reason)


class EntryReadiness:
    """Folds ``FeedState`` and ``PositionSnapshot`` into one ``blocked_reason`` ("" = allowed)."""

    def __init__(self, *, trading: bool, conditions: EntryConditions | None = None) -> None:
        self.trading = trading
        self.conditions = conditions
        self.feed: FeedState | None = None
        self.positions: PositionSnapshot | None = None
        self.resync_pending = False
        self._saw_unsynced = False
        self.counts = {"feed_reconnects_seen": 0, "resyncs_seen": 0}

    def on_feed_state(self, msg: FeedState) -> bool:
        """Apply a feed state; True if it is a new connection (or a disconnect) worth logging."""
        prev = self.feed
        self.feed = msg
        new_conn = prev is not None and prev.conn_id != msg.conn_id
        went_down = prev is not None and prev.state == "connected" and msg.state != "connected"
        if new_conn or went_down:
            if new_conn:
                self.counts["feed_reconnects_seen"] += 1
            if not self.resync_pending:
                self.resync_pending = True
                self._saw_unsynced = False
            self._check_resynced()  # the tracker may already have resynced after this connection
            return True
        self._check_resynced()
        return prev is None

    def on_clock(self, msg: ExchangeClock) -> None:
        if self.conditions is not None:
            self.conditions.on_clock(msg)

    def on_positions(self, snap: PositionSnapshot) -> None:
        self.positions = snap
        if self.conditions is not None:
            self.conditions.on_snapshot(snap)
        if self.resync_pending and snap.feed_conn_id:
            self._check_resynced()
        elif self.resync_pending:
            if not snap.synced:
                self._saw_unsynced = True
            elif self._saw_unsynced:
                self.resync_pending = False
                self.counts["resyncs_seen"] += 1

    def _check_resynced(self) -> None:
        p, f = self.positions, self.feed
        if (self.resync_pending and p is not None and f is not None and p.synced and p.feed_conn_id
                and f.state == "connected" and p.feed_conn_id == f.conn_id):
            self.resync_pending = False
            self.counts["resyncs_seen"] += 1

    def blocked_reason(self, hardstop_latched: bool) -> str:
        if not self.trading:
            return "observe mode"
        if hardstop_latched:
            return "hard stop latched"
        f = self.feed
        if f is None:
            return "no feed state yet"
        if f.state != "connected" or not f.market_data_ready:
            return "market data not ready"
        if not f.user_ready:
            return "user streams not ready"
        p = self.positions
        if p is None:
            return "no position snapshot yet"
        if not p.synced:
            return "positions not synced"
        if self.resync_pending:
            return f"waiting for the position resync after reconnect (conn {f.conn_id})"
        if self.conditions is not None:
            return self.conditions.problem()
        return ""

    def stats(self) -> dict[str, int]:
        out = dict(self.counts)
        out["open_positions"] = len(self.positions.positions) if self.positions is not None else 0
        out["positions_synced"] = int(self.positions is not None and self.positions.synced)
        out["resync_pending"] = int(self.resync_pending)
        return out

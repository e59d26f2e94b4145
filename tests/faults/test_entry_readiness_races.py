"""Entries after a reconnect wait for the position resync of THAT connection, whatever order the feed's
and the tracker's streams arrive in, and however often the tracker restarts.

Regression guarded: a detector that waits for ``synced=False`` then ``synced=True``. In the kill test (feed
killed, then the position tracker killed mid-order) the tracker's resync reached the detector before the
feed's new connection did, or a restarted tracker synced before it first published: the detector never
saw the pair and blocked entries for good ("waiting for the position resync after reconnect").
"""

from __future__ import annotations

from decimal import Decimal

from hip3.messages import FeedState, PositionSnapshot
from hip3.strategy.entry_readiness import EntryReadiness


def _fs(conn: int, state: str = "connected") -> FeedState:
    up = state == "connected"
    return FeedState(state=state, conn_id=conn, market_data_ready=up, user_ready=up, since_ns=0)


def _snap(synced: bool, conn: int, version: int = 1) -> PositionSnapshot:
    return PositionSnapshot(version=version, synced=synced, positions=(), open_orders=(),
                            realized_pnl_usd=Decimal(0), fees_usd=Decimal(0), feed_conn_id=conn)


def _ready(conn: int = 1) -> EntryReadiness:
    r = EntryReadiness(trading=True)
    r.on_feed_state(_fs(conn))
    r.on_positions(_snap(True, conn))
    assert r.blocked_reason(False) == ""
    return r


def test_resync_overtakes_the_new_connection_on_the_bus() -> None:
    r = _ready(1)
    r.on_positions(_snap(False, 1, 2))  # the tracker saw connection 2 first: unsynced...
    r.on_positions(_snap(True, 2, 3))   # ...and resynced after it, before the detector heard of it
    r.on_feed_state(_fs(2))
    assert r.blocked_reason(False) == ""


def test_restarted_tracker_publishes_synced_first() -> None:
    r = _ready(1)
    r.on_feed_state(_fs(2))  # the feed restarted
    assert "resync" in r.blocked_reason(False)
    r.on_positions(_snap(True, 1, 5))  # the old tracker's last periodic snapshot: not this connection
    assert "resync" in r.blocked_reason(False)
    r.on_positions(_snap(True, 2, 1))  # a restarted tracker: its first snapshot is already synced
    assert r.blocked_reason(False) == ""


def test_a_disconnect_needs_the_next_connections_resync() -> None:
    r = _ready(1)
    r.on_feed_state(_fs(1, "disconnected"))
    r.on_positions(_snap(True, 1, 2))
    assert r.blocked_reason(False) == "market data not ready"
    r.on_feed_state(_fs(2))
    assert "resync" in r.blocked_reason(False)
    r.on_positions(_snap(True, 1, 3))  # a sync requested before the reconnect: not enough
    assert "resync" in r.blocked_reason(False)
    r.on_positions(_snap(True, 2, 4))
    assert r.blocked_reason(False) == ""

"""The operator's view of the positions (``status`` → ``trading.positions``) follows a restarted position
tracker at once.

Regression: the supervisor kept only snapshots whose version was not lower than the last one seen; a
restarted tracker numbers its versions from 1 again, so the status showed the dead tracker's last book
until the new one's version caught up (the soak found hip3's status a minute behind the exchange).
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from hip3.messages import Position, PositionSnapshot
from hip3.runtime.trading import TradingStats


def _snap(version: int, seq: int, *coins: str) -> PositionSnapshot:
    positions = tuple(Position(coin=c, asset=1, is_long=True, size=Decimal(1), entry_px=Decimal(10), opened_ms=0)
                      for c in coins)
    snap = PositionSnapshot(version=version, synced=True, positions=positions, open_orders=(),
                            realized_pnl_usd=Decimal(0), fees_usd=Decimal(0))
    msgspec.structs.force_setattr(snap, "seq", seq)  # as the sending socket stamps it
    return snap


def _coins(t: TradingStats) -> list[str]:
    return [p["coin"] for p in t.as_dict()["positions"]]


def test_a_restarted_tracker_replaces_the_view_at_once() -> None:
    t = TradingStats()
    t.on_message(_snap(500, 900, "xyz:GOLD"))
    t.on_message(_snap(500, 950, "xyz:GOLD"))  # the XPUB's replay to a joiner: same version, fresh seq
    assert _coins(t) == ["xyz:GOLD"]
    t.on_message(_snap(2, 3, "xyz:TSLA"))  # the restarted tracker (versions and seq from 1 again)
    assert _coins(t) == ["xyz:TSLA"]
    t.on_message(_snap(3, 5))
    assert _coins(t) == []

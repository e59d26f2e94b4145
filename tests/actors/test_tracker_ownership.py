"""The position_tracker actor's ownership wiring (a thread, inproc, scripted REST): its first sync rebuilds
hip3's part of a position from the exchange's fill history (a fill no tracker saw), the validator dex's
positions are shown as unconfigured and its fills never enter the dex book, and the ledger is on disk."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.position_tracker import PositionTracker
from hip3.hyperliquid.rest import AssetPosition, ClearinghouseState, MarginSummary
from hip3.hyperliquid.rest import Position as RestPosition
from hip3.hyperliquid.wire import new_cloid
from hip3.messages import PositionSnapshot, UserFill
from hip3.runtime.inproc import inproc_graph
from hip3.sim.app import SimServer
from tests.actors.helpers import Capture, FakeFeed, account_of, wait
from tests.actors.test_position_tracker import EXTRA, ScriptedRest, ch
from tests.conftest import sim_config

D = Decimal
OWN = new_cloid()


class WithHistory(ScriptedRest):
    """clearinghouseState of the dex as scripted; the validator dex holds BTC; a fill history."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[str, Any]] = []
        self.history_calls = 0

    def clearinghouse_state(self, user: str, dex: str) -> ClearinghouseState:
        if dex == "":
            return ClearinghouseState(
                asset_positions=[AssetPosition(position=RestPosition(coin="BTC", szi=D("-0.01"), entry_px=D(111000)))],
                margin_summary=MarginSummary(account_value=D(5)))
        return super().clearinghouse_state(user, dex)

    def user_fills(self, user: str) -> list[dict[str, Any]]:
        with self.lock:
            self.history_calls += 1
            return list(self.history)


@pytest.fixture
def tracked(run_dir: Path, sim_server: SimServer, paper_key: str,
            request: pytest.FixtureRequest) -> Iterator[tuple[Any, WithHistory, Capture, FakeFeed]]:
    if getattr(request, "param", "") == "ledger is a directory":
        (run_dir / "ownership.json").mkdir(parents=True)
    rest = WithHistory()
    rest.states = [ch(("xyz:GOLD", "2"), ("xyz:SILVER", "-3"))]
    # GOLD: hip3 opened 1.5 (a fill whose post response reached no tracker), the operator added 0.5.
    rest.history = [
        {"coin": "xyz:GOLD", "px": "100", "sz": "0.5", "side": "B", "time": 20, "startPosition": "1.5", "oid": 2,
         "tid": 2, "fee": "0"},
        {"coin": "xyz:GOLD", "px": "100", "sz": "1.5", "side": "B", "time": 10, "startPosition": "0", "oid": 1,
         "tid": 1, "fee": "0", "cloid": OWN},
    ]

    class Scripted(PositionTracker):
        def setup(self) -> None:
            super().setup()
            self._rest = rest  # type: ignore[assignment]

    cfg = sim_config(run_dir, sim_server.url, account_of(paper_key), ("xyz:GOLD", "xyz:SILVER"), EXTRA)
    with inproc_graph(cfg, {"position_tracker": Scripted}) as run:
        feed = FakeFeed(cfg, sim_server, context=run.context)
        cap = Capture(cfg, ["positions"], context=run.context)
        try:
            yield run, rest, cap, feed
        finally:
            cap.close()
            feed.close()


def _last(cap: Capture) -> PositionSnapshot | None:
    snaps = [s for s in cap.of(PositionSnapshot) if s.synced]
    return snaps[-1] if snaps else None


def test_first_sync_rebuilds_from_history_and_shows_the_validator_dex(
        tracked: tuple[Any, WithHistory, Capture, FakeFeed], run_dir: Path) -> None:
    run, rest, cap, feed = tracked
    assert wait(lambda: _last(cap) is not None, 10)
    snap = _last(cap)
    assert snap is not None
    assert [(p.coin, p.owner, p.size) for p in snap.positions] == [("xyz:GOLD", "hip3", D("1.5"))]
    assert sorted((p.coin, p.owner, p.size, p.is_long) for p in snap.outside) == [
        ("BTC", "unconfigured", D("0.01"), False), ("xyz:GOLD", "manual", D("0.5"), True),
        ("xyz:SILVER", "manual", D(3), False)]
    assert rest.history_calls == 1  # the first sync only, not every periodic resync
    assert wait(lambda: (run_dir / "ownership.json").exists(), 5)
    assert json.loads((run_dir / "ownership.json").read_text())["own"] == {"xyz:GOLD": "1.5"}
    # A fill of the validator dex (BTC) is not this book's: it never shows as a position of the dex.
    version = snap.version
    feed.user.publish(UserFill(coin="BTC", px=D(111000), sz=D("0.01"), is_buy=True, time_ms=30, oid=3, tid=3,
                               cloid=None, fee=D(0), closed_pnl=D(0), crossed=True, is_snapshot=False, recv_ns=1))
    assert wait(lambda: run.call(lambda s: s.slots["position_tracker"].stats.get("fills_other_dex")) == 1, 5,
                feed.pump)
    last = _last(cap)
    assert last is not None and last.version == version and all(p.coin != "BTC" for p in last.positions)


@pytest.mark.parametrize("tracked", ["ledger is a directory"], indirect=True)
def test_an_unusable_ledger_is_one_alert_and_the_history_still_decides(
        tracked: tuple[Any, WithHistory, Capture, FakeFeed]) -> None:
    run, _rest, cap, _feed = tracked
    assert wait(lambda: _last(cap) is not None, 10)
    snap = _last(cap)
    assert snap is not None and [(p.coin, p.owner) for p in snap.positions] == [("xyz:GOLD", "hip3")]
    assert wait(lambda: run.call(lambda s: s.slots["position_tracker"].ready), 5)

    def alerts() -> list[str]:
        return [a["text"] for a in run.call(lambda s: list(s.alerts)) if "ownership ledger" in a["text"]]

    # One for the read at start, one for the first failed write; not one per snapshot.
    assert wait(lambda: len(alerts()) == 2, 5), alerts()
    time.sleep(0.5)
    assert len(alerts()) == 2 and "cannot read" in alerts()[0] and "cannot write" in alerts()[1], alerts()

"""Positions opened outside hip3, in a supervised paper session (real processes), across ``kill -9`` of the
position tracker and of the executor.

The operator trades the same account by hand: an agent of the account approved at the simulator, whose
orders carry no hip3 client order id. Today one position on a market hip3 does not trade stops every
entry while every actor stays READY, and a position opened by hand on a configured market is closed by
hip3's exits within seconds.

* "leave" (the default): an unconfigured market's position and a manual one on a configured market are
  never exited, entries in the manual one's market are refused, the other markets keep trading, the status
  shows both, the tracker logs each once per process, and all of it holds after the tracker and the
  executor are killed and restarted (hip3's own positions are still hip3's, never "manual").
* "adopt": the manual position on a configured market is hip3's to manage (its exits close it), after the
  same kills; the unconfigured one is still left alone.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from hip3.hyperliquid.signing import Signer
from hip3.hyperliquid.wire import floor_size, order_action, order_wire, round_price
from tests.faults.session import MARKETS, Session, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

UNCONFIGURED = "xyz:HOOD"
LEFT_ALONE_S = 8.0  # longer than the session's 6 s time stop: today's exits would have closed it by then


class Operator:
    """The account's owner trading by hand (an approved agent: its own nonces, no hip3 cloid)."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.signer = Signer("0x" + secrets.token_hex(32))
        s.control("approve_agent", master=s.account, agent=self.signer.address)
        self._nonce = 0

    def ioc(self, coin: str, is_buy: bool, usd: float) -> Decimal:
        """An IOC crossing the book that fills; returns the signed size."""
        m = self.s.control("state")["markets"][coin]
        szd = int(m["szDecimals"])
        ref = Decimal(m["ask"] if is_buy else m["bid"])
        px = round_price(ref * (Decimal("1.003") if is_buy else Decimal("0.997")), szd, is_buy)
        sz = floor_size(Decimal(str(usd)) / Decimal(m["markPx"]), szd)
        action = order_action([order_wire(int(m["asset"]), is_buy, px, sz, False, "Ioc")])
        self._nonce = max(self._nonce + 1, int(time.time() * 1000))
        sig = self.signer.sign_action(action, None, self._nonce, False)
        r = self.s._post("/exchange", {"action": action, "nonce": self._nonce, "signature": sig, "vaultAddress": None})
        assert r["status"] == "ok" and "filled" in r["response"]["data"]["statuses"][0], r
        return sz if is_buy else -sz


def _hip3_fills(s: Session, coin: str, after_ms: float) -> list[dict[str, Any]]:
    """The exchange's fills in ``coin`` after ``after_ms`` of orders hip3 sent (its sent-intent journal)."""
    sent = s.journal()
    return [f for f in s.sim_fills() if f["coin"] == coin and f.get("cloid") in sent and f["time"] > after_ms]


def _outside(s: Session) -> dict[str, tuple[str, float]]:
    return {p["coin"]: (p["owner"], p["size"] if p["side"] == "long" else -p["size"])
            for p in s.status()["trading"]["outside_positions"]}


def _free_coin(s: Session) -> str:
    held = set(s.sim_positions())
    return next(c for c in MARKETS[::-1] if c not in held)


def _tracker_processes(s: Session) -> list[list[dict[str, Any]]]:
    """The tracker's log, one list of lines per process (each starts with "starting")."""
    runs: list[list[dict[str, Any]]] = []
    for e in s.actor_log("position_tracker"):
        if e.get("event") == "starting" or not runs:
            runs.append([])
        runs[-1].append(e)
    return runs


def test_leave_outside_positions_are_left_and_block_nothing_else_across_kills(
        make_session: Callable[..., Session]) -> None:
    s = make_session()
    assert wait_until(lambda: s.status()["trading"]["entries"] >= 1, 40, 0.2), s.status()["trading"]
    op = Operator(s)
    hood = op.ioc(UNCONFIGURED, True, 25)
    coin = _free_coin(s)
    manual = op.ioc(coin, False, 25)
    t_manual = time.time() * 1000
    expected_outside = {UNCONFIGURED: ("unconfigured", float(hood)), coin: ("manual", float(manual))}

    def left_alone_while_trading(phase: str) -> None:
        """For LEFT_ALONE_S: hip3 trades other markets, sends nothing in ``coin`` or HOOD, and no position
        of hip3's ever shows as one it does not manage."""
        entries = s.status()["trading"]["entries"]
        since = time.time() * 1000
        end = time.monotonic() + LEFT_ALONE_S
        while time.monotonic() < end:
            sim = s.sim_positions()
            assert sim.get(UNCONFIGURED) == float(hood) and sim.get(coin) == float(manual), (phase, sim)
            outside = s.status()["trading"].get("outside_positions", [])
            assert {p["coin"] for p in outside} <= {UNCONFIGURED, coin}, (phase, outside)
            time.sleep(0.5)
        assert wait_until(lambda: s.status()["trading"]["entries"] > entries, 30, 0.2), (phase, "no entry elsewhere")
        # Nothing of hip3's filled in either market: no exit of the operator's position, no entry beside it.
        assert _hip3_fills(s, coin, since - 1000) == [] and _hip3_fills(s, UNCONFIGURED, 0) == [], phase
        assert _outside(s) == expected_outside, (phase, _outside(s))
        st = s.status()
        actions = {p["coin"]: p["action"] for p in st["trading"]["outside_positions"]}
        assert "entries in this market blocked" in actions[coin] and "not configured" in actions[UNCONFIGURED]
        assert all(a["ready"] for a in st["actors"]), (phase, [(a["name"], a["ready_detail"]) for a in st["actors"]])

    left_alone_while_trading("running")
    # The position tracker, killed mid-order (a fill of hip3's may reach no tracker: the history has it).
    assert s.wait_new_order(30), "no order to kill the tracker in"
    old = s.kill_actor("position_tracker")
    assert wait_until(lambda: s.back("position_tracker", old), 20), s.actor("position_tracker")
    left_alone_while_trading("after the tracker's kill -9")
    old = s.kill_actor("executor")
    assert wait_until(lambda: s.back("executor", old), 20), s.actor("executor")
    left_alone_while_trading("after the executor's kill -9")

    assert _hip3_fills(s, coin, t_manual + 2000) == []
    assert s.wait_books_agree(20) == ""
    assert s.doubled_cloids() == [] and s.orders_while_not_ready() == []
    # Logged once per tracker process (not per message or snapshot): one process before the kill, one after.
    runs = _tracker_processes(s)
    assert len(runs) == 2
    for run in runs:
        seen = sorted((e["coin"], e["owner"]) for e in run if e.get("event") == "outside_position")
        assert seen == sorted([(UNCONFIGURED, "unconfigured"), (coin, "manual")]), seen


def test_adopt_the_manual_position_is_closed_by_hips_exits_across_kills(
        make_session: Callable[..., Session]) -> None:
    s = make_session(manual_positions="adopt")
    assert wait_until(lambda: s.status()["trading"]["entries"] >= 1, 40, 0.2), s.status()["trading"]
    op = Operator(s)
    hood = op.ioc(UNCONFIGURED, True, 25)
    coin = _free_coin(s)
    op.ioc(coin, True, 25)
    t_manual = time.time() * 1000
    # Killed at once, before hip3's exits had time to act: the restarted tracker finds it without a record.
    old = s.kill_actor("position_tracker")
    assert wait_until(lambda: s.back("position_tracker", old), 20), s.actor("position_tracker")
    old = s.kill_actor("executor")
    assert wait_until(lambda: s.back("executor", old), 20), s.actor("executor")
    # hip3's exits close it (the session's time stop is 6 s), with a reduce-only order of hip3's.
    assert wait_until(lambda: coin not in s.sim_positions(), 30, 0.25), (s.sim_positions(), s.status()["trading"])
    assert any(f["side"] == "A" for f in _hip3_fills(s, coin, t_manual)), _hip3_fills(s, coin, t_manual)
    assert s.sim_positions().get(UNCONFIGURED) == float(hood)
    assert _outside(s) == {UNCONFIGURED: ("unconfigured", float(hood))}
    assert wait_until(lambda: s.status()["trading"]["outside_closes"] >= 1, 10, 0.2)
    assert s.wait_books_agree(20) == ""
    assert s.doubled_cloids() == []

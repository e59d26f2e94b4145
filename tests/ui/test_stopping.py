"""hip3.ui.stopping: what a stop leaves, stop --flatten's bounded wait, and when its latch is cleared."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hip3.messages import HardStopProgress
from hip3.runtime.hardstop import Latch
from hip3.ui.board import Board
from hip3.ui.stopping import (
    FLATTEN_REASON,
    FlattenWait,
    clear_after_flatten,
    flatten_before_stop,
    format_leftovers,
    stop_session,
)
from tests.ui.samples import order, position, snapshot


def _status(latched: bool = True, epoch: int = 3, done: bool = False, positions: int = 0, orders: int = 0,
            running: bool = True, prog_epoch: int | None = None) -> dict[str, Any]:
    return {"running": running,
            "hard_stop": {"latched": latched, "epoch": epoch, "reason": FLATTEN_REASON,
                          "flatten": {"epoch": epoch if prog_epoch is None else prog_epoch, "done": done}},
            "trading": {"positions": [{"coin": "xyz:GOLD"}] * positions, "open_orders": orders}}


def test_flatten_wait_needs_the_executors_done_for_its_epoch_and_an_empty_view() -> None:
    w = FlattenWait(epoch=3, deadline_s=10.0)
    assert w.check(_status(done=False), 1.0) == "wait"
    assert w.check(_status(done=True, positions=1), 1.0) == "wait"  # done, but a late fill showed up
    assert w.check(_status(done=True, orders=1), 1.0) == "wait"
    assert w.check(_status(done=True, prog_epoch=2), 1.0) == "wait"  # an earlier latch's flatten
    assert w.check(_status(done=True), 1.0) == "flat"
    assert w.check(_status(done=False, positions=2), 10.0) == "timeout" and (w.positions, w.open_orders) == (2, 0)
    assert w.check(_status(latched=False), 1.0) == "reset"
    assert w.check(_status(epoch=4), 1.0) == "reset"  # reset and latched again by someone else
    assert w.check(_status(running=False), 1.0) == "gone"


class FakeSupervisor:
    """Answers the CLI's requests like the supervisor does; the flatten completes after ``flat_after`` polls."""

    def __init__(self, latched: bool = False, flat_after: int = 2) -> None:
        self.latched, self.epoch, self.flat_after, self.polls = latched, 5 if latched else 4, flat_after, 0
        self.requests: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        if body["cmd"] == "hardstop":
            self.latched, self.epoch = True, self.epoch + 1
            return {"ok": True, "changed": True, "hard_stop": {"latched": True, "epoch": self.epoch,
                                                               "reason": "operator: " + body["reason"]}}
        if self.latched:
            self.polls += 1
        done = self.latched and self.polls > self.flat_after
        return _status(latched=self.latched, epoch=self.epoch, done=done, positions=0 if done else 1)


def test_flatten_before_stop_latches_then_waits_for_flat() -> None:
    sup, said, now = FakeSupervisor(), [], [0.0]
    res = flatten_before_stop(sup, 30.0, said.append, clock=lambda: now[0],
                              sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert res.flat and res.ours and res.epoch == 5
    assert {"cmd": "hardstop", "reason": "stop --flatten"} in sup.requests
    assert said[0].startswith("flattening: hard stop latched (epoch 5)") and said[-1].startswith("flat:")


def test_flatten_before_stop_on_a_latched_stop_waits_for_it_and_does_not_own_it() -> None:
    sup = FakeSupervisor(latched=True)
    res = flatten_before_stop(sup, 30.0, lambda _s: None, clock=lambda: 0.0, sleep=lambda _s: None)
    assert res.flat and not res.ours and res.epoch == 5
    assert all(r["cmd"] == "status" for r in sup.requests)  # it never latched (nor re-latched) anything


def test_flatten_before_stop_times_out_with_one_clear_line_and_does_not_stop() -> None:
    sup, now = FakeSupervisor(flat_after=10**9), [0.0]
    res = flatten_before_stop(sup, 2.0, lambda _s: None, clock=lambda: now[0],
                              sleep=lambda s: now.__setitem__(0, now[0] + s), poll_s=0.5)
    assert not res.flat and res.ours
    assert res.why.startswith("could not flatten within 2 s: 1 position and 0 open orders remain")
    assert "keeps running with the hard stop LATCHED" in res.why
    assert not any(r["cmd"] == "stop" for r in sup.requests)
    assert 2.0 <= now[0] <= 2.5  # bounded


def test_format_leftovers_lists_everything_left_or_says_nothing_is() -> None:
    board = Board(mono_ns=lambda: 0)
    snap = snapshot((position("xyz:GOLD", True, "0.5", "2000"),), (order("xyz:GOLD", 9, False, "0.5", "2100"),))
    lines = format_leftovers(board.left(snap))
    assert lines[0].startswith("LEFT OPEN at the exchange, no longer managed by hip3: 1 position, 1 open order")
    assert lines[1] == "  position xyz:GOLD long 0.5 @ 2000"
    assert lines[2] == "  order    xyz:GOLD sell 0.5 @ 2100 (oid 9)"
    assert "stop --flatten" in lines[3]
    assert format_leftovers(board.left(snapshot()))[0].startswith("left at the exchange: no open position, no open")
    assert "NOT synced" in format_leftovers(board.left(snapshot(synced=False)))[0]
    assert "UNKNOWN" in format_leftovers(board.left(None))[0]
    assert "UNKNOWN" in format_leftovers(None)[0]  # an older supervisor's reply without the listing


def _sup(run_dir: Any, *, epoch_asked: int | None, done: bool = True, positions: tuple[Any, ...] = (),
         reason: str = FLATTEN_REASON) -> SimpleNamespace:
    latch = Latch(run_dir)
    latch.latch(reason)
    e = latch.state.epoch
    board = Board(mono_ns=lambda: 0)
    logged: list[str] = []
    return SimpleNamespace(
        stop_request={"cmd": "stop"} if epoch_asked is None else {"cmd": "stop", "clear_hardstop_epoch": epoch_asked},
        latch=latch, board=board, trading=SimpleNamespace(snapshot=snapshot(positions)),
        hardstop_progress=HardStopProgress(epoch=e, positions=0, open_orders=0, attempts=1, done=done, alert=False),
        log=SimpleNamespace(warning=lambda ev, **_kw: logged.append(ev)), logged=logged, epoch=e)


@pytest.mark.parametrize("case", ["ok", "not asked", "other epoch", "not done", "position left", "other reason"])
def test_the_latch_is_cleared_only_when_stop_flatten_earned_it(run_dir: Any, case: str) -> None:
    sup = _sup(run_dir, epoch_asked=None if case == "not asked" else 1 if case != "other epoch" else 7,
               done=case != "not done",
               positions=(position("xyz:GOLD", True, "1", "1"),) if case == "position left" else (),
               reason="operator: something else" if case == "other reason" else FLATTEN_REASON)
    assert sup.epoch == 1
    cleared = clear_after_flatten(sup)  # type: ignore[arg-type]
    assert cleared is (case == "ok")
    assert Latch.load(run_dir).latched is (case != "ok")
    assert sup.logged == (["hardstop_cleared_after_flatten"] if case == "ok" else [])


def test_stop_session_stops_waits_and_lists_what_is_left(run_dir: Any) -> None:
    board = Board(mono_ns=lambda: 0)
    left = board.left(snapshot((position("xyz:GOLD", True, "0.5", "2000"),)))
    sent: list[dict[str, Any]] = []
    running = [True]

    def request(body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        running[0] = body["cmd"] != "stop"
        return {"ok": True, "left": left}

    said: list[str] = []
    code = stop_session(request, lambda: 123 if running[0] else None, run_dir, False, 30.0, 5.0, said.append)
    assert code == 0 and sent == [{"cmd": "stop"}]
    assert said[0] == "hip3 stopped" and said[1].startswith("LEFT OPEN at the exchange")
    assert "  position xyz:GOLD long 0.5 @ 2000" in said[1]


def test_stop_session_that_cannot_flatten_does_not_stop(run_dir: Any) -> None:
    sup = FakeSupervisor(flat_after=10**9)
    said: list[str] = []

    def request(body: dict[str, Any]) -> dict[str, Any]:
        reply = sup(body)
        return {**reply, "left": Board(mono_ns=lambda: 0).left(snapshot((position("xyz:GOLD", True, "1", "1"),)))}

    code = stop_session(request, lambda: 123, run_dir, True, 0.0, 5.0, said.append)
    assert code == 1 and not any(r["cmd"] == "stop" for r in sup.requests)
    assert any(s.startswith("could not flatten within 0 s") for s in said)
    assert said[-1].startswith("LEFT OPEN at the exchange") and "stop --flatten" not in said[-1]


def test_stop_session_without_a_supervisor(run_dir: Any) -> None:
    said: list[str] = []
    assert stop_session(lambda b: {}, lambda: None, run_dir, False, 1.0, 1.0, said.append) == 0
    assert stop_session(lambda b: {}, lambda: None, run_dir, True, 1.0, 1.0, said.append) == 1
    assert "nothing can flatten" in said[-1]

"""hip3.positions.ownership and hip3.positions.ownership_ledger: whose part of a position is whose, what each actor
sees, and that the answer survives a restart (the ledger file) and a gap (the exchange's fill history)."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hip3.execution.gates import ExecutorGates, MarketSpec
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.execution.soft_gates import SoftGates
from hip3.hyperliquid.wire import HIP3_CLOID_PREFIX, is_hip3_cloid, is_valid_cloid, new_cloid
from hip3.messages import EntryIntent, OpenOrder, OrderFilled, Position, PositionSnapshot, UserFill
from hip3.positions import ExchangePosition, PositionBook
from hip3.positions.ownership import blocking_position, clamp_own, own_after_fill, split
from hip3.positions.ownership_ledger import FILE_NAME, OwnershipLedger, PositionOwnership, parse_history, rebuild_own

D = Decimal
OWN = new_cloid()
CONFIGURED = ("xyz:GOLD", "xyz:SILVER")


def test_hips_client_order_ids_carry_its_prefix_and_stay_valid_and_unique() -> None:
    ids = {new_cloid() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(is_valid_cloid(c) and is_hip3_cloid(c) and c.startswith(HIP3_CLOID_PREFIX) for c in ids)
    assert not is_hip3_cloid(None)
    assert not is_hip3_cloid("0x" + "ab" * 16)
    assert not is_hip3_cloid(HIP3_CLOID_PREFIX)  # the prefix alone is not a cloid


@pytest.mark.parametrize(("own", "net_before", "fill", "is_own", "expected"), [
    ("0", "0", "1", True, "1"),        # hip3 opens: all hip3's
    ("0", "0", "1", False, "0"),       # the operator opens: all manual
    ("1", "1", "0.5", False, "1"),     # the operator adds to hip3's long: a manual part beside it
    ("1", "1", "-0.4", False, "0.6"),  # the operator reduces hip3's long: hip3's part shrinks
    ("1", "1", "-1.4", False, "0"),    # ... through zero: the new short is the operator's
    ("1", "1.5", "-1", True, "0"),     # hip3's exit of its part leaves the operator's 0.5
    ("0", "1", "-1.5", True, "-0.5"),  # hip3 flips the operator's long: the short is hip3's
    ("0.6", "1", "-1", False, "0"),    # flat: nobody's
    ("0", "-2", "-1", True, "-1"),     # hip3 adds to a manual short
])
def test_the_one_rule(own: str, net_before: str, fill: str, is_own: bool, expected: str) -> None:
    assert own_after_fill(D(own), D(net_before), D(fill), is_own) == D(expected)


def test_clamp_never_exceeds_the_net_nor_takes_the_other_side() -> None:
    assert clamp_own(D(2), D(1)) == 1
    assert clamp_own(D(-2), D(-1)) == -1
    assert clamp_own(D(1), D(-1)) == 0
    assert clamp_own(D(1), D(0)) == 0
    assert clamp_own(D("0.3"), D(1)) == D("0.3")


def _pos(coin: str, signed: str, owner: str = "hip3") -> Position:
    s = D(signed)
    return Position(coin=coin, asset=1, is_long=s > 0, size=abs(s), entry_px=D(100), opened_ms=1, owner=owner)


def _snap(*positions: Position, orders: tuple[OpenOrder, ...] = (), version: int = 1) -> PositionSnapshot:
    return PositionSnapshot(version=version, synced=True, positions=positions, open_orders=orders,
                            realized_pnl_usd=D(0), fees_usd=D(0))


def _order(coin: str, cloid: str | None, oid: int) -> OpenOrder:
    return OpenOrder(coin=coin, asset=1, oid=oid, cloid=cloid, is_buy=True, limit_px=D(90), sz=D(1), reduce_only=False)


def test_split_in_leave_and_adopt_mode() -> None:
    book = _snap(_pos("xyz:GOLD", "1.5"), _pos("xyz:SILVER", "-2"), _pos("xyz:HOOD", "3"),
                 orders=(_order("xyz:GOLD", OWN, 1), _order("xyz:GOLD", None, 2), _order("xyz:HOOD", None, 3)))
    own = {"xyz:GOLD": D(1)}
    leave = split(book, own, CONFIGURED, "leave")
    assert [(p.coin, p.owner, p.size, p.is_long) for p in leave.positions] == [("xyz:GOLD", "hip3", D(1), True)]
    assert [(p.coin, p.owner, p.size) for p in leave.outside] == [
        ("xyz:GOLD", "manual", D("0.5")), ("xyz:SILVER", "manual", D(2)), ("xyz:HOOD", "unconfigured", D(3))]
    assert [o.oid for o in leave.open_orders] == [1] and [o.oid for o in leave.outside_orders] == [2, 3]
    assert blocking_position(leave, "xyz:SILVER") is not None
    assert blocking_position(leave, "xyz:HOOD") is None  # never traded anyway; nothing to block
    adopt = split(book, own, CONFIGURED, "adopt")
    assert [(p.coin, p.owner, p.size) for p in adopt.positions] == [
        ("xyz:GOLD", "adopted", D("1.5")), ("xyz:SILVER", "adopted", D(2))]
    assert [(p.coin, p.owner) for p in adopt.outside] == [("xyz:HOOD", "unconfigured")]
    assert [o.oid for o in adopt.open_orders] == [1, 2] and [o.oid for o in adopt.outside_orders] == [3]
    assert blocking_position(adopt, "xyz:SILVER") is None


def _gates() -> ExecutorGates:
    specs = {c: MarketSpec(coin=c, asset=i, sz_decimals=2) for i, c in enumerate(CONFIGURED)}
    gates = ExecutorGates(ExecutorParams(), SoftGates(SoftGateParams()), specs)
    gates.set_mark("xyz:GOLD", D(100))
    gates.set_mark("xyz:SILVER", D(100))
    return gates


def _intent(coin: str, asset: int) -> EntryIntent:
    return EntryIntent(intent_id=f"e-{coin}", coin=coin, asset=asset, is_buy=True, px=D(100), sz=D("0.15"),
                       reduce_only=False, valid_until_ns=10**18, origin_recv_ns=1, created_ns=1, edge_bps=20.0,
                       signal_id="s")


def test_gates_outside_positions_neither_count_nor_need_a_mark_and_a_manual_one_blocks_its_market() -> None:
    book = _snap(_pos("xyz:HOOD", "50"), _pos("xyz:SILVER", "-2"))  # no mark for HOOD; SILVER by hand
    snap = split(book, {}, CONFIGURED, "leave")
    v = _gates().evaluate(_intent("xyz:GOLD", 0), snapshot=snap, hard_stop_latched=False, now_ns=1, now_ms=1)
    assert v.accepted, v
    v = _gates().evaluate(_intent("xyz:SILVER", 1), snapshot=snap, hard_stop_latched=False, now_ns=1, now_ms=1)
    assert (v.outcome, v.reason) == ("skipped", "ManualPositionOpen")


def test_hard_stop_flattens_what_hip3_manages_only() -> None:
    specs = {c: MarketSpec(coin=c, asset=i, sz_decimals=2) for i, c in enumerate(CONFIGURED)}
    book = _snap(_pos("xyz:GOLD", "1.5"), _pos("xyz:HOOD", "3"), orders=(_order("xyz:GOLD", None, 2),))
    marks = {"xyz:GOLD": D(100)}
    for policy, size, cancels in (("leave", D(1), 0), ("adopt", D("1.5"), 1)):
        fl = HardStopFlattener(RiskParams(), specs)
        fl.start(1, 0)
        step = fl.step(snapshot=split(book, {"xyz:GOLD": D(1)}, CONFIGURED, policy), marks=marks, inflight_posts=0,
                       now_ns=1)
        assert [(o.coin, o.sz, o.reduce_only) for o in step.orders] == [("xyz:GOLD", size, True)], policy
        assert len(step.cancels) == cancels and not step.problems, (policy, step.problems)


def _fill(coin: str, sz: str, start: str, t: int, tid: int, cloid: str | None) -> dict[str, Any]:
    s = D(sz)
    row: dict[str, Any] = {"coin": coin, "px": "100", "sz": str(abs(s)), "side": "B" if s > 0 else "A", "time": t,
                           "startPosition": start, "oid": tid, "tid": tid, "fee": "0.01"}
    if cloid is not None:
        row["cloid"] = cloid
    return row


def test_rebuild_from_history_needs_the_whole_episode_gap_free_and_current() -> None:
    rows = [  # newest first, as the exchange answers
        _fill("xyz:GOLD", "0.5", "1", 40, 4, None),   # the operator adds
        _fill("xyz:GOLD", "1", "0", 30, 3, OWN),      # hip3 opens from flat
        _fill("xyz:GOLD", "-2", "2", 20, 2, None),    # an older episode, closed
        _fill("xyz:GOLD", "2", "0", 10, 1, OWN),
    ]
    fills, bad = parse_history([*rows, {"coin": "xyz:GOLD"}])
    assert bad == 1
    assert rebuild_own(fills, D("1.5")) == D(1)
    assert rebuild_own(fills, D(2)) is None            # not current (a newer fill is missing)
    assert rebuild_own(fills[:1], D("1.5")) is None    # the opening fill is older than the history
    assert rebuild_own([fills[0], fills[2]], D("1.5")) is None  # a gap in the chain
    assert rebuild_own(list(reversed(fills)), D("1.5")) == D(1)  # any order in, (time, tid) decides


def _ledger_book(tmp: Path) -> tuple[PositionOwnership, PositionBook]:
    return PositionOwnership(CONFIGURED, "leave", tmp / FILE_NAME), PositionBook({"xyz:GOLD": 1, "xyz:SILVER": 2})


def _apply_fill(o: PositionOwnership, book: PositionBook, cloid: str | None, sz: str, tid: int) -> None:
    s = D(sz)
    if cloid is not None and is_hip3_cloid(cloid):  # hip3's: the post response first, as live
        res = book.on_order_filled(OrderFilled(cloid=cloid, coin="xyz:GOLD", oid=tid, total_sz=abs(s), avg_px=D(100),
                                               is_buy=s > 0, reduce_only=False, recv_ns=1), tid)
    else:
        res = book.on_user_fill(UserFill(coin="xyz:GOLD", px=D(100), sz=abs(s), is_buy=s > 0, time_ms=tid, oid=tid,
                                         tid=tid, cloid=cloid, fee=D(0), closed_pnl=D(0), crossed=True,
                                         is_snapshot=False, recv_ns=1), tid)
    o.on_result(res, book, tid)


def test_live_fills_then_a_restart_from_the_file(tmp_path: Path) -> None:
    o, book = _ledger_book(tmp_path)
    book.apply_rest_positions([], 0)
    _apply_fill(o, book, OWN, "1", 10)
    _apply_fill(o, book, None, "0.5", 11)
    assert o.ledger.own("xyz:GOLD") == 1
    assert [(p.coin, p.owner, p.size) for p in o.view(book.snapshot()).positions] == [("xyz:GOLD", "hip3", D(1))]
    assert o.ledger.save() is None and not o.ledger.dirty
    # A new process: the ledger from the file; the REST sync shows the same net: nothing is lost.
    o2, book2 = _ledger_book(tmp_path)
    assert o2.ledger.load() is None
    rows = [ExchangePosition(coin="xyz:GOLD", szi=D("1.5"), entry_px=D(100))]
    res = book2.apply_rest_positions(rows, 100)
    assert o2.on_resync(res, book2, rows, None, 100) == ([], [])
    view = o2.view(book2.snapshot())
    assert [(p.owner, p.size) for p in view.positions] == [("hip3", D(1))]
    assert [(p.owner, p.size) for p in view.outside] == [("manual", D("0.5"))]
    # The operator reduced the position while no tracker listened: a resync only ever clamps hip3's part.
    rows = [ExchangePosition(coin="xyz:GOLD", szi=D("0.4"), entry_px=D(100))]
    o2.on_resync(book2.apply_rest_positions(rows, 200), book2, rows, None, 200)
    assert o2.ledger.own("xyz:GOLD") == D("0.4")


def test_a_fill_no_tracker_saw_is_recovered_from_the_history(tmp_path: Path) -> None:
    """hip3's entry filled while the tracker was down (its post response reached nobody): the restarted
    tracker's first sync brings the history, which shows hip3's cloid, so the position is not manual."""
    o, book = _ledger_book(tmp_path)
    assert o.ledger.load() is None  # no file: a first start, or the file was lost
    rows = [ExchangePosition(coin="xyz:GOLD", szi=D("1.5"), entry_px=D(100)),
            ExchangePosition(coin="xyz:SILVER", szi=D(-2), entry_px=D(100))]
    history, _ = parse_history([_fill("xyz:GOLD", "0.5", "1", 40, 4, None), _fill("xyz:GOLD", "1", "0", 30, 3, OWN)])
    res = book.apply_rest_positions(rows, 100)
    changes, uncovered = o.on_resync(res, book, rows, history, 50)
    assert changes == [("xyz:GOLD", D(0), D(1))] and uncovered == ["xyz:SILVER"]
    view = o.view(book.snapshot())
    assert [(p.coin, p.owner, p.size) for p in view.positions] == [("xyz:GOLD", "hip3", D(1))]
    assert {(p.coin, p.owner) for p in view.outside} == {("xyz:GOLD", "manual"), ("xyz:SILVER", "manual")}


def test_an_unreadable_ledger_is_reported_and_treated_as_empty(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_text("{not json")
    led = OwnershipLedger(path)
    assert "unusable" in (led.load() or "")
    assert led.own_by_coin == {}
    path.unlink()
    path.mkdir()
    assert "cannot read" in (OwnershipLedger(path).load() or "")
    led = OwnershipLedger(path)
    led.on_fill("xyz:GOLD", OWN, True, D(1), D(1), 1)
    assert "cannot write" in (led.save() or "") and led.dirty  # kept, retried on the next change


def test_the_file_is_replaced_atomically_and_holds_only_open_coins(tmp_path: Path) -> None:
    led = OwnershipLedger(tmp_path / FILE_NAME)
    led.on_fill("xyz:GOLD", OWN, True, D(1), D(1), 1)
    led.on_fill("xyz:SILVER", None, False, D(2), D(-2), 2)
    assert led.save() is None
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {
        "version": 1, "own": {"xyz:GOLD": "1"}, "net": {"xyz:GOLD": "1", "xyz:SILVER": "-2"}}
    assert oct(os.stat(tmp_path / FILE_NAME).st_mode & 0o777) == "0o600"
    led.on_fill("xyz:GOLD", OWN, False, D(1), D(0), 3)
    assert led.save() is None
    assert json.loads((tmp_path / FILE_NAME).read_text())["own"] == {}
    assert not list(tmp_path.glob("*.tmp"))


def test_closes_carry_their_owner_before_the_closing_fill(tmp_path: Path) -> None:
    o, book = _ledger_book(tmp_path)
    book.apply_rest_positions([], 0)
    _apply_fill(o, book, OWN, "1", 10)
    book_res = book.on_user_fill(UserFill(coin="xyz:GOLD", px=D(101), sz=D(1), is_buy=False, time_ms=11, oid=11,
                                          tid=11, cloid=new_cloid(), fee=D(0), closed_pnl=D(1), crossed=True,
                                          is_snapshot=False, recv_ns=1), 11)
    assert [c.owner for c in o.on_result(book_res, book, 11)] == ["hip3"]
    _apply_fill(o, book, None, "2", 12)  # the operator opens one, then closes it
    res = book.on_user_fill(UserFill(coin="xyz:GOLD", px=D(99), sz=D(2), is_buy=False, time_ms=13, oid=13, tid=13,
                                     cloid=None, fee=D(0), closed_pnl=D(-2), crossed=True, is_snapshot=False,
                                     recv_ns=1), 13)
    assert [c.owner for c in o.on_result(res, book, 13)] == ["manual"]


def test_outside_positions_are_reported_once_on_appearance_and_once_when_gone(tmp_path: Path) -> None:
    o, _ = _ledger_book(tmp_path)
    with_hood = split(_snap(_pos("xyz:HOOD", "3")), {}, CONFIGURED, "leave")
    bigger = split(_snap(_pos("xyz:HOOD", "4"), version=2), {}, CONFIGURED, "leave")
    assert [p.coin for p in o.transitions(with_hood, 0)[0]] == ["xyz:HOOD"]
    assert o.transitions(bigger, 0) == ([], [])  # a size change is not news
    unsynced = PositionSnapshot(version=3, synced=False, positions=(), open_orders=(), realized_pnl_usd=D(0),
                                fees_usd=D(0))
    assert o.transitions(o.view(unsynced), 0) == ([], [])  # a restarting tracker's empty book is not a close
    gone = o.transitions(split(_snap(version=4), {}, CONFIGURED, "leave"), 0)
    assert gone[0] == [] and [p.coin for p in gone[1]] == ["xyz:HOOD"]


def test_a_history_without_any_hip3_fill_never_lowers_hips_part(tmp_path: Path) -> None:
    """Were the exchange's rows to lack their cloid, a rebuild would call every position manual: hip3's
    part may only be lowered by a history that shows hip3's own fills somewhere."""
    o, book = _ledger_book(tmp_path)
    book.apply_rest_positions([], 0)
    _apply_fill(o, book, OWN, "1", 10)
    rows = [ExchangePosition(coin="xyz:GOLD", szi=D(1), entry_px=D(100))]
    no_cloids, _ = parse_history([_fill("xyz:GOLD", "1", "0", 10, 10, None)])
    assert o.on_resync(book.apply_rest_positions(rows, 100), book, rows, no_cloids, 50) == ([], ["xyz:GOLD"])
    assert o.ledger.own("xyz:GOLD") == 1
    # The same episode, while the history shows one of hip3's fills elsewhere: the history wins.
    other, _ = parse_history([_fill("xyz:GOLD", "1", "0", 10, 10, None), _fill("xyz:SILVER", "1", "0", 9, 9, OWN)])
    assert o.on_resync(book.apply_rest_positions(rows, 200), book, rows, other, 150) == (
        [("xyz:GOLD", D(1), D(0))], [])


def test_a_part_a_resync_added_is_reported_after_a_history_looked_at_it(tmp_path: Path) -> None:
    """A fill in a reconnect window reaches the book through a resync, as "manual" (the safe side) until the
    history sync asked for next shows whose it was: the operator is not alerted in between."""
    o, book = _ledger_book(tmp_path)
    rows = [ExchangePosition(coin="xyz:GOLD", szi=D(1), entry_px=D(100))]
    o.on_resync(book.apply_rest_positions(rows, 1000), book, rows, None, 1000)
    view = o.view(book.snapshot())
    assert [(p.coin, p.owner) for p in view.outside] == [("xyz:GOLD", "manual")]  # left alone meanwhile
    assert o.transitions(view, 1500) == ([], [])  # not reported yet
    history, _ = parse_history([_fill("xyz:GOLD", "1", "0", 900, 1, OWN)])
    assert o.on_resync(book.apply_rest_positions(rows, 2000), book, rows, history, 2000)[0] == [
        ("xyz:GOLD", D(0), D(1))]
    view = o.view(book.snapshot())
    assert not view.outside and o.transitions(view, 2100) == ([], [])  # hip3's: never alerted
    # A part no history explains is reported once a history looked at it (or after 10 s without one).
    rows = [ExchangePosition(coin="xyz:SILVER", szi=D(-2), entry_px=D(100))]
    o.on_resync(book.apply_rest_positions(rows, 3000), book, rows, None, 3000)
    assert o.transitions(o.view(book.snapshot()), 3100) == ([], [])
    appeared, _ = o.transitions(o.view(book.snapshot()), 13_000)
    assert [(p.coin, p.owner) for p in appeared] == [("xyz:SILVER", "manual")]

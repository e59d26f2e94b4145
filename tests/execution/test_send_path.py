"""The executor's send path (``hip3.execution.send_path``) without sockets: a scripted transport that refuses
posts (rate limit, disconnect) or drops the connection mid-loop. Guards against a refused post requeued with
requeues+1 and taken straight back by the same loop until the flatten was given up ("requeue_exhausted") and
counted as a flatten failure, a hard stop latched by a rate limit."""

from __future__ import annotations

import time
from pathlib import Path

from hip3.execution.send_path import Wake
from hip3.hyperliquid.ws import WsBudgetError, WsNotConnected
from hip3.messages import AssetCtx, OrderRejected, OrderSubmitted
from tests.execution.helpers import GOLD, SILVER, entry, flatten, pos, snap
from tests.execution.send_helpers import NOW_MS, Rig, ScriptedWs, published


def test_rate_limited_flatten_is_requeued_without_spending_its_budget_and_no_hardstop(tmp_path: Path) -> None:
    ws = ScriptedWs([WsBudgetError("2000 messages sent in the last 60 s")])
    ex = Rig(tmp_path, ws, max_requeues=2)
    assert ex.core.submit_flatten(flatten(SILVER), now_ns=0).accepted
    v, _ = ex.core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.accepted
    ex.send.pump()
    assert ws.posts == 1  # one refused post, then the pump stops (no storm within the loop)
    rejected = [m for m in published(ex) if isinstance(m, OrderRejected)]
    assert [(r.coin, r.benign) for r in rejected] == [(GOLD, True)]  # the entry dropped, released
    assert not ex.core.gates.pending.is_pending(GOLD)
    ex.send.pump()  # an intake or a response before the next tick: still paused
    assert ws.posts == 1
    for _ in range(10):  # ten ticks still rate-limited: far past max_requeues
        ex.send.on_tick()
    assert ws.posts == 11
    assert SILVER in ex.core.tracker.flatten_in_flight()  # never given up
    assert ex.core.risk.flatten_failures == 0 and ex.core.take_hardstop_request() is None
    assert not any(isinstance(m, OrderRejected) and m.reason == "requeue_exhausted" for m in published(ex))
    ws.script = [1]  # the budget is back
    ex.send.on_tick()
    assert any(isinstance(m, OrderSubmitted) and m.coin == SILVER for m in published(ex))


def test_disconnect_while_pumping_stops_the_loop_and_waits_for_the_reconnect(tmp_path: Path) -> None:
    ws = ScriptedWs([WsNotConnected("post while not connected")])
    ex = Rig(tmp_path, ws, max_requeues=0)
    ex.core.submit_flatten(flatten(SILVER), now_ns=0)
    for _ in range(5):
        ex.send.pump()
        ex.send.paused = False  # (as a tick would)
    assert ws.posts == 5 and ex.core.risk.flatten_failures == 0  # max_requeues=0: any spend gives up
    assert SILVER in ex.core.tracker.flatten_in_flight()


def _journal_due_within_ms(ex: Rig, ms: float) -> bool:
    timer = ex.send.journal_timer
    assert isinstance(timer, Wake)
    return timer.due_ns <= time.monotonic_ns() + int(ms * 1_000_000)


def test_state_is_rechecked_every_turn_and_the_journal_synced_by_its_timer(tmp_path: Path) -> None:
    ws = ScriptedWs(["drop", 1])
    # One order per batch: two batches, the connection drops while sending the first.
    ex = Rig(tmp_path, ws, max_batch_size=1)
    for coin in (GOLD, SILVER):
        v, _ = ex.core.submit_entry(entry(coin), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
        assert v.accepted
    journal = ex.journal
    ex.send.pump()
    assert ws.posts == 1  # the second batch waits for the reconnect
    assert journal.syncs == 0 and _journal_due_within_ms(ex, 5)  # not in the send's loop turn
    ex.send.sync_journal()
    assert journal.syncs == 1
    ws.state = "connected"
    ex.send.pump()
    assert ws.posts == 2 and journal.syncs == 1
    ex.send.sync_journal()
    assert journal.syncs == 2
    assert [m.coin for m in published(ex) if isinstance(m, OrderSubmitted)] == [GOLD, SILVER]


def test_one_sync_for_several_batches(tmp_path: Path) -> None:
    ws = ScriptedWs([1])
    ex = Rig(tmp_path, ws, max_batch_size=1, max_total_notional_usd=1000.0)
    for coin in (GOLD, SILVER):
        ex.core.submit_entry(entry(coin), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    journal = ex.journal
    ex.send.pump()
    assert ws.posts == 2 and journal.syncs == 0  # both frames left without waiting for the disk
    lines = (tmp_path / "sent_intents.log").read_text().splitlines()
    assert len(lines) == 2  # both lines written (each before its frame)
    ex.send.sync_journal()
    ex.send.sync_journal()
    assert journal.syncs == 2 and not journal._dirty  # the second call has nothing to sync


def test_hardstop_flatten_prices_with_the_gates_marks(tmp_path: Path) -> None:
    """Review finding 10: one source of marks (the gates'), also for the hard-stop flattener."""
    ws = ScriptedWs([1])
    ex = Rig(tmp_path, ws)
    ex.core.gates.set_mark(GOLD, 0.0)  # unknown
    ex.intake.on_message(AssetCtx(coin=GOLD, oracle_px=12.0, mark_px=12.0, mid_px=12.0, funding=0.0, open_interest=0.0,
                           recv_ns=0))
    assert ex.core.gates.marks[GOLD] == ex.core.gates.mark(GOLD)
    ex.send.snapshot = snap(pos(GOLD, "2"))
    ex.flattener.start(1, time.monotonic_ns())
    ex.core.set_hard_stop(True, 0)
    ex.intake.hardstop_step()
    subs = [m for m in published(ex) if isinstance(m, OrderSubmitted)]
    assert len(subs) == 1 and subs[0].coin == GOLD and subs[0].reduce_only and subs[0].kind == "hardstop"


def test_entry_waiting_for_the_message_budget_expires_instead_of_leaving_late(tmp_path: Path) -> None:
    """The budget is used up (``can_post`` says no): an accepted entry waits in its queue; once its
    intent's validity passes, the tick drops it (benign, its market released) and it is never sent, even
    when the budget comes back."""
    ws = ScriptedWs([1])
    ws.state = "budget"  # ScriptedWs.can_post is False unless "connected"
    ex = Rig(tmp_path, ws)
    now = time.monotonic_ns()
    v, _ = ex.core.submit_entry(entry(GOLD, valid_until_ns=now + 30_000_000), snapshot=snap(), now_ns=now,
                                now_ms=NOW_MS)
    assert v.accepted
    ex.send.pump()
    ex.send.on_tick()
    assert ws.posts == 0 and ex.core.gates.pending.is_pending(GOLD)  # still valid: waiting
    time.sleep(0.04)
    ex.send.on_tick()
    rejected = [m for m in published(ex) if isinstance(m, OrderRejected)]
    assert [(r.coin, r.reason, r.benign) for r in rejected] == [(GOLD, "expired before sending", True)]
    assert not ex.core.gates.pending.is_pending(GOLD)
    ws.state = "connected"
    ex.send.on_tick()
    assert ws.posts == 0 and not [m for m in published(ex) if isinstance(m, OrderSubmitted)]


def test_expired_entry_found_by_the_pump_is_reported_and_the_rest_sent(tmp_path: Path) -> None:
    ws = ScriptedWs([1])
    ex = Rig(tmp_path, ws, max_total_notional_usd=1000.0)
    now = time.monotonic_ns()
    for coin, valid in ((GOLD, now - 1), (SILVER, now + 10**10)):  # GOLD's validity passed in the queue
        v, _ = ex.core.submit_entry(entry(coin, valid_until_ns=valid), snapshot=snap(), now_ns=now - 2,
                                    now_ms=NOW_MS)
        assert v.accepted
    ex.send.pump()
    assert [m.coin for m in published(ex) if isinstance(m, OrderSubmitted)] == [SILVER]
    assert [(m.coin, m.reason) for m in published(ex) if isinstance(m, OrderRejected)] == [
        (GOLD, "expired before sending")]

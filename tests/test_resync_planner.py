"""The position tracker's resync decisions without a socket or a thread (``hip3.positions.planner``): when a
sync starts, how failures, suspect and stale answers delay the next one, and which feed connection a
completed sync vouches for."""

from __future__ import annotations

from hip3.positions import BookResult
from hip3.positions.planner import ResyncPlanner, SyncRequest

MS = 1_000_000
T_MS = 1_700_000_000_000


def _plan(interval_s: float = 60.0, unfunded_s: float = 5.0) -> ResyncPlanner:
    return ResyncPlanner(interval_s, unfunded_s)


def _next(p: ResyncPlanner, now_ns: int, *, synced: bool = True, needs: bool = False,
          latched: bool = False) -> SyncRequest | None:
    return p.next_request(now_ns, T_MS + now_ns // MS, book_synced=synced, needs_resync=needs,
                          hardstop_latched=latched)


def test_the_first_sync_asks_for_the_history_and_one_sync_runs_at_a_time() -> None:
    p = _plan()
    assert _next(p, 0, synced=False) == SyncRequest(T_MS, True)
    assert p.want()  # wanted again while the first runs...
    assert not p.want()  # ...said once
    assert _next(p, 10 * MS) is None  # one at a time
    assert p.on_answer(BookResult(), 20 * MS)
    req = _next(p, 30 * MS)
    assert req is not None and not req.history_wanted


def test_periodic_hard_stop_and_unfunded_cadences() -> None:
    p = _plan(interval_s=60.0, unfunded_s=5.0)
    _next(p, 0)
    p.on_answer(BookResult(), 0)
    assert _next(p, 59_999 * MS) is None and _next(p, 60_000 * MS) is not None
    p.on_answer(BookResult(), 60_000 * MS)
    assert _next(p, 60_999 * MS, latched=True) is None and _next(p, 61_000 * MS, latched=True) is not None
    p.on_answer(BookResult(), 61_000 * MS)
    p.unfunded = True
    assert _next(p, 65_999 * MS) is None and _next(p, 66_000 * MS) is not None
    p.on_answer(BookResult(), 66_000 * MS)
    assert _next(p, 66_001 * MS, needs=True) is not None  # the book asks: at once


def test_failures_back_off_to_ten_seconds_and_keep_the_history_wanted() -> None:
    p = _plan()
    now = 0
    delays = []
    for _ in range(7):
        req = _next(p, now, synced=False)
        assert req is not None
        delays.append(p.on_failed(req.history_wanted, now))
        assert _next(p, now + delays[-1] * MS - 1, synced=False) is None
        now += delays[-1] * MS
    assert delays == [500, 1000, 2000, 4000, 8000, 10_000, 10_000] and p.failures == 7
    req = _next(p, now, synced=False)
    assert req is not None and req.history_wanted  # the history the first sync wanted is still asked for
    p.on_answer(BookResult(), now)
    assert p.failures == 0


def test_suspect_and_stale_answers_are_asked_again_soon_not_at_once() -> None:
    p = _plan()
    _next(p, 0)
    assert not p.on_answer(BookResult(suspect=True), 0)  # not a sync: open orders not applied
    assert _next(p, 299 * MS) is None and _next(p, 300 * MS) is not None
    p.on_answer(BookResult(stale_skipped=["xyz:GOLD"]), 300 * MS)
    assert _next(p, 1299 * MS, needs=True) is None and _next(p, 1300 * MS, needs=True) is not None


def test_a_sync_vouches_only_for_the_connection_acked_before_it_was_asked_for() -> None:
    p = _plan()
    assert p.on_feed_state(1, user_ready=True, connected=True) == (
        False, ["user stream connection None -> 1", "user streams acked on connection 1"])
    _next(p, 0)
    p.on_answer(BookResult(), 0)
    assert p.synced_conn_id == 1
    # A reconnect: the book stops vouching, a sync runs at once, before the acks...
    unsync, reasons = p.on_feed_state(2, user_ready=False, connected=True)
    assert unsync and reasons == ["user stream connection 1 -> 2"]
    p.want()
    assert _next(p, MS) is not None
    # ...the acks come while it runs: it still vouches for connection 1 only.
    assert p.on_feed_state(2, user_ready=True, connected=True) == (False, ["user streams acked on connection 2"])
    p.want()
    p.on_answer(BookResult(), 2 * MS)
    assert p.synced_conn_id == 1
    req = _next(p, 3 * MS)  # the sync asked for after the acks (with the history: fills before them)
    assert req is not None and req.history_wanted
    p.on_answer(BookResult(), 4 * MS)
    assert p.synced_conn_id == 2

"""Admission (``hip3.execution.admission``): the address request budget with the flattens' reserve, the
pacing of entry posts within the WebSocket message budget, and the intake shedding. Pure, virtual clock."""

from __future__ import annotations

import itertools
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hip3.execution.admission import (
    THROTTLED_EVERY_NS,
    WS_MESSAGES_PER_MIN,
    Admission,
    LogBudget,
    PostPacer,
    RequestBudget,
)
from hip3.execution.batch import Batch, BatchLimits
from hip3.execution.core import ExecutionCore
from hip3.execution.journal import SentIntentJournal
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.hyperliquid.errors import rate_limit_error
from hip3.messages import RequestBudgetReading
from tests.execution.helpers import GOLD, MS, SILVER, SPECS, TSLA, entry, flatten, snap
from tests.terms_helpers import known_terms

NOW_MS = 1_700_000_000_000
S = 1_000_000_000


def reading(used: int, cap: int, requested_ms: int = NOW_MS, vlm: str = "0", surplus: int = 0) -> RequestBudgetReading:
    return RequestBudgetReading(cum_vlm_usd=Decimal(vlm), n_requests_used=used, n_requests_cap=cap,
                                n_requests_surplus=surplus, requested_ms=requested_ms)


def make_core(tmp_path: Path, **kw: Any) -> ExecutionCore:
    cl = itertools.count(1)
    j = SentIntentJournal(tmp_path, now_ms=NOW_MS, retention_ms=600_000)
    params = ExecutorParams(**{"max_total_notional_usd": 1000.0, **kw})
    core = ExecutionCore(params, RiskParams(), SoftGateParams(), SPECS, j, make_cloid=lambda: f"0x{next(cl):032x}",
                         terms=known_terms(SPECS))
    for c in SPECS:
        core.gates.set_mark(c, 10.0)
    return core


def sent(core: ExecutionCore, b: Batch, post_id: int, now_ns: int, now_ms: int = NOW_MS) -> None:
    core.prepare_send(b, now_ms)
    core.on_sent(b, post_id, post_id, now_ns)


# ---------------------------------------------------------------- the request budget


def test_budget_is_the_reading_plus_what_it_may_not_hold_yet() -> None:
    b = RequestBudget()
    assert not b.known
    b.charge(5, 0, throttled=False)
    b.resolve(5, NOW_MS - 10_000)  # answered long before the read: in it
    b.charge(3, 0, throttled=False)
    b.resolve(3, NOW_MS - 100)  # answered just before: the read may lag, counted again (the safe side)
    b.charge(2, 0, throttled=False)  # still in flight when the read was asked for: on top
    assert b.on_reading(reading(100, 10_000))
    assert b.known and b.used == 105 and b.room_orders() == 9_895
    b.charge(7, 0, throttled=False)  # sent after the read
    assert b.used == 112
    assert not b.on_reading(reading(50, 10_000, requested_ms=NOW_MS - 1))  # asked for earlier: stale
    assert b.used == 112
    b.resolve(9, NOW_MS + 100)
    assert b.on_reading(reading(117, 10_000, requested_ms=NOW_MS + 5_000))  # holds everything answered
    assert b.used == 117
    # Cancels: min(cap + 100,000, 2 × cap); a surplus bought with reserveRequestWeight adds to both.
    assert b.cancel_cap == 20_000
    assert b.on_reading(reading(117, 200_000, requested_ms=NOW_MS + 6_000, surplus=50))
    assert b.cap == 200_050 and b.cancel_cap == 300_050


def test_a_rate_limit_refusal_says_where_the_exchanges_count_stands() -> None:
    b = RequestBudget()
    assert not b.on_rate_limit_error("Simulated rejection", 1, 0)
    b.charge(4, 0, throttled=False)
    b.charge(1, 0, throttled=False)  # another post, still in flight
    b.resolve(4, NOW_MS)  # the refused one
    assert b.on_rate_limit_error(rate_limit_error(97_460, 97_456, "87457.46"), 4, 5 * S)
    assert b.known and b.used == 97_457 and b.cap == 97_456 and b.room_orders() == -1
    assert not b.allowance_free(14 * S) and b.allowance_free(15 * S)  # the exchange's slot was not free


def test_entries_stop_at_the_reserve_flattens_and_cancels_keep_going(tmp_path: Path) -> None:
    core = make_core(tmp_path, request_budget_reserve=10)
    adm = core.admission
    assert adm.entry_refusal(0, 0) == "RequestBudgetUnknown"  # entries wait for the first reading
    adm.on_reading(reading(88, 100))  # 12 left: an entry may take 2 of them
    assert adm.entry_refusal(0, 0) == ""
    assert adm.limits(0) == BatchLimits(cancels=112, reduce_only=12, new=2)  # cancels: 2 × cap
    for coin in (GOLD, SILVER, TSLA):
        v, _ = core.submit_entry(entry(coin), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
        assert v.accepted
    core.submit_flatten(flatten(GOLD), now_ns=0)
    b = core.next_batch(0)
    assert b is not None and [o.reduce_only for o in b.orders] == [True, False]  # the flatten + 1 entry: 2 requests
    sent(core, b, 1, 0)
    assert adm.budget.used == 90 and adm.entry_refusal(0, 0) == "RequestBudgetLow"
    core.scheduler.on_response(1)
    assert core.next_batch(1) is None  # the other two entries wait: the reserve is the flattens'
    core.submit_flatten(flatten(SILVER), now_ns=1)
    b = core.next_batch(1)
    assert b is not None and [(o.coin, o.reduce_only) for o in b.orders] == [(SILVER, True)]


def test_over_the_budget_one_priority_request_every_ten_seconds_and_no_entries(tmp_path: Path) -> None:
    core = make_core(tmp_path, request_budget_reserve=10)
    adm = core.admission
    adm.on_reading(reading(100, 100))
    assert adm.limits(0) == BatchLimits(cancels=100, reduce_only=1, new=0)  # cancels still have room
    core.submit_flatten(flatten(GOLD), now_ns=0)
    core.submit_flatten(flatten(SILVER), now_ns=0)
    b = core.next_batch(0)
    assert b is not None and len(b.orders) == 1
    sent(core, b, 1, 0)
    core.scheduler.on_response(1)
    assert core.next_batch(S) is None  # the allowance is spent for 10 s
    assert core.next_wakeup_ns(S) == THROTTLED_EVERY_NS  # the pump wakes when it comes free
    b = core.next_batch(THROTTLED_EVERY_NS)
    assert b is not None and [o.coin for o in b.orders] == [SILVER]


def test_unknown_budget_holds_no_priority_traffic() -> None:
    adm = Admission(ExecutorParams())
    limits = adm.limits(0)
    assert limits.cancels > 10**9 and limits.reduce_only > 10**9
    assert adm.may_send_other(0)  # the dead man's switch too


def test_dead_mans_switch_rearm_only_above_the_reserve() -> None:
    adm = Admission(ExecutorParams(request_budget_reserve=10))
    adm.on_reading(reading(89, 100))
    assert adm.may_send_other(0)
    adm.on_other_sent(0)
    assert not adm.may_send_other(0)


def test_entries_transition_is_reported_once_per_change() -> None:
    adm = Admission(ExecutorParams(request_budget_reserve=10))
    assert adm.entries_transition() is None
    adm.on_reading(reading(95, 100))
    assert adm.entries_transition() == ("", "RequestBudgetLow")
    assert adm.entries_transition() is None
    adm.on_reading(reading(0, 100, requested_ms=NOW_MS + 1))
    assert adm.entries_transition() == ("RequestBudgetLow", "")


def test_an_old_reading_stops_entries_not_flattens_until_a_new_one() -> None:
    """The tracker's reads keep failing: the executor's own count cannot see what another client of the same
    address spends, so past ``request_budget_max_age_polls`` polls entries stop (said once), flattens and
    cancels do not, and the next reading lets entries through again."""
    adm = Admission(ExecutorParams(request_budget_reserve=10, request_budget_poll_ms=30_000,
                                   request_budget_max_age_polls=5))
    assert adm.max_read_age_ms == 150_000
    adm.on_reading(reading(0, 10_000))
    adm.check_reading_age(NOW_MS + 150_000)  # exactly the limit: still trusted
    assert adm.entry_refusal(0, 0) == "" and adm.entries_transition() is None
    adm.check_reading_age(NOW_MS + 150_001)
    assert adm.entry_refusal(0, 0) == "RequestBudgetStale"
    lim = adm.limits(0)
    assert lim.new == 0 and lim.reduce_only > 0 and lim.cancels > 0  # flattens and cancels are not held
    notes = adm.take_notes()
    assert [n.event for n in notes] == ["request_budget_stale"] and notes[0].warning
    assert "150 s old (limit 150 s)" in notes[0].detail
    assert adm.stats(NOW_MS + 150_001)["request_budget_stale"] == 1
    adm.check_reading_age(NOW_MS + 200_000)
    assert adm.take_notes() == []  # once per change, not per check
    adm.on_reading(reading(5, 10_000, requested_ms=NOW_MS + 199_000))
    adm.check_reading_age(NOW_MS + 200_000)
    assert adm.entry_refusal(0, 0) == "" and adm.limits(0).new > 0
    assert [n.event for n in adm.take_notes()] == ["request_budget_ok"]


def test_an_old_reading_handed_to_a_restarted_executor_is_judged_by_when_it_was_read() -> None:
    """A restarted executor gets the tracker's last reading as state: its age counts from the read."""
    adm = Admission(ExecutorParams(request_budget_poll_ms=1_000, request_budget_max_age_polls=3))
    adm.on_reading(reading(0, 10_000, requested_ms=NOW_MS - 600_000))
    adm.check_reading_age(NOW_MS)
    assert adm.entry_refusal(0, 0) == "RequestBudgetStale"


def test_a_budget_known_only_from_a_rate_limit_refusal_is_not_aged() -> None:
    """Before any reading, a "Too many cumulative requests" refusal makes the budget known (over it: entries
    are refused as low, not as stale); a later reading ages as usual."""
    adm = Admission(ExecutorParams(request_budget_reserve=10, request_budget_poll_ms=1_000,
                                   request_budget_max_age_polls=2))
    adm.budget.charge(1, 0, throttled=False)
    adm.budget.resolve(1, NOW_MS)
    assert adm.budget.on_rate_limit_error(rate_limit_error(10_001, 10_000, "0"), 1, 0)
    adm.check_reading_age(NOW_MS + 3_600_000)
    assert not adm.reading_stale and adm.entry_refusal(0, 0) == "RequestBudgetLow"
    adm.on_reading(reading(0, 20_000, requested_ms=NOW_MS + 3_600_000))
    adm.check_reading_age(NOW_MS + 3_602_001)
    assert adm.entry_refusal(0, 0) == "RequestBudgetStale"


# ---------------------------------------------------------------- the WebSocket message budget


def test_pacer_burst_then_rate_and_never_more_than_burst_plus_rate_in_a_window() -> None:
    p = PostPacer(burst=5, rate_per_s=10.0)
    taken: list[int] = []
    now = 0
    while now < 60 * S:  # an entry post whenever a token is there, for a minute
        if p.ready(now):
            p.take(now)
            taken.append(now)
        else:
            now = p.next_ns(now)
            continue
    assert taken[:5] == [0] * 5 and len(taken) <= 5 + 600 + 1
    window: deque[int] = deque()
    for t in taken:  # every rolling 10 s window
        window.append(t)
        while window[0] <= t - 10 * S:
            window.popleft()
        assert len(window) <= 5 + 100 + 1


def test_entries_leave_room_in_every_minute_for_flattens(tmp_path: Path) -> None:
    """Offered far more entries than posts allow, for 70 virtual seconds: entry posts stay within the
    pacer's share of the exchange's 2,000 messages a minute, and every flatten leaves at once."""
    core = make_core(tmp_path, request_budget_reserve=10, max_concurrent_positions=100,
                     max_notional_per_market_usd=10**6, max_total_notional_usd=10**9, action_budget_orders=10**6)
    core.admission.on_reading(reading(0, 10**9))
    params = core.params
    entry_posts: deque[int] = deque()
    worst_entry_posts = 0
    flatten_waits = []
    post_id = 0
    coins = list(SPECS)
    for step in range(70_000):  # 1 ms steps: an entry per market every ms
        now = step * MS
        for c in coins:
            i = entry(c, valid_until_ns=now + 50 * MS)
            if not core.shed_entry(i, now):
                core.submit_entry(i, snapshot=snap(), now_ns=now, now_ms=NOW_MS)
        if step % 1000 == 500:
            core.submit_flatten(flatten(coins[step % 3], valid_until_ns=now + S), now_ns=now)
            flat_at = now
        core.drop_expired_entries(now)
        while (b := core.next_batch(now)) is not None:
            post_id += 1
            sent(core, b, post_id, now)
            core.scheduler.on_response(post_id)  # answered at once
            for o in b.orders:
                core.tracker.fail([o], "test", now, benign=True)  # terminal: marks released
                if o.reduce_only:
                    flatten_waits.append(now - flat_at)
            if any(not o.reduce_only for o in b.orders):
                entry_posts.append(now)
        while entry_posts and entry_posts[0] <= now - 60 * S:
            entry_posts.popleft()
        worst_entry_posts = max(worst_entry_posts, len(entry_posts))
    allowed = WS_MESSAGES_PER_MIN - 10 - params.priority_posts_reserve
    assert 1000 < worst_entry_posts <= allowed
    assert len(flatten_waits) == 70 and max(flatten_waits) == 0


# ---------------------------------------------------------------- intake shedding


def test_shed_before_the_gates_by_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = make_core(tmp_path, request_budget_reserve=10, entry_intake_queue_limit=2)
    assert core.shed_entry(entry(GOLD), 0) == "RequestBudgetUnknown"
    core.admission.on_reading(reading(0, 1000))
    assert core.shed_entry(entry(GOLD, valid_until_ns=5), 10) == "Expired"
    assert core.shed_entry(entry(GOLD), 0) == ""
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.accepted
    calls: list[str] = []
    real = core.gates.evaluate

    def spy(*a: Any, **k: Any) -> Any:
        calls.append("gates")
        return real(*a, **k)

    monkeypatch.setattr(core.gates, "evaluate", spy)
    assert core.shed_entry(entry(GOLD), 0) == "PendingOrderExists"
    core.submit_entry(entry(SILVER), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert core.shed_entry(entry(TSLA), 0) == "Overloaded"  # two entries wait for a post already
    core.admission.backoff.on_refused(0)
    assert core.shed_entry(entry(TSLA), 1) == "ExchangeBackoff"
    assert calls == ["gates"]  # only the SILVER entry reached the gates
    assert core.admission.take_shed() == {"RequestBudgetUnknown": 1, "Expired": 1, "PendingOrderExists": 1,
                                          "Overloaded": 1, "ExchangeBackoff": 1}
    assert core.admission.take_shed() == {}


def test_log_budget_counts_what_it_holds_back() -> None:
    lb = LogBudget(3)
    assert [lb.allow("A", 0) for _ in range(5)] == [True, True, True, False, False]
    assert lb.allow("B", S)  # refilled
    assert lb.take_suppressed() == {"A": 2} and lb.take_suppressed() == {}

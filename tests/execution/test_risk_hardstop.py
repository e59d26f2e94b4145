"""Hard-stop triggers from real events (not rejections alone; benign never counts) and the hard-stop
flatten state machine: done only when positions AND open orders are zero, retrying forever with backoff."""

from __future__ import annotations

import itertools
from pathlib import Path

from hip3.execution.core import ExecutionCore
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.journal import SentIntentJournal
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.execution.risk import RiskMonitor
from hip3.messages import OrderRejected
from tests.execution.helpers import GOLD, MS, SILVER, SPECS, D, answer, closed, entry, flatten, oo, pos, snap
from tests.terms_helpers import known_terms

H = 3_600_000


def rej(reason: str = "exchange: Insufficient margin to place order.", benign: bool = False) -> OrderRejected:
    return OrderRejected(cloid="0x1", coin=GOLD, reason=reason, benign=benign, reduce_only=False, recv_ns=0)


def test_max_loss_from_position_closed() -> None:
    r = RiskMonitor(RiskParams(max_loss_usd=5.0))
    assert r.on_position_closed(closed(pnl="-3")) is None
    reason = r.on_position_closed(closed(pnl="-2", fees="0.5"))  # net -5.5 < -5
    assert reason is not None and reason.startswith("max_loss")
    assert r.on_position_closed(closed(pnl="-100")) is None  # first trigger wins, reported once
    assert r.reason == reason


def test_consecutive_losses_reset_by_win() -> None:
    r = RiskMonitor(RiskParams(max_consecutive_failures=2))
    for _ in range(2):
        assert r.on_position_closed(closed(pnl="-0.1")) is None
    assert r.on_position_closed(closed(pnl="1")) is None
    for _ in range(2):
        assert r.on_position_closed(closed(pnl="-0.1")) is None
    assert (r.on_position_closed(closed(pnl="-0.1")) or "").startswith("consecutive_losses")


def test_rejections_per_bucket_benign_never_count() -> None:
    r = RiskMonitor(RiskParams(max_rejections_per_bucket=2))
    for _ in range(50):
        assert r.on_order_rejected(rej("exchange: Order could not immediately match", benign=True), 0) is None
    assert r.on_order_rejected(rej("send_failed: not ready"), 0) is None  # local, not an exchange rejection
    assert r.on_order_rejected(rej(), 0) is None
    assert r.on_order_rejected(rej(), H - 1) is None
    assert r.on_order_rejected(rej(), H) is None  # new bucket
    assert r.on_order_rejected(rej(), H + 1) is None
    assert (r.on_order_rejected(rej(), H + 2) or "").startswith("rejections")


def test_flatten_failures() -> None:
    r = RiskMonitor(RiskParams(max_flatten_failed=1))
    assert r.on_order_rejected(rej("exchange: x", benign=True), 0, is_flatten=True) is None
    assert r.on_order_rejected(rej("timeout"), 0, is_flatten=True) is None
    r.on_position_closed(closed(pnl="1"))  # a close resets the streak
    assert r.on_flatten_failed("timeout") is None
    assert (r.on_flatten_failed("timeout") or "").startswith("flatten_failed")


def test_slippage_three_in_a_row() -> None:
    """Realised slippage = expected − actual edge. A buy signalled at 80 bps (ask 99.2 under an
    oracle of 100) fills at its limit, 99.2, as an IOC does; the oracle when the fill is known decides
    the edge actually captured."""
    r = RiskMonitor(RiskParams())  # > 50 bps on 3 consecutive entries
    assert r.on_entry_filled(80.0, D("99.2"), True, 99.25) is None  # oracle came back: 5 bps kept, 75 lost
    assert r.on_entry_filled(80.0, D("100.8"), False, 100.75) is None  # a sell, the same: 2nd in a row
    assert r.slippage_streak == 2
    assert r.on_entry_filled(80.0, D("99.2"), True, 100.0) is None  # the edge was there: streak reset
    assert r.slippage_streak == 0
    assert r.on_entry_filled(80.0, D("99.2"), True, 0.0) is None  # oracle unknown: streak unchanged
    for _ in range(2):
        assert r.on_entry_filled(80.0, D("99.2"), True, 99.3) is None  # 70 bps lost each
    assert r.on_entry_filled(80.0, D("99.2"), True, 99.6) is None  # 40 bps lost: under 50, reset
    for _ in range(2):
        assert r.on_entry_filled(80.0, D("99.2"), True, 99.2) is None
    assert (r.on_entry_filled(80.0, D("99.2"), True, 99.2) or "").startswith("slippage")


def test_slippage_at_the_limit_price_can_fire() -> None:
    """Session 1 compared the fill with the IOC limit, which a buy never fills above: the trigger could
    not fire. With fills exactly at the limit (what an exchange gives) it must still be able to."""
    r = RiskMonitor(RiskParams(slippage_consecutive_trades=1))
    assert (r.on_entry_filled(60.0, D("99.4"), True, 99.4) or "").startswith("slippage")


def test_external_trigger() -> None:
    r = RiskMonitor(RiskParams())
    assert r.on_external("restart limit") == "external: restart limit"
    assert r.on_position_closed(closed(pnl="-5000")) is None


def test_core_feeds_risk_from_responses(tmp_path: Path) -> None:
    cl = itertools.count(1)
    core = ExecutionCore(ExecutorParams(), RiskParams(max_flatten_failed=0, max_slippage_bps=0.0,
                                                      slippage_consecutive_trades=1), SoftGateParams(), SPECS,
                         SentIntentJournal(tmp_path, now_ms=0, retention_ms=1000),
                         make_cloid=lambda: f"0x{next(cl):032x}", terms=known_terms(SPECS))
    core.gates.set_mark(GOLD, 10.0)
    core.gates.set_mark(SILVER, 10.0)
    core.oracles[GOLD] = 10.0  # the oracle when the fill is known: back at the ask, the edge is gone
    core.submit_flatten(flatten(SILVER), now_ns=0)
    b = core.next_batch(0)
    assert b is not None
    core.on_sent(b, 1, 1, 0)
    core.on_post_response(1, answer({"status": "ok", "response": {"type": "order", "data": {"statuses": [
        {"error": "Order could not immediately match against any resting orders."}]}}}), 0, 0)
    assert core.take_hardstop_request() is None  # benign flatten miss: not a failure
    v, _ = core.submit_entry(entry(GOLD, px="10"), snapshot=snap(), now_ns=0, now_ms=0)
    assert v.accepted
    b = core.next_batch(0)
    assert b is not None
    core.on_sent(b, 2, 2, 0)
    core.on_post_response(2, answer({"status": "ok", "response": {"type": "order", "data": {"statuses": [
        {"filled": {"totalSz": "2", "avgPx": "10", "oid": 3}}]}}}), 0, 0)  # at the limit, as an IOC fills
    reason = core.take_hardstop_request()
    assert reason is not None and reason.startswith("slippage")
    assert core.take_hardstop_request() is None


# ---------------------------------------------------------------------------------------- flattener


def flattener(**kw: int) -> HardStopFlattener:
    cl = itertools.count(1)
    return HardStopFlattener(RiskParams(**kw), SPECS, make_cloid=lambda: f"0x{next(cl):032x}")  # type: ignore[arg-type]


MARKS = {GOLD: D("2000.5"), SILVER: D(30)}


def test_flatten_sequence_cancels_and_flattens_until_zero() -> None:
    hs = flattener()
    hs.start(epoch=3, now_ns=0)
    s = snap(pos(GOLD, "0.5"), pos(SILVER, "2", is_long=False), open_orders=(oo(GOLD, 77),))
    st = hs.step(snapshot=s, marks=MARKS, inflight_posts=0, now_ns=0)
    assert [c.oid for c in st.cancels] == [77]
    gold, silver = st.orders
    assert gold.reduce_only and not gold.is_buy and gold.px == D("1990.4") and gold.sz == D("0.5")
    assert silver.reduce_only and silver.is_buy and silver.px == D("30.15")
    assert st.progress is not None and st.progress.attempts == 1 and not st.progress.done
    # not due yet
    assert hs.step(snapshot=s, marks=MARKS, inflight_posts=0, now_ns=500 * MS).orders == ()
    # positions gone but an open order remains: not done, retried
    s2 = snap(open_orders=(oo(GOLD, 77),), version=2)
    st = hs.step(snapshot=s2, marks=MARKS, inflight_posts=0, now_ns=1000 * MS)
    assert st.cancels and not st.orders and st.progress is not None and not st.progress.done
    # zero, but a post in flight: not done
    s3 = snap(version=3)
    assert hs.step(snapshot=s3, marks=MARKS, inflight_posts=1, now_ns=1100 * MS).progress is None
    assert not hs.done
    # zero and quiet, but not long enough yet
    assert hs.step(snapshot=s3, marks=MARKS, inflight_posts=0, now_ns=1200 * MS).progress is None
    st = hs.step(snapshot=s3, marks=MARKS, inflight_posts=0, now_ns=2200 * MS)
    assert st.progress is not None and st.progress.done and not st.progress.alert and hs.done
    # a late fill shows up: resumes
    st = hs.step(snapshot=snap(pos(GOLD, "0.5")), marks=MARKS, inflight_posts=0, now_ns=3000 * MS)
    assert not hs.done and len(st.orders) == 1


def test_flatten_retries_forever_with_backoff_and_alert() -> None:
    hs = flattener(flatten_fast_attempts=3, flatten_fast_interval_ms=1000, flatten_slow_interval_ms=10_000)
    hs.start(epoch=1, now_ns=0)
    s = snap(pos(GOLD, "0.5"))
    times = []
    t = 0
    while len(times) < 8:
        st = hs.step(snapshot=s, marks=MARKS, inflight_posts=0, now_ns=t)
        if st.orders:
            times.append(t // MS)
            assert st.progress is not None
            last = st.progress
        t += 100 * MS
    assert times == [0, 1000, 2000, 12000, 22000, 32000, 42000, 52000]
    assert last.alert and not last.done and last.attempts == 8


def test_flatten_without_mark_reports_problem() -> None:
    hs = flattener()
    hs.start(epoch=1, now_ns=0)
    st = hs.step(snapshot=snap(pos(GOLD, "0.5")), marks={}, inflight_posts=0, now_ns=0)
    assert st.orders == () and st.problems and "no mark" in st.problems[0]


def test_flatten_idle_cases() -> None:
    hs = flattener()
    assert hs.step(snapshot=snap(pos()), marks=MARKS, inflight_posts=0, now_ns=0).progress is None  # not started
    hs.start(epoch=1, now_ns=0)
    assert hs.step(snapshot=None, marks=MARKS, inflight_posts=0, now_ns=0).progress is None
    st = hs.step(snapshot=snap(), marks=MARKS, inflight_posts=0, now_ns=0)
    assert st.progress is not None and st.progress.done  # nothing to do at all
    hs.start(epoch=1, now_ns=5)  # same epoch: no restart
    assert hs.done

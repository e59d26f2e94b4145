"""The executor core under the exchange's refusals (no sockets): a rate-limit answer is not the orders'
fault, and a post that timed out is never sent again.

Regression tests for two bugs the fault tests found (see RELIABILITY.md):
* a rate-limited exchange: every refusal counted as a non-benign rejection and spent the flattens'
  requeue budget (immediate retries, flatten failures, hard stop within a second);
* responses delayed past ``post_timeout_ms``: the timed-out flatten was requeued with its cloid and
  executed a second time at the exchange, and every timed-out flatten counted as a failure even when its
  position had closed (hard stop).
"""

from __future__ import annotations

from pathlib import Path

from hip3.hyperliquid.errors import rate_limit_error
from hip3.hyperliquid.responses import ExchangeResponse
from hip3.messages import OrderRejected
from tests.execution.helpers import GOLD, MS, SILVER, TSLA, answer, entry, flatten, pos, snap
from tests.execution.test_core import NOW_MS, make, send, submit


def _refused(text: str) -> ExchangeResponse:
    return answer({"type": "action", "payload": {"status": "err", "response": text}})


def test_rate_limit_answer_is_benign_and_keeps_the_requeue_budget(tmp_path: Path) -> None:
    core = make(tmp_path, max_requeues=1)
    submit(core, entry(GOLD))
    core.submit_flatten(flatten(SILVER), now_ns=0)
    for post_id in range(1, 6):  # many refusals in a row: never given up, never counted
        now = post_id * 11_000 * MS
        b = send(core, post_id, now_ns=now)
        events = core.on_post_response(post_id, _refused(rate_limit_error(10_001, 10_000, "0.0")), now + MS, NOW_MS)
        # "(10001 > 10000)" for the first post's 2 orders leaves one request; from the second refusal on the
        # count is at the cap, and the exchange lets one request through every 10 s: so does the core.
        assert post_id == 1 or core.next_batch(now + 2 * MS) is None
        rej = [e for e in events if isinstance(e, OrderRejected)]
        assert all(e.benign for e in rej), rej
        assert [o.requeues for o in b.orders if o.reduce_only] == [0]
    assert core.risk.rejections_in_bucket == 0 and core.risk.flatten_failures == 0
    assert core.take_hardstop_request() is None
    assert core.scheduler.queued() == (0, 1, 0)  # the flatten still waits for its turn


def test_other_whole_request_errors_still_count(tmp_path: Path) -> None:
    core = make(tmp_path, max_requeues=1)
    core.submit_flatten(flatten(SILVER), now_ns=0)
    send(core, 1)
    core.on_post_response(1, _refused("Simulated rejection"), 1, NOW_MS)
    b = send(core, 2)
    assert b.orders[0].requeues == 1
    events = core.on_post_response(2, _refused("Simulated rejection"), 1, NOW_MS)
    assert [e.reason for e in events if isinstance(e, OrderRejected)] == ["requeue_exhausted"]
    assert core.risk.flatten_failures == 1


def test_drop_queued_entries(tmp_path: Path) -> None:
    core = make(tmp_path)
    submit(core, entry(GOLD))
    core.submit_flatten(flatten(SILVER), now_ns=0)
    events = core.drop_queued_entries("dropped: exchange backoff", 5)
    assert [(e.coin, e.benign) for e in events if isinstance(e, OrderRejected)] == [(GOLD, True)]
    assert core.scheduler.queued() == (0, 1, 0) and len(core.gates.pending) == 0


def test_timed_out_flatten_of_a_closed_position_is_no_failure(tmp_path: Path) -> None:
    """Answers slower than post_timeout_ms while the flattens execute: the positions close (the user stream
    says so) and the late posts time out. Those flattens did their job: counting them latched the hard
    stop in the fault test (four concurrent closes, then four timeouts)."""
    core = make(tmp_path)
    for i, coin in enumerate((GOLD, SILVER, TSLA, GOLD), start=1):
        core.on_snapshot(snap(pos(coin), version=2 * i))
        core.submit_flatten(flatten(coin), now_ns=i * MS)
        send(core, i, now_ns=i * MS)
        core.on_snapshot(snap(version=2 * i + 1))  # the fill came through the user stream: flat
        core.expire((i + 5000) * MS, NOW_MS)
    assert core.risk.flatten_failures == 0 and core.take_hardstop_request() is None
    # Still open when the post times out: a failure.
    core.on_snapshot(snap(pos(SILVER), version=20))
    core.submit_flatten(flatten(SILVER), now_ns=10_000 * MS)
    send(core, 9, now_ns=10_000 * MS)
    core.expire(16_000 * MS, NOW_MS)
    assert core.risk.flatten_failures == 1

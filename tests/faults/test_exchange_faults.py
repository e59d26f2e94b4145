"""Exchange faults from the simulator during a paper session: dropped connections, stalled channels, a
silent server, delayed, rejected and rate-limited posts, a rate-limited REST API, malformed frames.

For each: hip3 notices (within the short timeouts of the test config), blocks new entries while it
cannot trust its view, recovers and trades again; throughout, no new order is signed while the executor
is not READY and no entry is created while the detector blocks entries (``Session.orders_while_not_ready``),
no client order id reaches the exchange twice, hip3's positions end equal to the simulator's, and the
hard stop is not latched.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.session import Session, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

MD_CHANNELS = ["bbo", "activeAssetCtx", "l2Book", "allMids"]
USER_CHANNELS = ["orderUpdates", "userFills", "userEvents", "user"]


def _now_ms() -> float:
    return time.time() * 1000


def _trading(s: Session, n: int = 1, timeout: float = 30) -> None:
    assert wait_until(lambda: s.status()["trading"]["entries"] >= n, timeout, 0.2), s.status()["trading"]


def _trades_again(s: Session, timeout: float = 30) -> None:
    entries = s.status()["trading"]["entries"]
    if not wait_until(lambda: s.status()["trading"]["entries"] > entries, timeout, 0.2):
        st = s.status()
        pytest.fail(f"no entry after the fault: {st['hard_stop']} {st['trading']} "
                    f"{[(a['name'], a['ready_detail'], a['stats']) for a in st['actors']]}")


def _invariants(s: Session) -> None:
    assert s.wait_books_agree(20) == ""
    assert s.doubled_cloids() == []
    assert s.lost_orders() == []
    assert s.orders_while_not_ready() == []
    st = s.status()
    assert not st["hard_stop"]["latched"], st["hard_stop"]
    assert all(a["ready"] and a["restarts"] == 0 for a in st["actors"]), st["actors"]


def test_connection_drops(make_session: Callable[..., Session]) -> None:
    """Every WebSocket dropped, four times: the feed and the executor reconnect, the tracker resyncs
    after each reconnect, and entries wait for that resync."""
    s = make_session()
    _trading(s)
    resyncs = s.stats("position_tracker").get("resyncs", 0)
    for pause in (1.5, 1.0, 2.0, 1.2):
        assert wait_until(s.all_ready, 20)
        assert s.control("drop")["dropped"] >= 2  # the feed's and the executor's
        time.sleep(pause)
    assert wait_until(s.all_ready, 20)
    _trades_again(s)
    assert s.stats("feed").get("disconnects", 0) >= 4
    assert s.stats("executor").get("ws_disconnected", 0) >= 4
    assert s.stats("position_tracker").get("resyncs", 0) >= resyncs + 4
    blocked = [e["reason"] for e in s.events("detector", "entries_blocked")]
    assert len(blocked) >= 4, blocked
    _invariants(s)


def test_stalled_bbo_blocks_entries(make_session: Callable[..., Session]) -> None:
    """bbo silent on every market while the socket, the oracle and everything else flow: the feed reports
    each market stale within its stall timeout, and no entry leaves on a stale book."""
    s = make_session()
    _trading(s)
    t0 = _now_ms()
    s.faults(stalled_channels=["bbo"])
    time.sleep(6)
    t1 = _now_ms()
    s.clear_faults()
    stale = [e for e in s.events("feed", "market_stale") if e["channel"] == "bbo" and e["ts"] * 1000 >= t0]
    assert {e["coin"] for e in stale} == set(s.cfg.markets and [m.coin for m in s.cfg.markets])
    stall_ms = s.cfg.feed.stall_timeout_ms
    assert all(e["ts"] * 1000 - t0 <= stall_ms + 2000 for e in stale), [e["ts"] * 1000 - t0 for e in stale]
    # After max_bbo_age_ms no book is fresh; an intent made just before may still be signed within its TTL.
    quiet_from = t0 + s.cfg.gates.max_bbo_age_ms + s.cfg.detector.entry_ttl_ms + 500
    assert s.new_orders_signed_between(quiet_from, t1) == []
    assert wait_until(lambda: any(e["ts"] * 1000 >= t1 for e in s.events("feed", "market_fresh")), 10)
    _trades_again(s)
    _invariants(s)


def test_silent_server_is_noticed_by_ping_timeout(make_session: Callable[..., Session]) -> None:
    """Nothing at all from the server, not even pongs, on an open socket: the feed pings after
    ping_after_idle_ms, gives up after pong_timeout_ms, reconnects, and is not READY until data flows."""
    s = make_session()
    _trading(s)
    t0 = _now_ms()
    s.faults(stalled_channels=[*MD_CHANNELS, *USER_CHANNELS, "pong"])
    fp = s.cfg.feed
    budget_s = (fp.ping_after_idle_ms + fp.pong_timeout_ms) / 1000 + 3
    assert wait_until(lambda: not s.actor("feed")["ready"], budget_s, 0.1), s.actor("feed")
    time.sleep(3)
    t1 = _now_ms()
    assert not s.actor("feed")["ready"]  # reconnected (acks come) but no data yet: still not READY
    s.clear_faults()
    pong_drops = [e for e in s.events("feed", "disconnected")
                  if e["ts"] * 1000 >= t0 and "pong timeout" in str(e.get("why"))]
    assert pong_drops, s.events("feed", "disconnected")
    assert pong_drops[0]["ts"] * 1000 - t0 <= budget_s * 1000
    assert s.new_orders_signed_between(pong_drops[0]["ts"] * 1000, t1) == []
    assert wait_until(s.all_ready, 20)
    _trades_again(s)
    _invariants(s)


def test_delayed_answers_past_the_post_timeout(make_session: Callable[..., Session]) -> None:
    """Post answers delayed (1.5 s, then 4 s: past post_timeout_ms, so the outcome is unknown while the
    orders did execute): nothing is sent twice, the fills come through the user stream, the books agree.
    Regression guarded: timed-out flattens requeued with their cloid and executed twice."""
    s = make_session()
    _trading(s)
    n0 = len(s.order_log())
    s.faults(post_delay_ms=1500)
    time.sleep(4)
    s.faults(post_delay_ms=4000)
    time.sleep(9)
    s.clear_faults()
    assert len(s.order_log()) > n0  # orders did go out under the delays
    assert wait_until(lambda: s.stats("executor").get("dropped_unmatched", 0) >= 1, 10), \
        "no post timed out: the test did not exercise the unknown outcome"
    _trades_again(s)
    _invariants(s)


def test_rejected_and_rate_limited_posts_back_off(make_session: Callable[..., Session]) -> None:
    """Every action refused (a whole-request error, then the exchange's rate limit): the executor backs off
    instead of retrying at once, refuses entries meanwhile, does not latch the stop, and trades again.
    Regression: about 60 posts a second, the flattens' requeue budget gone, hard stop within a second."""
    s = make_session()
    _trading(s)
    s.faults(reject_posts=True)
    time.sleep(4)
    s.faults(reject_posts=False, rate_limit_actions=True)
    time.sleep(4)
    s.clear_faults()
    faulted = [r for r in s.order_log() if r.get("status") == "fault"]
    assert faulted, "nothing was sent during the faults: the test did not exercise them"
    # Backoff 0.5 s doubling: at most a handful of posts per 4 s phase (not hundreds).
    assert len(faulted) <= 24, len(faulted)
    assert {r["fault"] for r in faulted} <= {"reject_posts", "rate_limit_actions"}
    assert s.stats("executor").get("exchange_backoffs", 0) >= 1
    _trades_again(s)
    _invariants(s)


def test_rate_limited_rest_blocks_entries_until_resync(make_session: Callable[..., Session]) -> None:
    """A reconnect while /info answers HTTP 429: the tracker cannot resync, so entries stay blocked (not
    just for a moment) until the REST API answers again; then it resyncs and trading resumes."""
    s = make_session()
    _trading(s)
    s.faults(rate_limit_http=True)
    t0 = _now_ms()
    s.control("drop")
    assert wait_until(lambda: s.stats("position_tracker").get("resync_failed", 0) >= 1, 15)
    time.sleep(3)
    t1 = _now_ms()
    reasons = [e["reason"] for e in s.events("detector", "entries_blocked") if e["ts"] * 1000 >= t0]
    assert reasons, "the detector never blocked entries"
    assert s.new_orders_signed_between(t0 + 1000, t1) == []
    s.clear_faults()
    assert wait_until(s.all_ready, 30)
    _trades_again(s)
    _invariants(s)


def test_malformed_frames(make_session: Callable[..., Session]) -> None:
    s = make_session()
    _trading(s)
    s.faults(malformed_every=7)
    assert s.control("malformed", count=5)["connections"] >= 1
    time.sleep(4)
    s.clear_faults()
    assert s.stats("feed").get("bad_frames", 0) >= 5
    _trades_again(s)
    _invariants(s)


def test_executor_restarted_while_rest_is_rate_limited_starts_from_the_market_cache(
    make_session: Callable[..., Session],
) -> None:
    """``kill -9`` of the executor while /info answers HTTP 429: blocked in its start retrying the
    market specs (about 37 s, past the READY timeout), nothing, not even a flatten, could leave. It
    starts from the specs an earlier load saved in the run directory, and is READY while the
    fault lasts."""
    s = make_session()
    _trading(s)
    s.faults(rate_limit_http=True)
    old = s.kill_actor("executor")
    assert wait_until(lambda: s.back("executor", old), 20), s.actor("executor")
    cached = s.events("executor", "markets_from_cache")
    assert cached and cached[-1]["assets"] >= 2, cached
    s.clear_faults()
    assert wait_until(s.all_ready, 30)
    _trades_again(s)
    assert s.wait_books_agree(20) == ""
    assert s.doubled_cloids() == [] and s.lost_orders() == [] and s.orders_while_not_ready() == []
    st = s.status()
    assert not st["hard_stop"]["latched"], st["hard_stop"]
    assert {a["name"]: a["restarts"] for a in st["actors"] if a["restarts"]} == {"executor": 1}

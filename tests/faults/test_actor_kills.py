"""``kill -9`` of every actor at random moments of a paper session, some of them mid-order.

After each kill the supervisor restarts the actor (READY under a new pid); at the end no client order id
was accepted twice, hip3's positions equal the simulator's, no new order was signed while the executor
was not READY nor any entry created while the detector blocked entries, and the hard stop is not latched
by a handful of kills. Past the restart limit the hard stop latches and the executor flattens the account
at the exchange.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from tests.faults.session import Session, alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _entry_intents(s: Session) -> int:
    return sum(1 for e in s.actor_log("detector") if e.get("event") == "entry_intent")


def test_kill_each_actor_mid_session(make_session: Callable[..., Session]) -> None:
    s = make_session()
    rng = random.Random(20261121)
    assert wait_until(lambda: s.status()["trading"]["entries"] >= 1, 30, 0.2), s.status()["trading"]
    names = [a["name"] for a in s.status()["actors"]]  # a recorder too, if the supervisor runs one
    kills: Counter[str] = Counter()
    for name in names:
        if name in ("executor", "position_tracker"):
            # Mid-order: the exchange has just accepted an order, its answer and fill are on their way.
            if not s.wait_new_order(20):
                st = s.status()
                pytest.fail(f"no order within 20 s before killing {name}: {st['trading']} "
                            f"{[(a['name'], a['ready_detail'], a['stats']) for a in st['actors']]}")
        else:
            wait_until(lambda: False, rng.uniform(0.2, 1.5))
        old = s.kill_actor(name)
        kills[name] += 1
        assert wait_until(lambda n=name, p=old: s.back(n, p), 20), s.actor(name)  # type: ignore[misc]

    # The executor again, while an entry intent is in flight (the detector has just pushed one).
    n0 = _entry_intents(s)
    assert wait_until(lambda: _entry_intents(s) > n0, 20, 0.005), "no entry intent within 20 s"
    old = s.kill_actor("executor")
    kills["executor"] += 1
    assert wait_until(lambda: s.back("executor", old), 20), s.actor("executor")

    # Trading resumes, and everything the invariants say holds.
    entries = s.status()["trading"]["entries"]
    assert wait_until(lambda: s.status()["trading"]["entries"] > entries, 30, 0.2), "no entry after the kills"
    assert s.wait_books_agree(20) == ""
    assert s.doubled_cloids() == []
    assert s.lost_orders() == []
    assert s.orders_while_not_ready() == []
    st = s.status()
    assert not st["hard_stop"]["latched"], st["hard_stop"]
    assert {a["name"]: a["restarts"] for a in st["actors"]} == {n: kills[n] for n in names}
    assert all(a["ready"] for a in st["actors"])
    assert s.new_orders_accepted() > 0


def test_restart_limit_latches_and_flattens_at_the_exchange(make_session: Callable[..., Session]) -> None:
    """The executor past its restart limit, with a position open: the stop latches, and the executor is
    still restarted (it alone can flatten), so the account ends flat at the exchange. A detector past the
    limit is given up (state failed, no process)."""
    s = make_session(max_restarts=1)
    old = s.kill_actor("executor")
    assert wait_until(lambda: s.back("executor", old), 20), s.actor("executor")
    assert not s.status()["hard_stop"]["latched"]
    # Wait for an open position so that the flatten has something to do, then the kill that is one too many.
    assert wait_until(lambda: bool(s.sim_positions()), 40, 0.1), "no position opened"
    old = s.kill_actor("executor")
    assert wait_until(lambda: s.status()["hard_stop"]["latched"], 10), s.status()["hard_stop"]
    assert "restart limit: executor" in str(s.status()["hard_stop"]["reason"])
    assert wait_until(lambda: s.back("executor", old), 20), s.actor("executor")

    assert wait_until(s.flat_after_hardstop, 40, 0.5), (s.status()["hard_stop"], s.sim_positions())
    # Latched: nothing new was signed after the executor learnt of the latch (only reduce-only orders).
    assert s.orders_while_latched() == []
    assert s.orders_while_not_ready() == []
    assert s.doubled_cloids() == []

    # A detector past the limit is given up: no process, state failed, the latch unchanged.
    for i in range(2):
        pid = s.kill_actor("detector")
        if i == 0:
            assert wait_until(lambda p=pid: s.back("detector", p), 20), s.actor("detector")  # type: ignore[misc]
    assert wait_until(lambda: s.actor("detector")["state"] == "failed", 10), s.actor("detector")
    assert s.actor("detector")["pid"] is None and not alive(pid)
    assert s.status()["hard_stop"]["epoch"] == 1

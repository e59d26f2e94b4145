"""The executor and position_tracker actors as threads (inproc) against the simulator: every post-response
path through the actor, partial fills, de-duplicated fills, the dead man's switch and READY."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hip3.execution.admission import RefusalBackoff
from hip3.messages import (
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    PositionClosed,
    PositionSnapshot,
    UserFill,
)
from hip3.runtime.bus import Bus
from hip3.runtime.inproc import InprocRun, inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.runtime.supervisor import Supervisor
from hip3.sim.app import SimServer
from tests.actors.helpers import (
    EXTRA,
    Capture,
    FakeFeed,
    account_of,
    entry,
    flatten,
    market,
    order_log,
    passive_px,
    sim_account,
    wait,
)
from tests.conftest import sim_config

MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA")


class Graph:
    def __init__(self, run: InprocRun, feed: FakeFeed, cap: Capture, intents: Any, sim: SimServer,
                 account: str) -> None:
        self.run, self.feed, self.cap, self.intents, self.sim, self.account = run, feed, cap, intents, sim, account

    def wait(self, pred: Any, timeout_s: float = 10.0) -> bool:
        return wait(pred, timeout_s, tick=self.feed.pump)

    def ready(self) -> bool:
        return bool(self.run.call(lambda s: s.all_ready()))

    def marks_known(self) -> int:
        """Markets the executor has a mark for (its heartbeat's ``marks_known_n``)."""
        return int(self.run.call(lambda s: s.slots["executor"].stats.get("marks_known_n", 0)))

    def push(self, msg: Any) -> None:
        assert self.intents.send(msg)

    def events_for(self, cloid: str) -> list[Any]:
        self.cap.drain()
        return [m for m in self.cap.msgs if getattr(m, "cloid", None) == cloid]

    def submitted(self, intent_id: str) -> OrderSubmitted | None:
        for m in self.cap.of(OrderSubmitted):
            if m.intent_id == intent_id:
                return m  # type: ignore[no-any-return]
        return None

    def snapshot(self) -> PositionSnapshot | None:
        snaps = self.cap.of(PositionSnapshot)
        return snaps[-1] if snaps else None


@pytest.fixture
def graph(run_dir: Path, sim_server: SimServer, paper_key: str, request: pytest.FixtureRequest) -> Iterator[Graph]:
    extra = EXTRA + getattr(request, "param", "")
    account = account_of(paper_key)
    cfg = sim_config(run_dir, sim_server.url, account, MARKETS, extra)
    with inproc_graph(cfg, signing_key=SigningKey(paper_key)) as run:
        feed = FakeFeed(cfg, sim_server, context=run.context)
        feed.feed_state()
        cap = Capture(cfg, ["exec", "positions"], context=run.context)
        tbus = Bus(cfg, "detector", context=run.context, run_dir=cfg.run_path)
        g = Graph(run, feed, cap, tbus.pusher("intents"), sim_server, account)
        try:
            assert g.wait(g.ready, 20), run.call(lambda s: s.status())
            # READY is not enough: an entry is refused ("no mark") until the executor has the feed's mark
            # of its market. Its heartbeat reports how many markets it has a mark for (handing over at READY
            # refused an entry pushed at once "no mark" in 8 of 160 runs on the loaded 2-core machine).
            assert g.wait(lambda: g.marks_known() == len(MARKETS), 10), run.call(lambda s: s.status())
            yield g
        finally:
            tbus.close()
            cap.close()
            feed.close()


def _ready(s: Supervisor) -> bool:
    return s.all_ready()


def test_filled_entry_reaches_the_book_and_the_exchange(graph: Graph) -> None:
    g = graph
    intent = entry(g.sim, "xyz:GOLD", is_buy=True, edge_bps=17.5)
    g.push(intent)
    assert g.wait(lambda: g.submitted(intent.intent_id) is not None)
    sub = g.submitted(intent.intent_id)
    assert sub is not None and sub.sent_ns >= intent.origin_recv_ns and sub.edge_bps == 17.5
    assert sub.kind == "entry" and not sub.reduce_only and sub.tif == "Ioc"
    assert g.wait(lambda: any(isinstance(m, OrderFilled) for m in g.events_for(sub.cloid)))
    filled = next(m for m in g.events_for(sub.cloid) if isinstance(m, OrderFilled))
    assert filled.total_sz == intent.sz
    assert g.wait(lambda: (s := g.snapshot()) is not None and any(p.coin == "xyz:GOLD" for p in s.positions))
    snap = g.snapshot()
    assert snap is not None
    pos = next(p for p in snap.positions if p.coin == "xyz:GOLD")
    assert pos.is_long and pos.size == intent.sz and pos.entry_edge_bps == 17.5
    assert sim_account(g.sim, g.account)["positions"]["xyz:GOLD"] == str(intent.sz)
    # The signed action carried expiresAfter and the executor's own nonce; the dead man's switch is armed.
    assert g.wait(lambda: (sim_account(g.sim, g.account)["schedule_cancel_ms"] or 0) > time.time() * 1000 + 30_000)


def test_ioc_miss_is_a_benign_rejection(graph: Graph) -> None:
    g = graph
    intent = entry(g.sim, "xyz:SILVER", is_buy=True, px=passive_px(g.sim, "xyz:SILVER", True))
    g.push(intent)
    assert g.wait(lambda: g.submitted(intent.intent_id) is not None)
    cloid = g.submitted(intent.intent_id).cloid  # type: ignore[union-attr]
    assert g.wait(lambda: any(isinstance(m, OrderRejected) for m in g.events_for(cloid)))
    rej = next(m for m in g.events_for(cloid) if isinstance(m, OrderRejected))
    assert rej.benign and rej.reason.startswith("exchange: ") and "could not immediately match" in rej.reason
    # The market is released: a second entry in the same market goes out.
    again = entry(g.sim, "xyz:SILVER", is_buy=True)
    g.push(again)
    assert g.wait(lambda: g.submitted(again.intent_id) is not None)


def test_whole_request_error_rejects_every_order_of_the_batch(graph: Graph) -> None:
    g = graph
    g.sim.set_faults(reject_posts=True)
    intent = entry(g.sim, "xyz:GOLD")
    g.push(intent)
    assert g.wait(lambda: g.submitted(intent.intent_id) is not None)
    cloid = g.submitted(intent.intent_id).cloid  # type: ignore[union-attr]
    assert g.wait(lambda: any(isinstance(m, OrderRejected) for m in g.events_for(cloid)))
    rej = next(m for m in g.events_for(cloid) if isinstance(m, OrderRejected))
    assert not rej.benign and rej.reason == "exchange: Simulated rejection"
    g.sim.set_faults(reject_posts=False)
    time.sleep(RefusalBackoff().base_ms / 1000 + 0.1)  # the executor backs off after a refused action
    again = entry(g.sim, "xyz:GOLD")
    g.push(again)
    assert g.wait(lambda: g.submitted(again.intent_id) is not None)


@pytest.mark.parametrize("graph", ["post_timeout_ms = 800\nexpires_after_ms = 800\n"], indirect=True)
def test_post_timeout_releases_the_order_and_a_late_answer_is_ignored(graph: Graph) -> None:
    g = graph
    g.sim.set_faults(post_delay_ms=1500)
    intent = entry(g.sim, "xyz:GOLD", px=passive_px(g.sim, "xyz:GOLD", True))
    g.push(intent)
    assert g.wait(lambda: g.submitted(intent.intent_id) is not None)
    cloid = g.submitted(intent.intent_id).cloid  # type: ignore[union-attr]
    assert g.wait(lambda: any(isinstance(m, OrderRejected) for m in g.events_for(cloid)), 5)
    rej = next(m for m in g.events_for(cloid) if isinstance(m, OrderRejected))
    assert rej.reason == "timeout" and not rej.benign
    g.sim.set_faults(post_delay_ms=0)
    time.sleep(1.0)  # the late answer arrives and matches nothing
    assert sum(isinstance(m, OrderRejected) for m in g.events_for(cloid)) == 1
    assert g.wait(lambda: g.run.call(lambda s: s.slots["executor"].stats.get("dropped_unmatched", 0)) >= 1, 3)


def test_partial_fill_and_a_fill_reported_twice_is_counted_once(graph: Graph) -> None:
    g = graph
    coin = "xyz:TSLA"
    m = market(g.sim, coin)
    # A price at the best ask for a size larger than the ask's depth at that price fills partially.
    from hip3.hyperliquid.rest import RestClient

    book = RestClient(g.sim.url).info({"type": "l2Book", "coin": coin})
    best_ask_px, best_ask_sz = Decimal(book["levels"][1][0]["px"]), Decimal(book["levels"][1][0]["sz"])
    sz = best_ask_sz * 2
    intent = entry(g.sim, coin, is_buy=True, px=best_ask_px, sz=sz.quantize(Decimal(1).scaleb(-int(m["szDecimals"]))))
    g.push(intent)
    assert g.wait(lambda: g.submitted(intent.intent_id) is not None)
    cloid = g.submitted(intent.intent_id).cloid  # type: ignore[union-attr]
    assert g.wait(lambda: any(isinstance(x, (OrderFilled, OrderRejected)) for x in g.events_for(cloid)))
    filled = next(x for x in g.events_for(cloid) if isinstance(x, OrderFilled))
    assert Decimal(0) < filled.total_sz < intent.sz
    assert g.wait(lambda: (s := g.snapshot()) is not None and any(p.coin == coin for p in s.positions))
    # The same fill arrives again on userFills (the stream): the book does not change.
    g.feed.user.publish(UserFill(coin=coin, px=filled.avg_px, sz=filled.total_sz, is_buy=True, time_ms=0,
                                 oid=filled.oid, tid=424242, cloid=cloid, fee=Decimal("0.01"),
                                 closed_pnl=Decimal(0), crossed=True, is_snapshot=False,
                                 recv_ns=time.monotonic_ns()))
    time.sleep(0.3)
    snap = g.snapshot()
    assert snap is not None
    pos = next(p for p in snap.positions if p.coin == coin)
    assert pos.size == filled.total_sz
    # Close it with a flatten intent: exactly one PositionClosed, with the flatten's reason.
    fl = flatten(g.sim, coin, is_buy=False, sz=pos.size, reason="time_stop")
    g.push(fl)
    assert g.wait(lambda: bool(g.cap.of(PositionClosed)))
    g.feed.user.publish(UserFill(coin=coin, px=filled.avg_px, sz=pos.size, is_buy=False, time_ms=0, oid=1,
                                 tid=434343, cloid=g.submitted(fl.intent_id).cloid,  # type: ignore[union-attr]
                                 fee=Decimal("0.01"), closed_pnl=Decimal("-0.1"), crossed=True,
                                 is_snapshot=False, recv_ns=time.monotonic_ns()))
    time.sleep(0.5)
    closes = g.cap.of(PositionClosed)
    assert len(closes) == 1 and closes[0].coin == coin and closes[0].exit_reason == "time_stop"
    assert coin not in sim_account(g.sim, g.account)["positions"]


def test_nonces_and_cloids_are_unique_in_the_order_log(graph: Graph, run_dir: Path) -> None:
    g = graph
    ids = []
    for i in range(12):
        coin = MARKETS[i % 3]
        intent = entry(g.sim, coin, is_buy=bool(i % 2), px=passive_px(g.sim, coin, bool(i % 2)))
        ids.append(intent.intent_id)
        g.push(intent)
        time.sleep(0.02)
    assert g.wait(lambda: all(g.submitted(i) is not None for i in ids))
    time.sleep(0.3)
    log = [e for e in order_log(run_dir / "orders.jsonl") if e["signer"] == g.account]
    nonces = [e["nonce"] for e in log]
    cloids = [c for e in log for c in e["cloids"]]
    assert len(nonces) == len(set(nonces)) and nonces == sorted(nonces)
    assert len(cloids) == len(set(cloids)) and len(cloids) >= 12


def test_refused_flatten_is_reported_so_the_exit_watcher_releases_its_claim(graph: Graph) -> None:
    """An expired (or otherwise refused) flatten intent never becomes an order: the executor says so on
    ``exec``, keyed by the intent id, instead of leaving the exit watcher's claim to expire."""
    import msgspec

    g = graph
    stale = msgspec.structs.replace(flatten(g.sim, "xyz:GOLD", is_buy=False, sz=Decimal("0.01")), valid_until_ns=1)
    g.push(stale)

    def refused() -> list[OrderRejected]:
        g.cap.drain()
        return [m for m in g.cap.of(OrderRejected) if m.intent_id == stale.intent_id]

    assert g.wait(lambda: bool(refused()))
    rej = refused()[0]
    assert rej.cloid == stale.intent_id and rej.benign and rej.reduce_only and rej.reason.startswith("refused: ")
    assert g.submitted(stale.intent_id) is None


_RECONNECT = "reconnect_base_ms = 100\nreconnect_max_ms = 800\nreconnect_healthy_after_ms = 1500\n"
# What a reconnect may take beyond its backoff: noticing the drop, the handshake, the sim's bookkeeping
# and this test's 5 ms polling, on a loaded 2-core machine.
_RECONNECT_SLACK_S = 0.25


def _reconnect_delays(g: Graph, drops: int, pause_s: float = 0.0) -> list[float]:
    """Drop the executor's WebSocket (the only one in this graph) ``drops`` times, each as soon as it is
    back (after ``pause_s``); the seconds from each drop until the simulator sees it connected again."""
    delays = []
    for _ in range(drops):
        time.sleep(pause_s)
        assert g.sim.drop() == 1
        t0 = time.monotonic()
        back = wait(lambda: g.sim.state()["connections"] >= 1, 5.0)
        delays.append(time.monotonic() - t0)
        assert back, f"no reconnect within 5 s after {len(delays)} drops: {delays}"
    return delays


@pytest.mark.parametrize("graph", [_RECONNECT], indirect=True)
def test_order_entry_reconnects_within_its_configured_maximum(graph: Graph) -> None:
    """Regression: the executor's own connection used the client's default backoff (1 s doubling to 60 s;
    the config was ignored): after five drops in 42 s a soak waited 9 s with no way to send a flatten.
    Dropped six times in a row, each reconnect stays within ``[executor] reconnect_max_ms``; after a
    connection that stayed up ``reconnect_healthy_after_ms`` the schedule starts over at the base."""
    g = graph
    p = g.run.cfg.executor
    delays = _reconnect_delays(g, 6)
    assert max(delays) <= p.reconnect_max_ms / 1000 + _RECONNECT_SLACK_S, delays
    assert max(delays[3:]) > p.reconnect_base_ms / 1000 * 2, delays  # it did back off (drops in a row)
    healthy = _reconnect_delays(g, 1, pause_s=p.reconnect_healthy_after_ms / 1000 + 0.3)
    assert healthy[0] <= p.reconnect_base_ms / 1000 + _RECONNECT_SLACK_S, (delays, healthy)
    # Back in business: READY again, and an order goes out on the new connection.
    assert g.wait(g.ready, 5)
    intent = entry(g.sim, "xyz:GOLD", px=passive_px(g.sim, "xyz:GOLD", True))
    g.push(intent)
    assert g.wait(lambda: g.submitted(intent.intent_id) is not None, 5)

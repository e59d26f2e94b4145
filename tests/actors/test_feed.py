"""The feed actor against the simulator, over inproc: READY, market data, user streams, reconnects,
malformed frames, stalls."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zmq
from eth_account import Account

from actors.feed import Feed
from hip3.config import parse_config
from hip3.messages import AssetCtx, Bbo, FeedState, Message, OrderUpdate, UserFill
from tests.actors.market_helpers import Watch, place_ioc, running, wait_until
from tests.conftest import sim_config

pytestmark = pytest.mark.timeout(40)

FAST = "[feed]\nreconnect_base_ms = 100\nreconnect_max_ms = 200\nstall_timeout_ms = 800\n"


def _address(key: str) -> str:
    return str(Account.from_key(key).address).lower()


@pytest.fixture
def ctx() -> Any:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.term()


def _feed_state(pred: Any) -> Any:
    return lambda m: isinstance(m, FeedState) and pred(m)


def test_ready_after_acks_and_first_data_and_market_data_flows(
        sim_server: Any, paper_key: str, run_dir: Path, ctx: Any) -> None:
    cfg = sim_config(run_dir, sim_server.url, _address(paper_key), extra=FAST)
    md = Watch(cfg, ctx, ["md"])
    user = Watch(cfg, ctx, ["user"])
    try:
        with running(Feed, cfg, ctx) as feed:
            assert wait_until(lambda: feed.ready, 10), feed.ready_detail
            # READY implies: connected, every subscription acked, a bbo and a ctx since this connect.
            assert feed.ws.all_acked()
            assert feed.core.n_bbo > 0 and feed.core.n_ctx > 0
            st = md.wait(_feed_state(lambda m: m.market_data_ready and m.user_ready and m.state == "connected"))
            assert st is not None and st.conn_id % 1000 == 1
            assert user.wait(_feed_state(lambda m: m.user_ready)) is not None
            bbo = md.wait(lambda m: isinstance(m, Bbo) and m.coin == "xyz:GOLD")
            ctx_msg = md.wait(lambda m: isinstance(m, AssetCtx) and m.coin == "xyz:SILVER")
            assert isinstance(bbo, Bbo) and isinstance(ctx_msg, AssetCtx)
            assert bbo.recv_ns > 0 and 0 < bbo.bid_px < bbo.ask_px and bbo.exch_ms > 0
            assert ctx_msg.recv_ns > 0 and ctx_msg.oracle_px > 0
            # Only configured markets are subscribed and published.
            assert {m.coin for m in md.of(Bbo)} <= {"xyz:GOLD", "xyz:SILVER"}
            assert wait_until(lambda: feed.stats.get("bbo", 0) > 0, 3)
    finally:
        md.close()
        user.close()


def test_user_streams_carry_order_updates_and_fills(
        sim_server: Any, paper_key: str, run_dir: Path, ctx: Any) -> None:
    cfg = sim_config(run_dir, sim_server.url, _address(paper_key), extra=FAST)
    user = Watch(cfg, ctx, ["user"])
    try:
        with running(Feed, cfg, ctx) as feed:
            assert wait_until(lambda: feed.ready, 10), feed.ready_detail
            gold = sim_server.state()["markets"]["xyz:GOLD"]
            px = (Decimal(gold["ask"]) * Decimal("1.01")).quantize(Decimal("0.1"))
            answer = place_ioc(sim_server.url, paper_key, gold["asset"], True, px, Decimal("0.01"))
            assert answer["status"] == "ok", answer
            fill = user.wait(lambda m: isinstance(m, UserFill) and not m.is_snapshot, 5)
            assert isinstance(fill, UserFill)
            assert fill.coin == "xyz:GOLD" and fill.is_buy and fill.sz == Decimal("0.01") and fill.recv_ns > 0
            upd = user.wait(lambda m: isinstance(m, OrderUpdate), 5)
            assert isinstance(upd, OrderUpdate) and upd.coin == "xyz:GOLD"
            # Market data never goes on `user`.
            assert not user.of(Bbo) and not user.of(AssetCtx)
    finally:
        user.close()


def test_drop_clears_ready_at_once_then_reconnects_and_resubscribes(
        sim_server: Any, paper_key: str, run_dir: Path, ctx: Any) -> None:
    cfg = sim_config(run_dir, sim_server.url, _address(paper_key), extra=FAST)
    md = Watch(cfg, ctx, ["md"])
    try:
        with running(Feed, cfg, ctx) as feed:
            assert wait_until(lambda: feed.ready, 10), feed.ready_detail
            assert md.wait(_feed_state(lambda m: m.market_data_ready)) is not None
            assert sim_server.drop() >= 1
            down = md.wait(_feed_state(lambda m: m.state != "connected" and m.conn_id % 1000 == 1), 5)
            assert isinstance(down, FeedState)
            assert not down.market_data_ready and not down.user_ready and down.conn_id % 1000 == 1
            i_down = md.got.index(down)
            back = md.wait(_feed_state(lambda m: m.conn_id % 1000 == 2 and m.market_data_ready and m.user_ready), 10)
            assert isinstance(back, FeedState), feed.ready_detail
            # Nothing claimed READY between the drop and the new connection's READY.
            between: list[Message] = md.got[i_down:md.got.index(back)]
            assert not any(isinstance(m, FeedState) and m.market_data_ready and m.conn_id % 1000 == 1 for m in between)
            assert wait_until(lambda: feed.ready and feed.ws.conn_id == 2, 5)
            assert feed.ws.all_acked()
            assert md.wait(lambda m: isinstance(m, Bbo) and m.recv_ns > back.since_ns, 5) is not None
    finally:
        md.close()


def test_malformed_frames_are_counted_and_nothing_crashes(
        sim_server: Any, paper_key: str, run_dir: Path, ctx: Any) -> None:
    cfg = sim_config(run_dir, sim_server.url, _address(paper_key), extra=FAST)
    md = Watch(cfg, ctx, ["md"])
    try:
        with running(Feed, cfg, ctx) as feed:
            assert wait_until(lambda: feed.ready, 10), feed.ready_detail
            sim_server.send_malformed(7)
            assert wait_until(lambda: feed.stats.get("bad_frames", 0) >= 7, 5), feed.stats
            assert feed.ready and feed.ws.conn_id == 1
            # Still streaming: a bbo *received by the feed after* the malformed frames were counted
            # (not one from the backlog that queued up before them).
            after_ns = time.monotonic_ns()
            assert md.wait(lambda m: isinstance(m, Bbo) and m.recv_ns > after_ns, 5) is not None
    finally:
        md.close()


def test_stalled_channel_is_noticed_and_recovers(
        sim_server: Any, paper_key: str, run_dir: Path, ctx: Any) -> None:
    cfg = sim_config(run_dir, sim_server.url, _address(paper_key), extra=FAST)
    with running(Feed, cfg, ctx) as feed:
        assert wait_until(lambda: feed.ready, 10), feed.ready_detail
        sim_server.set_faults(stalled_channels=["bbo:xyz:GOLD"])
        assert wait_until(lambda: ("xyz:GOLD", "bbo") in feed.core.stale, 5), feed.core.stale
        assert wait_until(lambda: feed.stats.get("stale_markets", 0) >= 1, 3), feed.stats
        sim_server.set_faults(stalled_channels=[])
        assert wait_until(lambda: ("xyz:GOLD", "bbo") not in feed.core.stale, 5)


def test_observe_mode_without_allowlist_streams_every_market_and_no_user_streams(
        sim_server: Any, run_dir: Path, ctx: Any) -> None:
    text = (f'run_dir = "{run_dir}"\nmode = "observe"\n[exchange]\nnetwork = "sim"\nrest_url = "{sim_server.url}"\n'
            '[bus]\ntransport = "inproc"\n[logging]\nstderr = false\n' + FAST)
    cfg = parse_config(text, "observe.toml")
    md = Watch(cfg, ctx, ["md"])
    try:
        with running(Feed, cfg, ctx) as feed:
            assert wait_until(lambda: feed.ready, 10), feed.ready_detail
            assert len(feed.core.markets) == 25 and not feed.core.user_subs
            st = md.wait(_feed_state(lambda m: m.market_data_ready))
            assert isinstance(st, FeedState) and not st.user_ready
    finally:
        md.close()


def test_a_restarted_feed_is_a_new_connection_for_consumers(
        sim_server: Any, paper_key: str, run_dir: Path, ctx: Any) -> None:
    """A feed killed and started again must not reuse the connection id of its predecessor's first
    connection: consumers (detector, position tracker) resync when it changes."""
    cfg = sim_config(run_dir, sim_server.url, _address(paper_key), extra=FAST)
    ids = []
    for _ in range(2):
        with running(Feed, cfg, ctx) as feed:
            assert wait_until(lambda f=feed: f.ready, 10), feed.ready_detail
            # Subscribed once this feed has bound: an inproc connect made before could still attach to
            # the previous feed's closing socket and never hear from this one (the state is replayed to
            # late joiners anyway).
            md = Watch(cfg, ctx, ["md"])
            try:
                st = md.wait(_feed_state(lambda m: m.state == "connected"))
                assert st is not None
                ids.append(st.conn_id)
            finally:
                md.close()
    assert ids[0] % 1000 == ids[1] % 1000 == 1  # both processes' first connection
    assert ids[0] != ids[1]

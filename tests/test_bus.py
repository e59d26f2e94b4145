"""The bus: gap counting, late joiners, malformed frames, non-blocking PUSH, endpoint rules."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
import zmq

from hip3.messages import HardStopState, Shutdown
from hip3.runtime.bus import Bus, BusError, GapCounter, endpoint_address
from tests.conftest import make_config


def test_gap_counter_counts_gaps_and_restarts() -> None:
    g = GapCounter()
    for seq in (1, 2, 3, 7, 8):
        g.check("a", seq)
    g.check("b", 1)
    assert g.gaps == 3
    g.check("a", 1)  # sender restarted
    assert g.restarts == 1 and g.gaps == 3
    g.check("a", 2)
    assert g.gaps == 3


def test_endpoints_by_transport(run_dir: Path) -> None:
    cfg = make_config(run_dir)
    assert endpoint_address(cfg, "md") == f"ipc://{run_dir}/sock/md"
    tcp = make_config(run_dir, "[bus]\ntransport='tcp'\ntcp_base_port=40000\n")
    assert endpoint_address(tcp, "intents") == "tcp://127.0.0.1:40005"
    inproc = make_config(run_dir, "[bus]\ntransport='inproc'\n")
    assert endpoint_address(inproc, "md").startswith("inproc://hip3-")
    with pytest.raises(BusError, match="unknown bus endpoint"):
        endpoint_address(cfg, "nope")
    with pytest.raises(BusError, match="too long"):
        endpoint_address(cfg, "md", run_dir / ("x" * 120))


@pytest.mark.parametrize("transport", ["inproc", "ipc", "tcp"])
def test_publish_stamps_seq_and_late_joiner_gets_state(run_dir: Path, transport: str) -> None:
    cfg = make_config(run_dir, f"[bus]\ntransport='{transport}'\ntcp_base_port=47300\n")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub_bus, sub_bus = Bus(cfg, "supervisor", ctx), Bus(cfg, "feed", ctx)
    try:
        pub = pub_bus.publisher("control")
        pub.publish(HardStopState(latched=True, reason="r", epoch=4, since_ms=1), state_key="hardstop")
        pub.publish(Shutdown(reason="not state"))  # a stream message sent before anyone listened
        sub = sub_bus.subscriber(["control"])
        got = None
        deadline = time.monotonic() + 5
        while got is None and time.monotonic() < deadline:
            if pub.sock.poll(10):
                pub.on_subscription()
            got = sub.recv()
        assert isinstance(got, HardStopState) and got.epoch == 4
        assert got.src == "supervisor/control" and got.seq == 3  # re-sent with a fresh sequence number
        assert sub.recv() is None  # the stream message is not replayed
    finally:
        sub_bus.close()
        pub_bus.close()
        ctx.term()


def test_malformed_frames_are_counted_not_raised(run_dir: Path) -> None:
    cfg = make_config(run_dir, "[bus]\ntransport='inproc'\n")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    bus = Bus(cfg, "executor", ctx)
    try:
        pull = bus.puller("intents")
        raw = ctx.socket(zmq.PUSH)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(bus.address("intents"))
        for frame in (b"garbage", msgspec.msgpack.encode({"t": "entry", "coin": 5}), b""):
            raw.send(frame)
        good = bus.pusher("intents")
        assert good.send(Shutdown(reason="ok"))
        msgs = []
        deadline = time.monotonic() + 5
        while not msgs and time.monotonic() < deadline:
            pull.sock.poll(50)
            msgs.extend(pull.drain())
        assert msgs == [Shutdown(reason="ok", seq=1, src="executor/intents")]
        assert pull.bad == 3 and pull.last_error
        raw.close()
    finally:
        bus.close()
        ctx.term()


def test_push_without_peer_never_blocks(run_dir: Path) -> None:
    cfg = make_config(run_dir)
    bus = Bus(cfg, "detector")
    try:
        push = bus.pusher("intents")  # nobody bound: IMMEDIATE means nothing queues
        t0 = time.monotonic()
        assert push.send(Shutdown(reason="x")) is False
        assert time.monotonic() - t0 < 0.5 and push.dropped == 1
    finally:
        bus.close()


def test_bind_removes_stale_ipc_socket_and_is_private(run_dir: Path) -> None:
    cfg = make_config(run_dir)
    (run_dir / "sock").mkdir()
    (run_dir / "sock" / "md").write_text("stale")
    bus = Bus(cfg, "feed")
    try:
        bus.publisher("md")
        assert (run_dir / "sock" / "md").stat().st_mode & 0o077 == 0
    finally:
        bus.close()


def test_wire_prefixes_match_every_message_and_are_prefix_free() -> None:
    import typing

    from hip3 import messages as m
    from tests.test_messages import _samples

    for s in _samples():
        assert m.encode(s).startswith(m.wire_prefix(type(s))), type(s).__name__
    ps = [m.wire_prefix(t) for t in typing.get_args(m.Message)]
    assert not any(a != b and b.startswith(a) for a in ps for b in ps)


@pytest.mark.parametrize("transport", ["inproc", "ipc"])
def test_filtered_subscriber_gets_only_the_types_it_asked_for(run_dir: Path, transport: str) -> None:
    from hip3.messages import AssetCtx, Bbo, FeedState

    cfg = make_config(run_dir, f"[bus]\ntransport='{transport}'\n")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub_bus, sub_bus = Bus(cfg, "feed", ctx), Bus(cfg, "executor", ctx)
    try:
        pub = pub_bus.publisher("md")
        pub.publish(FeedState(state="connected", conn_id=1, market_data_ready=True, user_ready=True, since_ns=1),
                    state_key="feed")
        sub = sub_bus.subscriber(["md"], only=(AssetCtx, FeedState))
        got: list[object] = []
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            if pub.sock.poll(10):
                pub.on_subscription()
            got.extend(sub.drain())
        assert {type(x) for x in got} == {FeedState}  # the state replayed to the joiner (once per prefix at most)
        for i in range(50):
            pub.publish(Bbo(coin="xyz:A", bid_px=1, bid_sz=1, ask_px=2, ask_sz=1, exch_ms=i, recv_ns=i))
        pub.publish(AssetCtx(coin="xyz:A", oracle_px=1, mark_px=1.5, mid_px=0, funding=0, open_interest=0,
                             recv_ns=7))
        more: list[object] = []
        deadline = time.monotonic() + 5
        while not more and time.monotonic() < deadline:
            sub.sock.poll(50)
            more.extend(x for x in sub.drain() if not isinstance(x, FeedState))
        assert [type(x) for x in more] == [AssetCtx] and sub.gaps == 0
    finally:
        sub_bus.close()
        pub_bus.close()
        ctx.term()

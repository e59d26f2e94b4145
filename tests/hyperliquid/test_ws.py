"""WsClient against a local ``websockets`` server on 127.0.0.1 (ack tracking, heartbeat, reconnect, posts)."""

from __future__ import annotations

import json
import random
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from hip3.hyperliquid.frames import BboFrame, ErrorFrame, PostResponse
from hip3.hyperliquid.ws import WsBudgetError, WsClient, WsNotConnected

pytestmark = pytest.mark.timeout(30)

BBO = {"channel": "bbo", "data": {"coin": "xyz:TSLA", "time": 1, "bbo": [{"px": "1", "sz": "2", "n": 1}, None]}}


class FakeExchange:
    """A scripted server. Flags change behaviour for new messages; ``received`` logs client messages."""

    def __init__(self) -> None:
        self.greeting = True
        self.ack = True
        self.pong = True
        self.answer_posts = True
        self.garbage_after_ack = False
        self.drop_after_subscribe = 0  # drop this many connections right after the first subscribe
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self.lock = threading.Lock()

    def handler(self, conn: ServerConnection) -> None:
        with self.lock:
            self.connections += 1
        if self.greeting:
            conn.send("Websocket connection established.")
        for raw in conn:
            msg = json.loads(raw)
            with self.lock:
                self.received.append(msg)
            method = msg.get("method")
            if method == "ping" and self.pong:
                conn.send('{"channel":"pong"}')
            elif method == "subscribe":
                with self.lock:
                    drop = self.drop_after_subscribe > 0
                    if drop:
                        self.drop_after_subscribe -= 1
                if drop:
                    conn.close()
                    return
                if self.ack:
                    sub = dict(msg["subscription"], nSigFigs=None)
                    conn.send(
                        json.dumps(
                            {"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": sub}}
                        )
                    )
                    if self.garbage_after_ack:
                        conn.send(b"\xff\x00garbage")
                        conn.send("{not json")
                        conn.send('{"channel":"error","data":"Already subscribed"}')
                    conn.send(json.dumps(BBO))
            elif method == "unsubscribe":
                conn.send(
                    json.dumps(
                        {
                            "channel": "subscriptionResponse",
                            "data": {"method": "unsubscribe", "subscription": msg["subscription"]},
                        }
                    )
                )
            elif method == "post" and self.answer_posts:
                payload = {
                    "status": "ok",
                    "response": {
                        "type": "order",
                        "data": {"statuses": [{"filled": {"totalSz": "1", "avgPx": "2", "oid": 7}}]},
                    },
                }
                conn.send(
                    json.dumps(
                        {
                            "channel": "post",
                            "data": {"id": msg["id"], "response": {"type": msg["request"]["type"], "payload": payload}},
                        }
                    )
                )


@pytest.fixture
def exchange() -> Iterator[tuple[FakeExchange, str]]:
    fx = FakeExchange()
    server: Server = serve(fx.handler, "127.0.0.1", 0)
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fx, f"ws://127.0.0.1:{port}/ws"
    finally:
        server.shutdown()
        thread.join(5)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_client(url: str, clock: FakeClock, **kw: Any) -> WsClient:
    kw.setdefault("rng", random.Random(1))
    kw.setdefault("reconnect_base_s", 0.5)
    return WsClient(url, clock=clock, **kw)


def _wait_readable(fd: int, timeout_s: float) -> None:
    """``poll`` rather than ``select``: a long test session can hold more than 1,024 descriptors."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    p.poll(timeout_s * 1000)


def pump(
    client: WsClient, until: Callable[[], bool], timeout: float = 5.0, into: list[Any] | None = None
) -> list[Any]:
    """Poll until ``until()``; frames read go to ``into`` (visible to ``until`` as they arrive)."""
    frames: list[Any] = [] if into is None else into
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        fd = client.fileno()
        if fd >= 0:
            _wait_readable(fd, 0.02)
            frames.extend(f for f, _ in client.poll_read())
        client.tick()
        if until():
            return frames
    raise AssertionError("condition not reached")


def subs_sent(fx: FakeExchange) -> list[dict[str, Any]]:
    with fx.lock:
        return [m for m in fx.received if m.get("method") == "subscribe"]


def test_subscribe_ack_and_data(exchange: tuple[FakeExchange, str]) -> None:
    fx, url = exchange
    clock = FakeClock()
    states: list[str] = []
    c = make_client(url, clock, on_state=states.append)
    sub = {"type": "bbo", "coin": "xyz:TSLA"}
    c.subscribe(sub)
    assert c.connect()
    assert c.state == "connected" and c.conn_id == 1 and c.fileno() >= 0
    frames: list[Any] = []
    pump(c, lambda: c.is_acked(sub), into=frames)
    # The data frame may arrive in a later read than its ack: the condition sees frames as they come.
    pump(c, lambda: any(isinstance(f, BboFrame) for f in frames), 2, into=frames)
    assert c.all_acked()
    assert not any(type(f).__name__ == "SubscriptionResponseFrame" for f in frames)  # acks are not data
    assert c.decoder.counters["greeting"] == 1
    # A second subscription on the live connection, then unsubscribe (its ack is ignored).
    sub2 = {"type": "activeAssetCtx", "coin": "xyz:TSLA"}
    c.subscribe(sub2)
    pump(c, lambda: c.is_acked(sub2))
    c.unsubscribe(sub2)
    pump(c, lambda: any(m.get("method") == "unsubscribe" for m in fx.received))
    assert not c.is_acked(sub2) and c.all_acked()
    c.close()
    assert c.state == "disconnected" and states[:2] == ["connecting", "connected"]


def test_no_ack_means_not_ready(exchange: tuple[FakeExchange, str]) -> None:
    fx, url = exchange
    fx.ack = False
    c = make_client(url, FakeClock())
    c.subscribe({"type": "orderUpdates", "user": "0xABC"})
    c.connect()
    pump(c, lambda: len(subs_sent(fx)) == 1)
    assert not c.all_acked()
    c.close()


def test_pong_timeout_reconnects_and_resubscribes(exchange: tuple[FakeExchange, str]) -> None:
    fx, url = exchange
    clock = FakeClock()
    c = make_client(url, clock, ping_after_idle_s=20, pong_timeout_s=10)
    subs = [{"type": "bbo", "coin": "xyz:TSLA"}, {"type": "userFills", "user": "0xab"}]
    for s in subs:
        c.subscribe(s)
    c.connect()
    pump(c, c.all_acked)
    # Idle -> ping -> pong keeps the connection.
    clock.t += 21
    c.tick()
    pump(c, lambda: any(m.get("method") == "ping" for m in fx.received))
    pump(c, lambda: c._ping_sent_at is None)
    assert c.state == "connected" and c.conn_id == 1
    # Now the server stops answering pings: reconnect after the pong timeout.
    fx.pong = False
    clock.t += 21
    c.tick()
    pump(c, lambda: sum(m.get("method") == "ping" for m in fx.received) == 2)
    clock.t += 10
    c.tick()
    assert c.state == "disconnected" and c.attempt == 1
    clock.t += 1.0  # past the jittered backoff (0.5 * 2**0 at most)
    c.tick()
    assert c.state == "connected" and c.conn_id == 2
    pump(c, c.all_acked)
    assert len(subs_sent(fx)) == 4  # both subscriptions re-sent
    # A healthy session resets the attempt counter (or every later reconnect waits the longest).
    clock.t += 31
    c.tick()
    assert c.attempt == 0
    c.close()


def test_stall_detection(exchange: tuple[FakeExchange, str]) -> None:
    _fx, url = exchange
    clock = FakeClock()
    c = make_client(url, clock, ping_after_idle_s=1000, stall_timeout_s=60)
    c.connect()
    pump(c, lambda: c.decoder.counters["greeting"] == 1)
    clock.t += 61
    c.tick()
    assert c.state == "disconnected" and "stall" in (c.last_error or "")
    c.close()


def test_post_response_timeout_and_budget(exchange: tuple[FakeExchange, str]) -> None:
    fx, url = exchange
    clock = FakeClock()
    c = make_client(url, clock, max_inflight_posts=2)
    with pytest.raises(WsNotConnected):
        c.post("info", {"type": "meta"}, lambda r: None)
    c.connect()
    got: list[PostResponse] = []
    pid = c.post("action", {"action": {"type": "noop"}, "nonce": 1}, got.append)
    pump(c, lambda: len(got) == 1)
    assert got[0].id == pid and got[0].exchange is not None and got[0].exchange.statuses[0].oid == 7
    assert c.inflight_posts == 0
    fx.answer_posts = False
    c.post("info", {"type": "meta"}, got.append, timeout_s=3)
    c.post("info", {"type": "meta"}, got.append, timeout_s=3)
    with pytest.raises(WsBudgetError):
        c.post("info", {"type": "meta"}, got.append)
    clock.t += 3
    c.tick()
    assert [r.type for r in got[1:]] == ["timeout", "timeout"] and c.inflight_posts == 0
    c.close()


def test_message_budget(exchange: tuple[FakeExchange, str]) -> None:
    _fx, url = exchange
    clock = FakeClock()
    c = make_client(url, clock, max_msgs_per_min=15)
    c.connect()
    got: list[PostResponse] = []
    for _ in range(5):
        c.post("info", {"type": "meta"}, got.append)
    with pytest.raises(WsBudgetError):
        c.post("info", {"type": "meta"}, got.append)
    clock.t += 60
    c.post("info", {"type": "meta"}, got.append)
    c.close()
    assert len(got) == 6  # every callback ran exactly once (answers or "disconnected")


def test_garbage_and_error_frames(exchange: tuple[FakeExchange, str]) -> None:
    fx, url = exchange
    fx.garbage_after_ack = True
    c = make_client(url, FakeClock())
    c.subscribe({"type": "bbo", "coin": "xyz:TSLA"})
    c.connect()
    frames = pump(c, lambda: c.errors["error_frame"] == 1)
    deadline = time.monotonic() + 2
    while not any(isinstance(f, BboFrame) for f in frames) and time.monotonic() < deadline:
        frames += pump(c, lambda: True)  # one read pass: the bbo may come in a later read
    assert any(isinstance(f, BboFrame) for f in frames)
    assert any(isinstance(f, ErrorFrame) and f.data == "Already subscribed" for f in frames)
    assert c.decoder.counters["non_json"] == 2 and c.state == "connected"
    c.close()


def test_server_drops_connection_pending_posts_fail(exchange: tuple[FakeExchange, str]) -> None:
    fx, url = exchange
    fx.drop_after_subscribe = 2
    fx.answer_posts = False
    clock = FakeClock()
    c = make_client(url, clock)
    c.connect()
    got: list[PostResponse] = []
    c.post("action", {"action": {"type": "noop"}}, got.append)
    c.subscribe({"type": "bbo", "coin": "xyz:TSLA"})  # the server drops us on this
    pump(c, lambda: c.state == "disconnected")
    assert [r.type for r in got] == ["disconnected"]
    for expected_attempt in (2, 3):
        clock.t += 100
        c.tick()  # reconnect; the resubscribe makes the server drop again (or finally succeed)
        pump(c, lambda: c.state == "disconnected" or c.all_acked())
        if c.state == "disconnected":
            assert c.attempt == expected_attempt
    assert c.all_acked() and c.conn_id == 3 and c.reconnects == 2
    c.close()


def test_connect_refused_backoff_grows_and_close_is_fast() -> None:
    clock = FakeClock()
    c = make_client("ws://127.0.0.1:9/ws", clock, reconnect_base_s=1, reconnect_max_s=8, connect_timeout_s=1)
    assert not c.connect()
    delays = []
    for _ in range(6):
        assert c._reconnect_at is not None
        delays.append(c._reconnect_at - clock.t)
        clock.t = c._reconnect_at
        c.tick()
    assert all(d <= 8 for d in delays) and delays[-1] >= 4 and delays[0] <= 1
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 1 and c._reconnect_at is None
    clock.t += 100
    c.tick()
    assert c.state == "disconnected"


def test_run_forever_helper(exchange: tuple[FakeExchange, str]) -> None:
    _fx, url = exchange
    c = WsClient(url)
    c.subscribe({"type": "bbo", "coin": "xyz:TSLA"})
    seen: list[Any] = []
    c.run_forever(lambda f, ns: seen.append(f), until=lambda: bool(seen), max_s=5)
    assert isinstance(seen[0], BboFrame)
    c.close()


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 125, 126, 127, 455, 65535, 65536, 70000])
def test_text_frame_matches_websocket_client(n: int) -> None:
    """The hand-built frame ``_send_raw`` writes is byte-identical to websocket-client's for the same key."""
    import os

    import websocket

    from hip3.hyperliquid.ws_framing import text_frame

    payload, key = os.urandom(n), os.urandom(4)
    ref = websocket.ABNF.create_frame(payload, websocket.ABNF.OPCODE_TEXT)
    ref.get_mask_key = lambda _n: key
    assert text_frame(payload, key) == ref.format()
    assert text_frame(payload)[:2] == ref.format()[:2]  # a fresh random key otherwise


def test_pong_frame_matches_websocket_client() -> None:
    """The answer to a server ping is a masked PONG carrying the ping's payload."""
    import os

    import websocket

    from hip3.hyperliquid.ws_framing import text_frame

    payload, key = b"ping-payload", os.urandom(4)
    ref = websocket.ABNF.create_frame(payload, websocket.ABNF.OPCODE_PONG)
    ref.get_mask_key = lambda _n: key
    assert text_frame(payload, key, opcode=websocket.ABNF.OPCODE_PONG) == ref.format()


def test_post_callback_runs_with_the_blocking_timeout_restored(exchange: tuple[FakeExchange, str]) -> None:
    """A post callback may send (the executor's next batch): it must not run on a non-blocking socket."""
    _fx, url = exchange
    c = make_client(url, FakeClock())
    c.connect()
    seen: list[float | None] = []
    ws = c._ws
    assert ws is not None and ws.sock is not None
    c.post("info", {"type": "meta"}, lambda _r: seen.append(ws.sock.gettimeout()))
    pump(c, lambda: bool(seen))
    assert seen[0] == c.send_timeout_s and seen[0] != 0.0
    c.close()


def test_can_post_tells_when_a_post_would_be_refused(exchange: tuple[FakeExchange, str]) -> None:
    _fx, url = exchange
    c = make_client(url, FakeClock(), max_msgs_per_min=15)
    assert not c.can_post()  # not connected
    c.connect()
    assert c.can_post()
    for _ in range(5):  # the budget keeps a reserve of 10 for pings and subscriptions
        c.post("info", {"type": "meta"}, lambda _r: None)
    assert not c.can_post()
    with pytest.raises(WsBudgetError):
        c.post("info", {"type": "meta"}, lambda _r: None)
    c.close()


def test_market_frames_go_to_the_sink_per_recv(exchange: tuple[FakeExchange, str]) -> None:
    """The feed's path: with a sink, decoded market frames are handed over as each recv is decoded and
    ``poll_read_market`` returns nothing; typed ``Bbo`` messages, none lost."""
    _fx, url = exchange
    c = make_client(url, FakeClock())
    sub = {"type": "bbo", "coin": "xyz:TSLA"}
    c.subscribe(sub)
    assert c.connect()
    batches: list[list[tuple[Any, int]]] = []
    deadline = time.monotonic() + 5
    returned: list[Any] = []
    while not batches and time.monotonic() < deadline:
        _wait_readable(c.fileno(), 0.02)
        returned += c.poll_read_market(batches.append)
    assert returned == [] and len(batches) >= 1
    got = [m for batch in batches for m, _ in batch]
    assert [type(m).__name__ for m in got] == ["Bbo"]
    assert got[0].coin == "xyz:TSLA" and got[0].bid_px == 1.0 and got[0].recv_ns == batches[0][0][1]
    assert all(batch for batch in batches)  # never an empty batch
    c.close()

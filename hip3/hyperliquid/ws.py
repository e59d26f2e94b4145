"""Hyperliquid WebSocket client for a poll loop: subscriptions with acks, heartbeat, reconnect, posts.

Built on ``websocket-client`` for the handshake, TLS and sends (``skip_utf8_validation=True``,
TCP_NODELAY); frames are read by ``_FrameReader`` in 256 KiB chunks (one system call per chunk instead
of three per frame: 70k -> ~300k frames/s here). It never owns a thread: the feed/executor actors put
``fileno()`` in their ``zmq.Poller``, call ``poll_read()`` (or the feed's ``poll_read_market()``) when it
is readable (it drains the frames available now, bounded by ``max_read_bytes`` per call so timers run
under a flood, including bytes already decrypted by TLS, and keeps partial frames for the next call)
and ``tick(now)`` for timers. ``run_forever`` is a small blocking helper for tools/tests.

Guards against (protocol §2, lessons and latent issues of the Rust original):

* the server closes a connection that received nothing for 60 s: ping ``{"method":"ping"}`` after
  ``ping_after_idle_s`` of silence, reconnect when no pong within ``pong_timeout_s`` (§2.3);
* silent receive stalls: reconnect after ``stall_timeout_s`` without any frame;
* B04: a subscription is live on its ``subscriptionResponse`` ack (``data.method == "subscribe"``, matched
  on type + coin/user); unsubscribe acks are ignored; acks are never returned as data;
* error frames (``{"channel":"error","data":"..."}``) are surfaced (returned, counted, ``last_error``,
  logged at most once per 10 s);
* latent issue 12: the reconnect attempt counter is RESET after a healthy session; backoff is
  exponential with jitter; every subscription is re-sent after a reconnect (§2.7);
* B09: ``close()`` sends a close frame with bounded timeouts and never hangs;
* rate limits (§9.1): ≤ 2000 client messages per rolling 60 s and ≤ 100 in-flight posts, refused locally
  (``WsBudgetError``) rather than risking the exchange's penalty.

A post whose connection dropped or that timed out resolves as ``type="disconnected"``/``"timeout"``: its
outcome is UNKNOWN (an action may have executed), so the caller must reconcile, never assume failure.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import random
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import websocket

from hip3 import clock as _hip3_clock
from hip3.messages import AssetCtx, Bbo

from .frames import (
    ErrorFrame,
    Frame,
    FrameDecoder,
    L2BookFrame,
    PongFrame,
    PostFrame,
    PostResponse,
    SubscriptionResponseFrame,
)

__all__ = ["ConnState", "PostCallback", "WsBudgetError", "WsClient", "WsNotConnected", "sub_key", "text_frame"]

_log = logging.getLogger("hip3.hyperliquid.ws")
ConnState = Literal["connecting", "connected", "disconnected"]
PostCallback = Callable[[PostResponse], None]
FrameSink = Callable[[list[tuple[Any, int]]], None]
SubKey = tuple[str, str | None, str | None]
_ENC = msgspec.json.Encoder()
_PING = b'{"method":"ping"}'
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, websocket.WebSocketTimeoutException)
_READ_CHUNK = 256 * 1024
_ERROR_LOG_INTERVAL_S = 10.0
_MAX_MESSAGE = 64 * 1024 * 1024  # refuse (drop the connection) rather than buffer without bound
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class _ProtocolError(Exception):
    """The server broke RFC 6455 framing: the connection is dropped (and reconnected)."""


class _FrameReader:
    """RFC 6455 server frames from a byte stream read in large chunks.

    ``websocket-client``'s ``recv_data`` makes three ``recv`` system calls per frame (header, length,
    payload), which caps a Python feed near 70k frames/s here; reading 256 KiB at a time and cutting
    frames out of the buffer makes it one call per chunk. Handles fragmentation (continuation frames),
    control frames between fragments, and refuses masked server frames, reserved bits (no extension
    is negotiated) and messages over ``_MAX_MESSAGE``.
    """

    __slots__ = ("_buf", "_frag_len", "_frag_op", "_frags")

    def __init__(self) -> None:
        self._buf = b""
        self._frag_op = -1
        self._frags: list[bytes] = []
        self._frag_len = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """Append ``chunk``; return every complete message as ``(opcode, payload)``."""
        data = self._buf + chunk if self._buf else chunk
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(data)
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            n = b1 & 0x7F
            start = pos + 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(data[pos + 2:pos + 10], "big")
                start = pos + 10
            if b1 & 0x80:
                raise _ProtocolError("masked frame from the server")
            if b0 & 0x70:
                raise _ProtocolError("reserved bits set (no extension negotiated)")
            if n > _MAX_MESSAGE:
                raise _ProtocolError(f"frame of {n} bytes")
            stop = start + n
            if stop > end:
                break
            payload = data[start:stop]
            pos = stop
            op = b0 & 0x0F
            if op >= 0x8:  # control frames: never fragmented, may sit between fragments
                if not b0 & 0x80 or n > 125:
                    raise _ProtocolError("bad control frame")
                out.append((op, payload))
            elif op == _OP_CONT:
                if self._frag_op < 0:
                    raise _ProtocolError("continuation without a start")
                self._frags.append(payload)
                self._frag_len += n
                if self._frag_len > _MAX_MESSAGE:
                    raise _ProtocolError("fragmented message too large")
                if b0 & 0x80:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op = -1
                    self._frags = []
                    self._frag_len = 0
            elif op in (_OP_TEXT, _OP_BINARY):
                if self._frag_op >= 0:
                    raise _ProtocolError("new message inside a fragmented one")
                if b0 & 0x80:
                    out.append((op, payload))
                else:
                    self._frag_op = op
                    self._frags = [payload]
                    self._frag_len = n
            else:
                raise _ProtocolError(f"unknown opcode {op}")
        self._buf = data[pos:] if pos < end else b""
        return out


def text_frame(payload: bytes, mask_key: bytes | None = None, opcode: int = 0x1) -> bytes:
    """A single (FIN) masked client frame carrying ``payload`` (RFC 6455 §5.2: a client masks every
    frame): a text frame unless ``opcode`` says otherwise (a pong).

    ``mask_key`` is 4 fresh random bytes per frame unless given (tests)."""
    n = len(payload)
    key = os.urandom(4) if mask_key is None else mask_key
    first = 0x80 | opcode
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = bytes((first, 0xFE)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0xFF)) + n.to_bytes(8, "big")
    if not n:
        return header + key
    # XOR the whole payload with the repeated key as one big integer (about 1 µs for an order frame).
    masked = int.from_bytes(payload, "little") ^ int.from_bytes((key * ((n >> 2) + 1))[:n], "little")
    return header + key + masked.to_bytes(n, "little")


class WsNotConnected(RuntimeError):
    """A post was attempted while the connection is down."""


class WsBudgetError(RuntimeError):
    """Sending would exceed the outbound message budget or the in-flight post limit (§9.1)."""


def sub_key(subscription: dict[str, Any]) -> SubKey:
    """Ack-matching key: type + coin/user (acks may echo extra fields such as nSigFigs)."""
    coin = subscription.get("coin")
    user = subscription.get("user")
    return (
        str(subscription.get("type")),
        coin if isinstance(coin, str) else None,
        user.lower() if isinstance(user, str) else None,
    )


class _Post:
    __slots__ = ("callback", "deadline")

    def __init__(self, callback: PostCallback, deadline: float) -> None:
        self.callback = callback
        self.deadline = deadline


class WsClient:
    """One WebSocket connection, driven by ``poll_read()``/``tick()``. Times are ``clock()`` seconds."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        decoder: FrameDecoder | None = None,
        ping_after_idle_s: float = 20.0,
        pong_timeout_s: float = 10.0,
        stall_timeout_s: float | None = 60.0,
        reconnect_base_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        healthy_after_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        send_timeout_s: float = 2.0,
        post_timeout_s: float = 10.0,
        max_msgs_per_min: int = 2000,
        max_inflight_posts: int = 100,
        rng: random.Random | None = None,
        on_state: Callable[[ConnState], None] | None = None,
        max_read_bytes: int = 1 << 20,
    ) -> None:
        self.url = url
        # The process clock as it is now (``hip3.clock``: real, or a replay's virtual clock), bound once.
        self._clock = clock if clock is not None else _hip3_clock.monotonic
        self._monotonic_ns = _hip3_clock.monotonic_ns
        # Raw market frames, (recv_ns, payload), collected for a recorder when set to a list (the feed
        # takes and writes them after the frames were published); None = not recording.
        self.record: list[tuple[int, bytes]] | None = None
        self.decoder = decoder or FrameDecoder()
        self.ping_after_idle_s = ping_after_idle_s
        self.pong_timeout_s = pong_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = reconnect_max_s
        self.healthy_after_s = healthy_after_s
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self.post_timeout_s = post_timeout_s
        self.max_msgs_per_min = max_msgs_per_min
        self.max_inflight_posts = max_inflight_posts
        self._rng = rng or random.Random()
        self._on_state = on_state

        self.state: ConnState = "disconnected"
        self.conn_id = 0  # increases on every successful connect (consumers resync on change)
        self.attempt = 0  # consecutive failed connects / unhealthy sessions (drives backoff)
        self.reconnects = 0
        self.last_error: str | None = None
        self.errors: collections.Counter[str] = collections.Counter()
        self._ws: websocket.WebSocket | None = None
        self._subs: dict[SubKey, dict[str, Any]] = {}
        self._acked: set[SubKey] = set()
        self._posts: dict[int, _Post] = {}
        self._deferred: collections.deque[tuple[PostCallback, PostResponse]] = collections.deque()
        self._next_id = 1
        self._sent_times: collections.deque[float] = collections.deque()
        self._connected_at = 0.0
        self._last_recv = 0.0
        self._ping_sent_at: float | None = None
        self._reconnect_at: float | None = None
        self._closed = False
        self._reader = _FrameReader()
        self.max_read_bytes = max_read_bytes
        self._error_logged_at = -_ERROR_LOG_INTERVAL_S

    # ------------------------------------------------------------------ public API

    def fileno(self) -> int:
        """The socket's fd for a poller, or -1 while disconnected."""
        ws = self._ws
        if ws is None or ws.sock is None:
            return -1
        return int(ws.sock.fileno())

    @property
    def inflight_posts(self) -> int:
        return len(self._posts)

    @property
    def reconnect_at(self) -> float | None:
        """When ``tick`` will reconnect (``clock()`` seconds), or None (connected, or closed)."""
        return self._reconnect_at

    def connect(self) -> bool:
        """Connect now (blocking, bounded by ``connect_timeout_s``) and resubscribe; False on failure
        (a reconnect is then scheduled for ``tick``)."""
        if self._closed:
            return False
        self._set_state("connecting")
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False)
        try:
            ws.connect(  # type: ignore[no-untyped-call]
                self.url,
                timeout=self.connect_timeout_s,
                sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                suppress_origin=True,
            )
            ws.settimeout(self.send_timeout_s)
        except Exception as exc:  # DNS, refused, handshake, TLS: all mean "try again later"
            self._safe_close(ws)
            self._connect_failed(f"connect failed: {exc!r}")
            return False
        now = self._clock()
        self._ws = ws
        self._reader = _FrameReader()
        self.conn_id += 1
        self._connected_at = now
        self._last_recv = now
        self._ping_sent_at = None
        self._reconnect_at = None
        self._acked.clear()
        self._set_state("connected")
        subs = list(self._subs.values())
        return all(self._send_json({"method": "subscribe", "subscription": sub}) for sub in subs)

    def subscribe(self, subscription: dict[str, Any]) -> None:
        """Remember ``subscription`` (re-sent after every reconnect) and send it if connected."""
        key = sub_key(subscription)
        if key in self._subs:
            return
        self._subs[key] = dict(subscription)
        if self.state == "connected":
            self._send_json({"method": "subscribe", "subscription": subscription})

    def unsubscribe(self, subscription: dict[str, Any]) -> None:
        key = sub_key(subscription)
        sub = self._subs.pop(key, None)
        self._acked.discard(key)
        if sub is not None and self.state == "connected":
            self._send_json({"method": "unsubscribe", "subscription": sub})

    def is_acked(self, subscription: dict[str, Any]) -> bool:
        return sub_key(subscription) in self._acked

    def all_acked(self) -> bool:
        return self.state == "connected" and all(k in self._acked for k in self._subs)

    def post(
        self,
        request_type: Literal["action", "info"],
        payload: dict[str, Any],
        on_response: PostCallback,
        timeout_s: float | None = None,
    ) -> int:
        """Send ``{"method":"post","id":N,"request":{"type":...,"payload":...}}``; ``on_response`` is called
        exactly once (answer, ``"timeout"`` or ``"disconnected"``). Returns the id. Raises
        ``WsNotConnected``/``WsBudgetError`` without sending."""
        if self.state != "connected" or self._ws is None:
            raise WsNotConnected("post while not connected")
        if len(self._posts) >= self.max_inflight_posts:
            raise WsBudgetError(f"{len(self._posts)} posts in flight (limit {self.max_inflight_posts})")
        self._check_budget(reserve=10)  # keep a little room for pings
        post_id = self._next_id
        self._next_id += 1
        msg = {"method": "post", "id": post_id, "request": {"type": request_type, "payload": payload}}
        deadline = self._clock() + (self.post_timeout_s if timeout_s is None else timeout_s)
        self._posts[post_id] = _Post(on_response, deadline)
        if not self._send_json(msg) and post_id in self._posts:
            # Not sent and not already resolved by a disconnect: nothing left the process.
            del self._posts[post_id]
            raise WsBudgetError("post not sent (outbound budget)")
        return post_id

    def poll_read(self) -> list[tuple[Frame, int]]:
        """Read every frame available now without blocking; returns ``(frame, recv_ns)`` for data frames
        and error frames. Acks, pongs and post responses are consumed here (post callbacks run)."""
        return self._poll(False)  # type: ignore[return-value]

    def poll_read_market(self, sink: FrameSink | None = None) -> list[tuple[Frame | Bbo | AssetCtx, int]]:
        """``poll_read`` for the feed's hot path: ``bbo``/``activeAssetCtx`` frames come back already
        converted to ``hip3.messages.Bbo``/``AssetCtx`` (``FrameDecoder.decode_market``); every other
        frame exactly as ``poll_read`` returns it.

        With ``sink``, the frames of each ``recv`` go to ``sink`` as soon as they are decoded (and the
        return is empty): a frame is published before the socket is read again, instead of waiting for
        every frame that arrived meanwhile to be read and decoded first."""
        return self._poll(True, sink)

    def _poll(self, market: bool, sink: FrameSink | None = None) -> list[tuple[Frame | Bbo | AssetCtx, int]]:
        ws = self._ws
        if ws is None or ws.sock is None:
            return []
        sock = ws.sock
        reader = self._reader
        decoder = self.decoder
        decode_market = decoder.decode_market
        decode = decoder.decode
        handle = self._handle_control
        monotonic_ns = self._monotonic_ns
        record = self.record
        out: list[tuple[Frame | Bbo | AssetCtx, int]] = []
        append = out.append
        got = 0
        ws.settimeout(0.0)
        try:
            while self._ws is ws:
                if got >= self.max_read_bytes:
                    # Bounded, so timers still run under a flood. Bytes TLS has already decrypted are
                    # invisible to the poller: take them now (at most one record) or they would wait.
                    pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
                    if pending <= 0:
                        break
                    size = pending
                else:
                    size = _READ_CHUNK
                try:
                    chunk = sock.recv(size)
                except _WOULD_BLOCK:
                    break
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        break
                    self._drop(f"recv failed: {exc!r}")
                    break
                if not chunk:
                    self._drop("recv failed: connection closed by peer")
                    break
                got += len(chunk)
                recv_ns = monotonic_ns()
                self._last_recv = self._clock()
                self._ping_sent_at = None  # the server is alive
                try:
                    messages = reader.feed(chunk)
                except _ProtocolError as exc:
                    self._drop(f"protocol error: {exc}")
                    break
                for opcode, data in messages:
                    if opcode in (_OP_TEXT, _OP_BINARY):
                        if market:
                            frame = decode_market(data, recv_ns)
                            kind = type(frame)
                            if kind is Bbo or kind is AssetCtx:
                                append((frame, recv_ns))  # type: ignore[arg-type]
                                if record is not None:
                                    record.append((recv_ns, data))
                                continue
                            if record is not None and kind is L2BookFrame:
                                record.append((recv_ns, data))
                                continue  # recorded for a replay's book depth; the feed has no use for it
                        else:
                            frame = decode(data)
                        if frame is None or handle(frame):  # type: ignore[arg-type]
                            continue
                        append((frame, recv_ns))
                    elif opcode == _OP_PING:
                        try:
                            ws.sock.sendall(text_frame(data, opcode=_OP_PONG))
                        except (OSError, *_WOULD_BLOCK) as exc:
                            # The socket is non-blocking here: a partial write would corrupt the stream.
                            self._drop(f"pong send failed: {exc!r}")
                            break
                    elif opcode == _OP_CLOSE:
                        self._drop("closed by server")
                        break
                if sink is not None and out:  # this recv's frames go out before the socket is read again
                    sink(out)
                    out = []
                    append = out.append
        finally:
            if self._ws is ws and ws.sock is not None:
                ws.settimeout(self.send_timeout_s)
            # Post callbacks run only now, with the blocking send timeout back: a callback that sends
            # (the executor's next batch) must never write to a non-blocking socket.
            self._run_deferred()
        return out

    def _run_deferred(self) -> None:
        while self._deferred:
            callback, response = self._deferred.popleft()
            callback(response)

    def tick(self, now: float | None = None) -> None:
        """Run the timers: post timeouts, ping/pong, stall, health reset, reconnect when due."""
        if now is None:
            now = self._clock()
        if self._closed:
            return
        if self.state != "connected":
            if self._reconnect_at is not None and now >= self._reconnect_at:
                self.reconnects += 1
                self.connect()
            return
        expired = [pid for pid, p in self._posts.items() if now >= p.deadline]
        for pid in expired:
            post = self._posts.pop(pid)
            post.callback(PostResponse(pid, "timeout", error="post timed out; outcome unknown"))
        if self.attempt and now - self._connected_at >= self.healthy_after_s:
            self.attempt = 0  # a healthy session resets the backoff (latent issue 12)
        idle = now - self._last_recv
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at >= self.pong_timeout_s:
                self._drop("pong timeout", now)
                return
        elif idle >= self.ping_after_idle_s:
            self._ping_sent_at = now
            self._send_raw(_PING)
        if self.stall_timeout_s is not None and self.state == "connected" and idle >= self.stall_timeout_s:
            self._drop(f"receive stall: nothing for {idle:.1f}s", now)

    @property
    def closed(self) -> bool:
        """``close()`` was called: this client is done for good (a stop, not a dropped connection)."""
        return self._closed

    def close(self) -> None:
        """Close for good: close frame with a bounded wait, fail pending posts, no more reconnects."""
        self._closed = True
        self._drop("closed by client", reconnect=False)

    def run_forever(
        self,
        on_frame: Callable[[Frame, int], None],
        until: Callable[[], bool],
        max_s: float = 60.0,
        poll_s: float = 0.05,
    ) -> None:
        """Blocking helper for tools/tests: poll/read/tick until ``until()`` or ``max_s`` elapses."""
        end = time.monotonic() + max_s
        if self.state == "disconnected" and self._reconnect_at is None:
            self.connect()
        while not until() and time.monotonic() < end and not self._closed:
            fd = self.fileno()
            if fd >= 0:
                select.select([fd], [], [], poll_s)
                for frame, recv_ns in self.poll_read():
                    on_frame(frame, recv_ns)
            else:
                time.sleep(poll_s)
            self.tick()

    # ------------------------------------------------------------------ internals

    def _handle_control(self, frame: Frame) -> bool:
        if isinstance(frame, SubscriptionResponseFrame):
            if frame.method == "subscribe":  # unsubscribe acks are ignored [UNVERIFIED shape, §2.2]
                key = sub_key(msgspec.structs.asdict(frame.subscription))
                if key in self._subs:
                    self._acked.add(key)
            return True
        if isinstance(frame, PongFrame):
            return True
        if isinstance(frame, PostFrame):
            post = self._posts.pop(frame.response.id, None)
            if post is None:
                self.errors["unmatched_post"] += 1
            else:
                self._deferred.append((post.callback, frame.response))
            return True
        if isinstance(frame, ErrorFrame):
            self.last_error = frame.data
            n = self.errors["error_frame"] = self.errors["error_frame"] + 1
            now = self._clock()
            if now - self._error_logged_at >= _ERROR_LOG_INTERVAL_S:  # a flood must not flood the log
                self._error_logged_at = now
                _log.warning("ws error frame (%d so far): %s", n, frame.data[:300])
        return False

    def can_post(self) -> bool:
        """Would ``post`` be accepted now (connected, in-flight below the cap, budget left)? Lets a
        caller hold its queue instead of building and signing an action the client would refuse."""
        if self.state != "connected" or self._ws is None or len(self._posts) >= self.max_inflight_posts:
            return False
        try:
            self._check_budget(reserve=10)
        except WsBudgetError:
            return False
        return True

    def _check_budget(self, reserve: int = 0) -> None:
        now = self._clock()
        window = self._sent_times
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= self.max_msgs_per_min - reserve:
            raise WsBudgetError(f"{len(window)} messages sent in the last 60 s (limit {self.max_msgs_per_min})")

    def _send_json(self, obj: dict[str, Any]) -> bool:
        return self._send_raw(_ENC.encode(obj))

    def _send_raw(self, data: bytes) -> bool:
        ws = self._ws
        if ws is None or ws.sock is None:
            return False
        try:
            self._check_budget()
        except WsBudgetError as exc:
            self.errors["budget"] += 1
            _log.warning("ws send refused: %s", exc)
            return False
        try:
            # One sendall of a frame built here instead of ``ws.send``: websocket-client builds an ABNF
            # object, masks through a generic helper and loops over partial sends under a lock (about
            # 6 µs more per order frame). The socket keeps its send timeout (``send_timeout_s``), so a
            # stuck peer raises here exactly as before; a partial write then drops the connection.
            ws.sock.sendall(text_frame(data))
        except Exception as exc:
            self._drop(f"send failed: {exc!r}")
            return False
        self._sent_times.append(self._clock())
        return True

    def _set_state(self, state: ConnState) -> None:
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state(state)

    def _backoff(self) -> float:
        ceiling = min(self.reconnect_max_s, self.reconnect_base_s * float(1 << min(self.attempt, 30)))
        return ceiling * (0.5 + 0.5 * self._rng.random())  # jitter in [ceiling/2, ceiling)

    def _connect_failed(self, why: str) -> None:
        self.last_error = why
        self.errors["connect_failed"] += 1
        _log.warning("ws %s", why)
        self._schedule_reconnect(self._clock())

    def _schedule_reconnect(self, now: float) -> None:
        # The reconnect time is set before the state callback runs, so the callback can read
        # ``reconnect_at`` and wake its loop then (the executor does).
        if self._closed:
            self._reconnect_at = None
        else:
            self._reconnect_at = now + self._backoff()
            self.attempt += 1
        self._set_state("disconnected")

    def _drop(self, why: str, now: float | None = None, reconnect: bool = True) -> None:
        """Tear the connection down, fail in-flight posts and schedule a reconnect."""
        if now is None:
            now = self._clock()
        ws, self._ws = self._ws, None
        was_healthy = ws is not None and now - self._connected_at >= self.healthy_after_s
        if ws is not None:
            self._safe_close(ws)
            self.errors["disconnect"] += 1
            # Our own close at a stop is news to no one: INFO; any other drop is a warning.
            (_log.info if self._closed else _log.warning)("ws disconnected: %s", why)
            self.last_error = why
        self._acked.clear()
        self._ping_sent_at = None
        posts, self._posts = self._posts, {}
        for pid, post in posts.items():
            post.callback(PostResponse(pid, "disconnected", error=f"{why}; outcome unknown"))
        if was_healthy:
            self.attempt = 0
        if reconnect and not self._closed:
            self._schedule_reconnect(now)
        else:
            self._reconnect_at = None
            self._set_state("disconnected")

    @staticmethod
    def _safe_close(ws: websocket.WebSocket) -> None:
        try:
            if ws.sock is not None:
                ws.settimeout(1.0)
                ws.close(status=websocket.STATUS_NORMAL, timeout=1.0)
        except Exception:
            pass
        try:
            ws.shutdown()  # type: ignore[no-untyped-call]
        except Exception:
            pass

"""Hyperliquid WebSocket client for a poll loop: the connection, its read loop, heartbeat and reconnect.

Built on ``websocket-client`` for the handshake and TLS (``skip_utf8_validation=True``, TCP_NODELAY);
frames are cut by ``hip3.hyperliquid.ws_framing.FrameReader`` out of 256 KiB reads (one system call per
chunk instead of three per frame: 70k -> ~300k frames/s here). It never owns a thread: the feed and
executor actors put ``fileno()`` in their ``zmq.Poller``, call ``poll_read()`` (or the feed's
``poll_read_market()``) when it is readable (it drains the frames available now, bounded by
``max_read_bytes`` per call so timers run under a flood, including bytes already decrypted by TLS, and
keeps partial frames for the next call) and ``tick(now)`` for timers. ``run_forever`` is a small
blocking helper for tools and tests.

The client is one object built from three parts over the same state: this module (the connection),
``ws_subscriptions`` (subscriptions and their acks) and ``ws_posts`` (the message budget and the post
channel). What it guards against, from the exchange's WebSocket rules:

* the server closes a connection that received nothing for 60 s: ping ``{"method":"ping"}`` after
  ``ping_after_idle_s`` of silence, reconnect when no pong within ``pong_timeout_s``;
* silent receive stalls: reconnect after ``stall_timeout_s`` without any frame;
* acks, pongs and post answers are consumed here, never returned as data;
* error frames (``{"channel":"error","data":"..."}``) are surfaced (returned, counted, ``last_error``,
  logged at most once per 10 s);
* a reconnect loop that backs off for ever: the attempt counter is reset after a healthy session;
  backoff is exponential with jitter; every subscription is re-sent after a reconnect;
* a stop that hangs on a dead peer: ``close()`` sends a close frame with bounded timeouts.
"""

from __future__ import annotations

import collections
import errno
import logging
import random
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import websocket

from hip3 import clock as _hip3_clock
from hip3.messages import AssetCtx, Bbo

from .frame_decoder import FrameDecoder
from .frames import (
    ErrorFrame,
    Frame,
    L2BookFrame,
    PongFrame,
    PostFrame,
    SubscriptionResponseFrame,
)
from .ws_framing import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameReader, FramingError, text_frame
from .ws_posts import ConnState, PostCallback, PostChannel, WsBudgetError, WsNotConnected
from .ws_subscriptions import Subscriptions

__all__ = ["ConnState", "PostCallback", "WsBudgetError", "WsClient", "WsNotConnected"]

_log = logging.getLogger("hip3.hyperliquid.ws")
FrameSink = Callable[[list[tuple[Any, int]]], None]
_PING = b'{"method":"ping"}'
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, websocket.WebSocketTimeoutException)
_READ_CHUNK = 256 * 1024
_ERROR_LOG_INTERVAL_S = 10.0


class WsClient(PostChannel, Subscriptions):
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
        self._subs = {}
        self._acked = set()
        self._posts = {}
        self._deferred = collections.deque()
        self._next_id = 1
        self._sent_times: collections.deque[float] = collections.deque()
        self._connected_at = 0.0
        self._last_recv = 0.0
        self._ping_sent_at: float | None = None
        self._reconnect_at: float | None = None
        self._closed = False
        self._reader = FrameReader()
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
        self._reader = FrameReader()
        self.conn_id += 1
        self._connected_at = now
        self._last_recv = now
        self._ping_sent_at = None
        self._reconnect_at = None
        self._acked.clear()
        self._set_state("connected")
        return self._resubscribe()

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
                except FramingError as exc:
                    self._drop(f"protocol error: {exc}")
                    break
                for opcode, data in messages:
                    if opcode in (OP_TEXT, OP_BINARY):
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
                    elif opcode == OP_PING:
                        try:
                            ws.sock.sendall(text_frame(data, opcode=OP_PONG))
                        except (OSError, *_WOULD_BLOCK) as exc:
                            # The socket is non-blocking here: a partial write would corrupt the stream.
                            self._drop(f"pong send failed: {exc!r}")
                            break
                    elif opcode == OP_CLOSE:
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
        self._expire_posts(now)
        if self.attempt and now - self._connected_at >= self.healthy_after_s:
            self.attempt = 0  # a healthy session resets the backoff: the next drop reconnects quickly
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
            self._on_ack(frame)
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
            count = self.errors["error_frame"] = self.errors["error_frame"] + 1
            now = self._clock()
            if now - self._error_logged_at >= _ERROR_LOG_INTERVAL_S:  # a flood must not flood the log
                self._error_logged_at = now
                _log.warning("ws error frame (%d so far): %s", count, frame.data[:300])
        return False

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
        self._fail_posts(why)
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

"""The WebSocket client's outbound side: the message budget every send passes, and the post channel.

A post is a request sent over the WebSocket (``{"method":"post","id":N,"request":...}``) whose answer
comes back as a ``post`` frame with the same id. The exchange allows 2,000 client messages a rolling
minute and 100 posts in flight, per IP across all connections: both are refused here (``WsBudgetError``)
rather than risking the exchange's penalty.

A post whose connection dropped or that timed out resolves as ``type="disconnected"``/``"timeout"``: its
outcome is UNKNOWN (an action may have executed), so the caller must reconcile, never assume failure.

``PostChannel`` is a mixin of ``hip3.hyperliquid.ws.WsClient``: it works on the client's own state (the
socket, the connection state, the clock), so a post costs no extra call or object on the send path.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import websocket

from .frames import PostResponse
from .ws_framing import text_frame

__all__ = ["ConnState", "PostCallback", "PostChannel", "WsBudgetError", "WsNotConnected"]

_log = logging.getLogger("hip3.hyperliquid.ws")
ConnState = Literal["connecting", "connected", "disconnected"]
PostCallback = Callable[[PostResponse], None]
_ENC = msgspec.json.Encoder()


class WsNotConnected(RuntimeError):
    """A post was attempted while the connection is down."""


class WsBudgetError(RuntimeError):
    """Sending would exceed the outbound message budget or the in-flight post limit."""


class _Post:
    __slots__ = ("callback", "deadline")

    def __init__(self, callback: PostCallback, deadline: float) -> None:
        self.callback = callback
        self.deadline = deadline


class PostChannel:
    """Budgeted sends and posts awaiting their answer; the state is the ``WsClient``'s."""

    # Set by ``WsClient.__init__``.
    state: ConnState
    errors: collections.Counter[str]
    post_timeout_s: float
    max_msgs_per_min: int
    max_inflight_posts: int
    _ws: websocket.WebSocket | None
    _clock: Callable[[], float]
    _posts: dict[int, _Post]
    _deferred: collections.deque[tuple[PostCallback, PostResponse]]
    _next_id: int
    _sent_times: collections.deque[float]

    if TYPE_CHECKING:

        def _drop(self, why: str, now: float | None = None, reconnect: bool = True) -> None: ...

    @property
    def inflight_posts(self) -> int:
        return len(self._posts)

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

    def _run_deferred(self) -> None:
        while self._deferred:
            callback, response = self._deferred.popleft()
            callback(response)

    def _expire_posts(self, now: float) -> None:
        expired = [pid for pid, post in self._posts.items() if now >= post.deadline]
        for pid in expired:
            post = self._posts.pop(pid)
            post.callback(PostResponse(pid, "timeout", error="post timed out; outcome unknown"))

    def _fail_posts(self, why: str) -> None:
        posts, self._posts = self._posts, {}
        for pid, post in posts.items():
            post.callback(PostResponse(pid, "disconnected", error=f"{why}; outcome unknown"))

"""One TCP connection of the simulator: HTTP/1.1 (POST /info, /exchange, /sim/control) or a WebSocket.

The exchange serves REST and WebSocket on one host, and websockets' own server refuses anything but
GET, so this is a small asyncio ``Protocol``: it parses HTTP requests (keep-alive, Content-Length
bodies) itself and, on ``GET /ws`` with an Upgrade, hands the handshake and incoming frames to
websockets' sans-I/O ``ServerProtocol`` (RFC 6455 parsing, close and ping handling).

Outgoing data frames are written directly as pre-built unmasked text frames (``text_frame``): the server
builds each shared market-data frame once per tick and writes the same bytes to every subscriber, and
per-connection output is joined into one ``transport.write`` per tick. No compression is negotiated.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from hip3.sim.params import SimParams


class ConnHandler(Protocol):
    """What a connection calls on the simulator's core (``hip3.sim.server.SimCore``): the transport only
    frames bytes, the core decides; declared here so the transport does not import the server."""

    @property
    def params(self) -> SimParams: ...
    def log_exception(self, what: str) -> None: ...
    def ws_opened(self, c: Conn) -> None: ...
    def forget(self, c: Conn) -> None: ...
    def http_request(self, c: Conn, path: str, body: bytes, close: bool) -> None: ...
    def ws_message(self, c: Conn, raw: bytes) -> None: ...


GREETING = b"Websocket connection established."
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
}


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (what a server sends)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def http_response(
    status: int, body: bytes, content_type: str = "application/json", close: bool = False
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


class Conn(asyncio.Protocol):
    """One client connection; all methods run on the server's event loop."""

    def __init__(self, core: ConnHandler) -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.ws: ServerProtocol | None = None
        self.frag: list[bytes] = []
        self.subs: dict[str, dict[str, Any]] = {}  # subscription key -> subscription object as sent
        self.user: str | None = None  # the one user of this connection's user channels
        self.pending: list[bytes] = []  # frames queued during a publish pass
        self.closed = False

    # ---- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.forget(self)

    def data_received(self, data: bytes) -> None:
        try:
            if self.ws is not None:
                self._ws_data(data)
            else:
                self.buf += data
                self._http_data()
        except Exception:  # never let one bad client take the loop down
            self.core.log_exception("connection error")
            self.abort()

    # ---- output -------------------------------------------------------------------------------
    def is_open(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self.is_open():
            assert self.transport is not None
            self.transport.write(data)
            if self.transport.get_write_buffer_size() > self.core.params.max_ws_buffer:
                self.abort()  # a client too slow to read: the exchange disconnects it too

    def send_json(self, payload: bytes) -> None:
        """One text frame now (acks, pongs, post responses, errors)."""
        if self.ws is not None and self.ws.state is State.OPEN:
            self.write(text_frame(payload))

    def flush_pending(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            if self.ws is not None and self.ws.state is State.OPEN:
                self.write(data)

    def abort(self) -> None:
        """Drop the connection without a close frame (what a network failure looks like)."""
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    # ---- HTTP ---------------------------------------------------------------------------------
    def _http_data(self) -> None:
        while self.ws is None and not self.closed:
            idx = self.buf.find(b"\r\n\r\n")
            if idx < 0:
                if len(self.buf) > MAX_HEAD:
                    self._http_reply(413, b"request head too large", "text/plain", close=True)
                return
            head = bytes(self.buf[: idx + 4])
            lines = head[:idx].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self._http_reply(400, b"bad request line", "text/plain", close=True)
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            if method == "GET" and headers.get("upgrade", "").lower() == "websocket":
                rest = bytes(self.buf[idx + 4 :])
                self.buf.clear()
                self._upgrade(head, target, rest)
                return
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._http_reply(411, b"chunked bodies are not supported", "text/plain", close=True)
                return
            raw_length = headers.get("content-length", "0").strip()
            if not raw_length.isdigit():  # int() would also take "-3", "+5" and "1_0"
                self._http_reply(400, b"bad content-length", "text/plain", close=True)
                return
            length = int(raw_length)
            if length > MAX_BODY:
                self._http_reply(413, b"body too large", "text/plain", close=True)
                return
            if len(self.buf) < idx + 4 + length:
                return
            body = bytes(self.buf[idx + 4 : idx + 4 + length])
            del self.buf[: idx + 4 + length]
            path = target.split("?", 1)[0]
            if method != "POST":
                self._http_reply(404, b"not found", "text/plain", close)
                continue
            self.core.http_request(self, path, body, close)

    def _http_reply(
        self, status: int, body: bytes, content_type: str = "application/json", close: bool = False
    ) -> None:
        self.write(http_response(status, body, content_type, close))
        if close and self.transport is not None:
            self.transport.close()
            self.closed = True

    def http_reply_later(self, delay_ms: int, status: int, body: bytes, ctype: str, close: bool) -> None:
        if delay_ms:
            asyncio.get_running_loop().call_later(
                delay_ms / 1000, self._http_reply, status, body, ctype, close
            )
        else:
            self._http_reply(status, body, ctype, close)

    # ---- WebSocket ----------------------------------------------------------------------------
    def _upgrade(self, head: bytes, target: str, rest: bytes) -> None:
        proto = ServerProtocol(max_size=MAX_BODY)
        proto.receive_data(head)
        events = proto.events_received()
        if not events or not isinstance(events[0], Request) or target.split("?", 1)[0] != "/ws":
            self._http_reply(404, b"not found", "text/plain", close=True)
            return
        response = proto.accept(events[0])
        proto.send_response(response)
        for chunk in proto.data_to_send():
            self.write(chunk)
        if response.status_code != 101:
            if self.transport is not None:
                self.transport.close()
            self.closed = True
            return
        self.ws = proto
        self.write(text_frame(GREETING))
        self.core.ws_opened(self)
        if rest:
            self._ws_data(rest)

    def _ws_data(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None
        ws.receive_data(data)
        for ev in ws.events_received():
            if not isinstance(ev, Frame):
                continue
            if ev.opcode in (Opcode.TEXT, Opcode.BINARY):
                if ev.fin:
                    self.core.ws_message(self, bytes(ev.data))
                else:
                    self.frag = [bytes(ev.data)]
            elif ev.opcode is Opcode.CONT:
                self.frag.append(bytes(ev.data))
                if ev.fin:
                    msg, self.frag = b"".join(self.frag), []
                    self.core.ws_message(self, msg)
        for chunk in ws.data_to_send():
            if chunk == b"":
                if self.transport is not None:
                    self.transport.close()
                self.closed = True
                return
            self.write(chunk)

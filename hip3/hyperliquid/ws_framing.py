"""RFC 6455 framing for the WebSocket client: server frames cut out of large reads, and client frames.

``websocket-client`` still does the handshake and TLS; the client reads and writes the frames itself,
because the library's per-frame path costs too much on the feed and the executor's send path: it reads
a frame with three ``recv`` system calls (header, length, payload) and builds an object per frame sent.
``FrameReader`` cuts every complete message out of a 256 KiB read; ``text_frame`` builds a masked
client frame in one go.
"""

from __future__ import annotations

import os

__all__ = [
    "MAX_MESSAGE",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameReader",
    "FramingError",
    "text_frame",
]

MAX_MESSAGE = 64 * 1024 * 1024  # refuse (drop the connection) rather than buffer without bound
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class FramingError(Exception):
    """The server broke RFC 6455 framing: the connection is dropped (and reconnected)."""


class FrameReader:
    """RFC 6455 server frames from a byte stream read in large chunks.

    ``websocket-client``'s ``recv_data`` makes three ``recv`` system calls per frame (header, length,
    payload), which caps a Python feed near 70k frames/s here; reading 256 KiB at a time and cutting
    frames out of the buffer makes it one call per chunk. Handles fragmentation (continuation frames),
    control frames between fragments, and refuses masked server frames, reserved bits (no extension
    is negotiated) and messages over ``MAX_MESSAGE``.
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
                raise FramingError("masked frame from the server")
            if b0 & 0x70:
                raise FramingError("reserved bits set (no extension negotiated)")
            if n > MAX_MESSAGE:
                raise FramingError(f"frame of {n} bytes")
            stop = start + n
            if stop > end:
                break
            payload = data[start:stop]
            pos = stop
            op = b0 & 0x0F
            if op >= 0x8:  # control frames: never fragmented, may sit between fragments
                if not b0 & 0x80 or n > 125:
                    raise FramingError("bad control frame")
                out.append((op, payload))
            elif op == OP_CONT:
                if self._frag_op < 0:
                    raise FramingError("continuation without a start")
                self._frags.append(payload)
                self._frag_len += n
                if self._frag_len > MAX_MESSAGE:
                    raise FramingError("fragmented message too large")
                if b0 & 0x80:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op = -1
                    self._frags = []
                    self._frag_len = 0
            elif op in (OP_TEXT, OP_BINARY):
                if self._frag_op >= 0:
                    raise FramingError("new message inside a fragmented one")
                if b0 & 0x80:
                    out.append((op, payload))
                else:
                    self._frag_op = op
                    self._frags = [payload]
                    self._frag_len = n
            else:
                raise FramingError(f"unknown opcode {op}")
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

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
            # Byte 0: FIN, three reserved bits, the opcode. Byte 1: MASK, then a 7-bit length (126 and
            # 127 mean a 16- or 64-bit length follows).
            fin_rsv_op = data[pos]
            mask_len = data[pos + 1]
            length = mask_len & 0x7F
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
                start = pos + 10
            if mask_len & 0x80:
                raise FramingError("masked frame from the server")
            if fin_rsv_op & 0x70:
                raise FramingError("reserved bits set (no extension negotiated)")
            if length > MAX_MESSAGE:
                raise FramingError(f"frame of {length} bytes")
            stop = start + length
            if stop > end:
                break
            payload = data[start:stop]
            pos = stop
            opcode = fin_rsv_op & 0x0F
            if opcode >= 0x8:  # control frames: never fragmented, may sit between fragments
                if not fin_rsv_op & 0x80 or length > 125:
                    raise FramingError("bad control frame")
                out.append((opcode, payload))
            elif opcode == OP_CONT:
                if self._frag_op < 0:
                    raise FramingError("continuation without a start")
                self._frags.append(payload)
                self._frag_len += length
                if self._frag_len > MAX_MESSAGE:
                    raise FramingError("fragmented message too large")
                if fin_rsv_op & 0x80:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op = -1
                    self._frags = []
                    self._frag_len = 0
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._frag_op >= 0:
                    raise FramingError("new message inside a fragmented one")
                if fin_rsv_op & 0x80:
                    out.append((opcode, payload))
                else:
                    self._frag_op = opcode
                    self._frags = [payload]
                    self._frag_len = length
            else:
                raise FramingError(f"unknown opcode {opcode}")
        self._buf = data[pos:] if pos < end else b""
        return out


def text_frame(payload: bytes, mask_key: bytes | None = None, opcode: int = 0x1) -> bytes:
    """A single (FIN) masked client frame carrying ``payload`` (RFC 6455, section 5.2: a client
    masks every frame): a text frame unless ``opcode`` says otherwise (a pong).

    ``mask_key`` is 4 fresh random bytes per frame unless given (tests)."""
    length = len(payload)
    key = os.urandom(4) if mask_key is None else mask_key
    first = 0x80 | opcode
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = bytes((first, 0xFE)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 0xFF)) + length.to_bytes(8, "big")
    if not length:
        return header + key
    # XOR the whole payload with the repeated key as one big integer (about 1 µs for an order frame).
    masked = int.from_bytes(payload, "little") ^ int.from_bytes((key * ((length >> 2) + 1))[:length], "little")
    return header + key + masked.to_bytes(length, "little")

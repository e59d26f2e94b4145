"""The feed's raw-frame recording: an append-only file of exchange frames with their receive times.

Format (version 1), little-endian:

* the file starts with the 8-byte magic ``HIP3REC\\x01``;
* then records: ``u32 length, u32 crc32, u8 kind, i64 t_ns`` (17 bytes) + ``length`` payload bytes. The
  CRC covers kind, t_ns and the payload.
* kind 0, a **header** (JSON): format version, wall and monotonic time at the feed's start, the
  configured markets, the WebSocket URL, the builder dex (name, ``perpDexs`` index) and its universe
  in asset-id order (coin, szDecimals, maxLeverage, delisted) - what a replay needs to rebuild the
  exchange's markets. A feed that restarts appends a new header (a new segment).
* kind 1, a **frame**: ``t_ns`` = the feed's receive time (``hip3.clock.monotonic_ns()``, the
  ``recv_ns`` every message carries), payload = the WebSocket text exactly as received.

Only market data is recorded: ``bbo``, ``activeAssetCtx`` and ``l2Book`` (the feed subscribes to
``l2Book`` too while recording, for the replay's book depth). User-channel frames (orderUpdates,
userFills), acks, pongs and post answers are not: a replay's matching engine makes its own.

Written off the hot path: the WebSocket client collects ``(recv_ns, payload)`` pairs while it reads, the
feed hands them over *after* it published the frames, the recorder appends them to a buffer and writes it
when it exceeds ``FLUSH_BYTES`` or on ``flush()`` (the feed's 1 s timer) and at stop. A record cut by a
kill (``kill -9`` mid-write) or a bad CRC ends the readable part: ``read_file`` ignores the tail
and reports it (``torn_bytes``, ``torn_reason``).

Compressed (``zstd_level``): the same bytes as one zstd stream, a block ended at every flush (so what was
flushed is readable without the stream's end, and a ``kill -9`` loses only the unflushed buffer, as
uncompressed), finished at ``close()``. Market data is repetitive JSON: about 6x smaller at level 3 (the
simulator's frames), at tens of microseconds a flush. A compressed file is never appended to (a torn
stream cannot be continued): a restarted feed starts a new part (``hip3.replay.rotation``). The reader
knows both kinds by their first bytes, so uncompressed recordings stay readable.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

MAGIC = b"HIP3REC\x01"
FORMAT_VERSION = 1
KIND_HEADER = 0
KIND_FRAME = 1
_REC = struct.Struct("<IIBq")
_KT = struct.Struct("<Bq")
FLUSH_BYTES = 256 * 1024
MAX_RECORD = 64 * 1024 * 1024
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_INFLATE_CHUNK = 1 << 16


def _record(kind: int, t_ns: int, payload: bytes) -> bytes:
    kt = _KT.pack(kind, t_ns)
    crc = zlib.crc32(payload, zlib.crc32(kt))
    return _REC.pack(len(payload), crc, kind, t_ns) + payload


class FrameRecorder:
    """Appends records to ``path`` (created with its parents; an existing uncompressed recording is
    appended to). ``zstd_level``: compress (a new file only)."""

    def __init__(self, path: Path, header: dict[str, Any], t_ns: int, zstd_level: int | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._buf = bytearray()
        self._zstd: Any = None
        self.frames = 0
        self.bytes = 0  # written to the file (compressed if compressing)
        self.raw_bytes = 0  # before compression
        self.first_t_ns = 0  # receive times of the first and last frame written through this recorder
        self.last_t_ns = 0
        self.closed = False
        if os.fstat(self._fd).st_size == 0:
            self._buf += MAGIC
            if zstd_level is not None:
                self._zstd = zstandard.ZstdCompressor(level=zstd_level).compressobj()
        elif zstd_level is not None:
            os.close(self._fd)
            raise RecordingError(f"{path}: a compressed recording is never appended to")
        self.header = {"format": FORMAT_VERSION, **header}
        self._buf += _record(KIND_HEADER, t_ns, json.dumps(self.header, sort_keys=True).encode())
        self.flush()

    @property
    def compressed(self) -> bool:
        return self._zstd is not None

    def write_frames(self, frames: Iterable[tuple[int, bytes]]) -> None:
        """Buffer ``(recv_ns, payload)`` frames; writes when the buffer exceeds ``FLUSH_BYTES``."""
        buf = self._buf
        kt_pack = _KT.pack
        rec_pack = _REC.pack
        crc32 = zlib.crc32
        n = 0
        t_ns = 0
        for t_ns, payload in frames:
            crc = crc32(payload, crc32(kt_pack(KIND_FRAME, t_ns)))
            buf += rec_pack(len(payload), crc, KIND_FRAME, t_ns)
            buf += payload
            if not n and not self.first_t_ns:
                self.first_t_ns = t_ns
            n += 1
        if n:
            self.frames += n
            self.last_t_ns = t_ns
        if len(buf) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffer (whole records only) to the file; compressed, as one finished zstd block."""
        buf = self._buf
        if buf and not self.closed:
            self.raw_bytes += len(buf)
            if self._zstd is not None:
                self._write(self._zstd.compress(buf) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
            else:
                self._write(buf)
            buf.clear()

    def _write(self, data: bytes | bytearray) -> None:
        size = len(data)
        with memoryview(data) as view:
            done = 0
            while done < size:
                with view[done:] as part:  # released before the buffer is resized
                    done += os.write(self._fd, part)
        self.bytes += size

    def close(self) -> None:
        if not self.closed:
            self.flush()
            if self._zstd is not None:
                self._write(self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
            self.closed = True
            os.close(self._fd)


@dataclass
class Segment:
    """One feed process's part of a recording: its header and its frames, in receive order."""

    header: dict[str, Any]
    t_ns: int
    frames: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class Recording:
    segments: list[Segment]
    torn_bytes: int = 0  # bytes after the last whole, valid record (a cut or corrupt tail), ignored
    torn_reason: str = ""

    @property
    def header(self) -> dict[str, Any]:
        return self.segments[0].header

    def frames(self) -> list[tuple[int, bytes]]:
        return [f for s in self.segments for f in s.frames]


class RecordingError(ValueError):
    """Not a recording, or an unsupported format."""


def _inflate(data: bytes) -> tuple[bytes, str]:
    """The readable part of a zstd stream, and why it ends early ("" if it ended properly): an unfinished
    stream (the writer was killed: every block flushed before is kept) or corrupt data."""
    dctx = zstandard.ZstdDecompressor()
    d = dctx.decompressobj()
    out = bytearray()
    for i in range(0, len(data), _INFLATE_CHUNK):
        try:
            out += d.decompress(data[i:i + _INFLATE_CHUNK])
        except zstandard.ZstdError as e:
            # The blocks before the damage in this chunk were lost with the call: decode the chunk again,
            # a byte at a time from a fresh state, and keep what comes out before the error.
            d = dctx.decompressobj()
            out = bytearray(d.decompress(data[:i]))
            for j in range(i, min(i + _INFLATE_CHUNK, len(data))):
                try:
                    out += d.decompress(data[j:j + 1])
                except zstandard.ZstdError:
                    break
            return bytes(out), f"corrupt compressed data ({e})"
        if d.eof:
            break
    return bytes(out), "" if d.eof else "unfinished compressed stream"


def read_file(path: Path | str) -> Recording:
    """Read every whole record of one recording file (compressed or not); a torn or corrupt tail is
    ignored and reported, never raised. A rotated recording (an index and its parts) is read with
    ``hip3.replay.rotation.read_recording``, which reads each part with this."""
    path = Path(path)
    data = path.read_bytes()
    stream_note = ""
    if data.startswith(ZSTD_MAGIC):
        data, stream_note = _inflate(data)
        if not data and stream_note:
            raise RecordingError(f"{path}: {stream_note}, nothing readable")
    rec = parse_records(data, str(path))
    if stream_note:
        rec.torn_reason = f"{stream_note}; {rec.torn_reason}" if rec.torn_reason else stream_note
    return rec


def parse_records(data: bytes, name: str) -> Recording:
    """The records of an uncompressed recording's bytes."""
    if not data.startswith(MAGIC):
        raise RecordingError(f"{name}: not a hip3 recording (bad magic)")
    pos = len(MAGIC)
    end = len(data)
    segments: list[Segment] = []
    torn_reason = ""
    while pos < end:
        if end - pos < _REC.size:
            torn_reason = "truncated record header"
            break
        n, crc, kind, t_ns = _REC.unpack_from(data, pos)
        start = pos + _REC.size
        if n > MAX_RECORD or start + n > end:
            torn_reason = "truncated record"
            break
        payload = data[start:start + n]
        if zlib.crc32(payload, zlib.crc32(_KT.pack(kind, t_ns))) != crc:
            torn_reason = "bad checksum"
            break
        if kind == KIND_HEADER:
            header = json.loads(payload)
            if header.get("format") != FORMAT_VERSION:
                raise RecordingError(f"{name}: unsupported recording format {header.get('format')!r}")
            segments.append(Segment(header, t_ns))
        elif kind == KIND_FRAME:
            if not segments:
                raise RecordingError(f"{name}: a frame before any header")
            segments[-1].frames.append((t_ns, payload))
        pos = start + n
    if not segments:
        raise RecordingError(f"{name}: no header record")
    return Recording(segments, end - pos, torn_reason)

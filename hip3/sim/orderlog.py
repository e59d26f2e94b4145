"""The simulator's order log: one JSON line per accepted signed action, flushed per line.

Tests and the e2e harness read it to detect duplicated or lost orders (the executor must never send an
intent twice, and every sent order must arrive). Fields: ``time_ms``, ``nonce``, ``signer``, ``account``,
``action_type``, ``cloids`` (possibly empty), ``statuses`` (the per-order / per-cancel statuses, or []).
"""

from __future__ import annotations

import threading
from typing import IO, Any

import msgspec


class OrderLog:
    """Append-only JSON Lines writer; a crash loses at most the line being written (lesson B01)."""

    def __init__(self, path: str | None) -> None:
        self._f: IO[bytes] | None = open(path, "ab") if path else None  # noqa: SIM115 (kept open)
        self._enc = msgspec.json.Encoder()
        self._lock = threading.Lock()
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self.count += 1
        if self._f is None:
            return
        line = self._enc.encode(record) + b"\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None

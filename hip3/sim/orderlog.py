"""The simulator's order log: one JSON line per accepted signed action, flushed per line.

Tests and the e2e harness read it to detect duplicated or lost orders (the executor must never send an
intent twice, and every sent order must arrive). Fields: ``time_ms``, ``nonce``, ``signer``, ``account``,
``action_type``, ``cloids`` (possibly empty), ``statuses`` (the per-order / per-cancel statuses, or []),
``status``, ``reduce_only`` (one flag per order of an ``order`` action, else []), ``expires_after`` (the
envelope's, or null; ``time_ms`` is the exchange's clock when the action was applied); a ``sendAsset``
adds ``transfer``.

An action answered by an injected fault (``reject_posts``, ``rate_limit_actions``) never reaches the
engine; it is logged too, with ``status: "fault"``, ``fault`` naming the switch, ``signer``/``account``
null (not verified) and no statuses, so the fault tests can see what the bot sent meanwhile.
"""

from __future__ import annotations

import threading
from typing import IO, Any

import msgspec


class OrderLog:
    """Append-only JSON Lines writer; a crash loses at most the line being written."""

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


def reduce_only_flags(action: Any) -> list[bool]:
    """One ``r`` flag per order wire of an ``order`` action (False where absent or malformed)."""
    wires = action.get("orders") if isinstance(action, dict) else None
    if not isinstance(wires, list):
        return []
    return [bool(w.get("r")) if isinstance(w, dict) else False for w in wires]


def fault_record(req: Any, fault: str, now_ms: int) -> dict[str, Any]:
    """The log line of an action that an injected fault answered (it never reached the engine)."""
    action = req.get("action") if isinstance(req, dict) else None
    atype = action.get("type") if isinstance(action, dict) else None
    wires = action.get("orders") if isinstance(action, dict) and atype == "order" else None
    cloids = [w["c"] for w in wires if isinstance(w, dict) and isinstance(w.get("c"), str)] if isinstance(
        wires, list) else []
    return {
        "time_ms": now_ms,
        "nonce": req.get("nonce") if isinstance(req, dict) else None,
        "signer": None,
        "account": None,
        "action_type": atype,
        "cloids": cloids,
        "statuses": [],
        "status": "fault",
        "reduce_only": reduce_only_flags(action) if atype == "order" else [],
        "fault": fault,
    }

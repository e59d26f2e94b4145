"""The supervisor's probes: ``/ready`` (is hip3 doing its job?) and ``/healthz`` (is its loop turning?).

Served by the supervisor's HTTP endpoint (``hip3.ui.http``) whenever it listens (``[metrics] enabled`` or
``[dashboard] enabled``; loopback unless ``[metrics] host`` says otherwise), without a token: a probe
carries no positions or PnL, only a verdict and a one-line reason. Like every route there, a handler
answers from a snapshot the supervisor's loop published (``publish``, once per loop turn), never from
the supervisor's objects.

* ``/ready``: 200 only when every actor is READY (running, and said so in its last heartbeat) and the
  hard stop is not latched; otherwise 503. **A latched hard stop is "not ready"**: hip3 then trades
  nothing until an operator resets it (the executor is flattening), which is what a monitor or a load
  balancer in front of a fleet needs to see. It is not a liveness failure: a restart would not clear
  the latch and would interrupt the flatten, so ``/healthz`` stays 200.
* ``/healthz``: 200 while the loop turns: it published within ``stale_after_ms`` (the heartbeat timeout,
  the bound the supervisor holds its actors to). After that both probes answer 503 with how long the loop
  has been silent: a verdict published before a stall is not evidence of anything now. Before the
  first turn (the simulator and the sockets starting) both answer 503 ``starting``.

Body: one JSON line, ``{"ready": false, "reason": "..."}`` (``"alive"`` for ``/healthz``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec

from hip3.ui.http import Request, Response

if TYPE_CHECKING:
    from hip3.ui.http import HttpEndpoint

__all__ = ["Probes", "Verdict", "judge"]

_ENC = msgspec.json.Encoder()
MAX_REASON_CHARS = 300


class _Slot(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def ready(self) -> bool: ...
    @property
    def ready_detail(self) -> str: ...


class _Latch(Protocol):
    @property
    def latched(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    ready: bool
    reason: str
    at_ns: int = 0  # when the loop judged (its monotonic clock)


def judge(slots: Iterable[_Slot], latch: _Latch, stopping: bool) -> tuple[bool, str]:
    """(ready, one-line reason) from what the supervisor knows now. Pure."""
    if stopping:
        return False, "stopping"
    if latch.latched:
        return False, _clip(f"hard stop latched: {latch.reason}")
    slots = list(slots)
    waiting = [s for s in slots if not (s.state == "running" and s.ready)]
    if not waiting:
        return True, f"all {len(slots)} actors READY"
    parts = []
    for s in waiting:
        why = s.state if s.state != "running" else "not READY"
        parts.append(f"{s.name} ({why}{': ' + s.ready_detail if s.ready_detail else ''})")
    return False, _clip(f"{len(waiting)} of {len(slots)} actors not READY: " + "; ".join(parts))


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


class _Supervisor(Protocol):
    @property
    def slots(self) -> Mapping[str, _Slot]: ...

    @property
    def stopping(self) -> bool: ...


class Probes:
    """The latest verdict, published by the loop and served by the HTTP threads."""

    def __init__(self, stale_after_ms: int, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.stale_after_ns = stale_after_ms * 1_000_000
        self._clock_ns = clock_ns
        self.verdict: Verdict | None = None  # replaced whole (one reference assignment) by the loop

    def attach(self, endpoint: HttpEndpoint) -> None:
        endpoint.route("/ready", self.ready, private=False)
        endpoint.route("/healthz", self.healthz, private=False)

    def publish(self, ready: bool, reason: str, now_ns: int) -> None:
        """From the supervisor's loop, every turn."""
        self.verdict = Verdict(ready, reason, now_ns)

    def publish_from(self, sup: _Supervisor, latch: _Latch, now_ns: int) -> None:
        self.publish(*judge(sup.slots.values(), latch, sup.stopping), now_ns)

    def _silent(self, v: Verdict | None) -> str | None:
        """Why no verdict can be trusted now, or None."""
        if v is None:
            return "starting: the supervisor's loop has not turned yet"
        age_ns = self._clock_ns() - v.at_ns
        if age_ns > self.stale_after_ns:
            return f"the supervisor's loop has not turned for {age_ns / 1e6:.0f} ms"
        return None

    def ready(self, _req: Request) -> Response:
        v = self.verdict
        silent = self._silent(v)
        if silent is not None or v is None:
            return _json(503, {"ready": False, "reason": silent})
        return _json(200 if v.ready else 503, {"ready": v.ready, "reason": v.reason})

    def healthz(self, _req: Request) -> Response:
        v = self.verdict
        silent = self._silent(v)
        if silent is not None or v is None:
            return _json(503, {"alive": False, "reason": silent})
        return _json(200, {"alive": True, "reason": f"loop turned {(self._clock_ns() - v.at_ns) / 1e6:.0f} ms ago"})


def _json(status: int, body: dict[str, object]) -> Response:
    return Response(status, _ENC.encode(body) + b"\n", "application/json")

"""Judging the actors' liveness without blaming them for the supervisor's own stalls.

The supervisor's loop can stall: a long GC pause, swap, a slow disk under the latch's fsync, SIGSTOP.
The actors' heartbeats keep coming meanwhile and queue in its inbox (after a SIGSTOP some are still in
the kernel when it resumes, because ZeroMQ's I/O thread was stopped too). Judged on receipt times right
after such a stall, every healthy actor looked hung: the supervisor killed them all, the executor
mid-order, and each kill counted toward the restart limit (measured: a 4.5 s SIGSTOP of the supervisor
restarted all six actors). Two rules fix it:

* drain, then judge: the supervisor reads every queued heartbeat after it took the time and before it
  judges (``Supervisor.step``);
* its own stalls do not count: ``LoopWatch`` follows the gaps between the supervisor's clock readings.
  A gap longer than ``allowance_ns`` (longer than a healthy loop turn ever takes) is a stall, and the
  time beyond the allowance is taken out of the *watch clock*. Heartbeat ages and READY deadlines are
  measured on the watch clock: an actor is judged only on the time the supervisor was awake to hear
  it, which gives every actor a grace period after a stall. A really hung actor is still caught: its
  age grows by at least the allowance at every turn, however often the supervisor stalls.

``Slot`` is what the supervisor knows about one actor, with both clocks' stamps. Pure: the clock
readings are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hip3.runtime.launchers import Handle
from hip3.runtime.restart import RestartPolicy

# The supervisor's loop blocks in poll for at most 50 ms: a gap under this is never a stall, whatever
# the heartbeat interval.
MIN_ALLOWANCE_MS = 100

Verdict = Literal["hung", "not_ready"]


@dataclass
class Slot:
    """What the supervisor knows about one actor."""

    name: str
    policy: RestartPolicy
    handle: Handle | None = None
    state: str = "pending"  # pending | starting | running | backoff | failed | stopped
    restarts: int = 0
    ready: bool = False
    ready_detail: str = ""
    pid: int | None = None
    started_ns: int = 0
    ready_ns: int = 0
    last_hb_ns: int | None = None
    # The same two instants on the watch clock (stalls of the supervisor taken out): what it judges on.
    started_watch_ns: int = 0
    hb_watch_ns: int | None = None
    restart_at_ns: int = 0
    acked_epoch: int = -1
    acked_ns: int = 0
    stats: dict[str, int] = field(default_factory=dict)


def stall_allowance_ms(heartbeat_interval_ms: float, heartbeat_timeout_ms: float) -> float:
    """The longest gap between two clock readings that is a normal loop turn: the heartbeat interval
    (at least ``MIN_ALLOWANCE_MS``), and at most half the heartbeat timeout so that an unnoticed stall
    plus a heartbeat interval still stays below the timeout."""
    return min(max(float(heartbeat_interval_ms), MIN_ALLOWANCE_MS), heartbeat_timeout_ms / 2)


class LoopWatch:
    """The supervisor's watch clock: monotonic time minus its own stalls."""

    __slots__ = ("_last_ns", "allowance_ns", "last_stall_ns", "longest_stall_ns", "stalled_ns", "stalls")

    def __init__(self, allowance_ns: int, now_ns: int) -> None:
        self.allowance_ns = allowance_ns
        self._last_ns = now_ns
        self.stalled_ns = 0  # taken out of the watch clock so far
        self.stalls = 0
        self.longest_stall_ns = 0  # the longest gap seen (a stall's full length)
        self.last_stall_ns = 0

    def observe(self, now_ns: int) -> int:
        """A clock reading of the supervisor's loop. Returns the gap since the previous reading if it was
        a stall, else 0."""
        gap = now_ns - self._last_ns
        if gap <= 0:
            return 0
        self._last_ns = now_ns
        if gap <= self.allowance_ns:
            return 0
        self.stalled_ns += gap - self.allowance_ns
        self.stalls += 1
        self.last_stall_ns = gap
        self.longest_stall_ns = max(self.longest_stall_ns, gap)
        return gap

    def watch_ns(self, now_ns: int) -> int:
        """The watch clock at ``now_ns`` (the reading last passed to ``observe``)."""
        return now_ns - self.stalled_ns


def judge(state: str, hb_watch_ns: int | None, started_watch_ns: int, watch_now_ns: int,
          heartbeat_timeout_ms: float, ready_timeout_ms: float) -> tuple[Verdict, float] | None:
    """An actor's verdict on the watch clock, with the age (ms) it was judged on; None if it is fine.

    ``running``: hung when no heartbeat came for ``heartbeat_timeout_ms``. ``starting``: failed when not
    READY within ``ready_timeout_ms`` of its start. Other states are not judged here (a crash is seen
    from the process's exit, which no stall can fake)."""
    if state == "running" and hb_watch_ns is not None:
        age_ms = (watch_now_ns - hb_watch_ns) / 1e6
        if age_ms > heartbeat_timeout_ms:
            return "hung", age_ms
    elif state == "starting":
        age_ms = (watch_now_ns - started_watch_ns) / 1e6
        if age_ms > ready_timeout_ms:
            return "not_ready", age_ms
    return None

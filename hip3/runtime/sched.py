"""CPU scheduling for processes that are off the hot path.

On a 2-core machine the Linux scheduler lets a task that wakes up preempt the one running if it has
used less CPU, which an idle helper process always has. The local simulator (paper mode) woken by an
order frame then runs its signature check and matching *inside the executor's send system call*
(measured: the executor's ``write`` stage 70 µs → 600–800 µs), and the journal recorder woken by an
order event delays whichever hot-path actor shares its core. ``SCHED_BATCH`` tells the scheduler the
task is CPU-bound and not latency-sensitive: it never preempts on wake-up, and still gets its share.
A real exchange is remote, so this also makes paper-mode latencies honest.
"""

from __future__ import annotations

import os

__all__ = ["background_priority"]


def background_priority(nice: int = 5) -> bool:
    """Move the calling process to ``SCHED_BATCH`` and lower its priority by ``nice``. False where the
    platform does not support it (the process keeps the normal class; nothing else changes)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        if nice:
            os.nice(nice)
    except (AttributeError, OSError):
        return False
    return True

"""CPU scheduling for processes that are off the hot path.

On a 2-core machine the Linux scheduler lets a task that wakes up preempt the one running if it has
used less CPU, which an idle helper process always has. The local simulator (paper mode) woken by an
order frame then runs its signature check and matching *inside the executor's send system call*
(measured: the executor's ``write`` stage 70 µs → 600–800 µs), and the journal recorder woken by an
order event delays whichever hot-path actor shares its core. ``SCHED_BATCH`` tells the scheduler the
task is CPU-bound and not latency-sensitive: it never preempts on wake-up, and still gets its share.
A real exchange is remote, so this also makes paper-mode latencies honest.

``realtime_priority`` is the opposite, and opt-in (``[supervisor] realtime_actors``): the hot-path
actors in ``SCHED_FIFO``, so that a market update or an intent never waits in the run queue behind a
normal task. Measured by ``bench.tick_to_trade --realtime``. It needs root or ``CAP_SYS_NICE``; the
kernel's RT throttling (``/proc/sys/kernel/sched_rt_runtime_us``, 95 % by default) still leaves the
other tasks some CPU if a realtime actor ever spins. A deployment choice, like CPU pinning.
"""

from __future__ import annotations

import os

__all__ = ["background_priority", "realtime_priority"]


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


def realtime_priority(priority: int) -> str:
    """Move the calling thread, and every thread it starts afterwards (call it before the ZeroMQ
    context exists), to ``SCHED_FIFO`` at ``priority``. Returns ``""`` on success, else why not (the
    process keeps its class: not permitted, or not supported here)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except AttributeError:
        return "SCHED_FIFO is not supported on this platform"
    except PermissionError:
        return "not permitted (needs root or CAP_SYS_NICE)"
    except OSError as e:
        return f"sched_setscheduler failed: {e}"
    return ""

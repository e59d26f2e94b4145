"""Blocking REST reads off an actor's loop: one worker thread, results back through a pipe it polls.

An actor's loop must never block on the network (its timers, heartbeats and the bus stop while it
does). ``RestJob`` runs one call at a time in a daemon thread; the result (or the error's text) is
queued and a byte is written to a pipe whose read end the actor registers with ``add_reader``; the
actor's handler calls ``take()`` on its own thread, so whatever it updates stays single-threaded.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["JobResult", "RestJob"]


class JobResult:
    """One finished call: ``tag`` as submitted, ``value`` (None on error) and ``error`` ("" on success)."""

    __slots__ = ("error", "tag", "value")

    def __init__(self, tag: str, value: Any, error: str) -> None:
        self.tag = tag
        self.value = value
        self.error = error


class RestJob:
    def __init__(self, name: str) -> None:
        self._requests: queue.Queue[tuple[str, Callable[[], Any]] | None] = queue.Queue()
        self._results: deque[JobResult] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._in_flight = False
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def fd(self) -> int:
        """The pipe's read end: readable when a result is waiting."""
        return self._wake_r

    @property
    def in_flight(self) -> bool:
        return self._in_flight

    def submit(self, tag: str, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` in the worker; False (nothing queued) while another call is in flight."""
        if self._in_flight or self._closed:
            return False
        self._in_flight = True
        self._requests.put((tag, fn))
        return True

    def take(self) -> list[JobResult]:
        """The finished calls (on the actor's thread, from the ``fd`` handler)."""
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        out: list[JobResult] = []
        while self._results:
            out.append(self._results.popleft())
        if out:
            self._in_flight = False
        return out

    def _work(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            tag, fn = item
            try:
                result = JobResult(tag, fn(), "")
            except Exception as e:  # the worker never dies: every failure becomes a result
                result = JobResult(tag, None, str(e) or type(e).__name__)
            self._results.append(result)
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                return

    def close(self, timeout_s: float = 2.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._requests.put(None)
        self._thread.join(timeout=timeout_s)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

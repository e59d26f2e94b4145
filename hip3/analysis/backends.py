"""Where the optimiser's tasks run: worker processes on this machine (the default), or an existing Ray
cluster (``--ray ADDRESS``; Ray is the optional ``ray`` extra).

Both take a list of ``evaluate.Task`` and return their ``Score``s in the same order, so the study sees the
same results in the same order whatever runs them. Local workers are *spawned* processes (no ZeroMQ
context or event loop crosses a fork) that live for the whole study. On Ray every recording is put in the
object store once and handed to each task as bytes, so the nodes need hip3 installed (the same version)
but not the driver's files.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from hip3.analysis.evaluate import Score, Task, evaluate


class Backend(Protocol):
    name: str
    workers: int

    def run(self, tasks: Sequence[Task]) -> list[Score]: ...

    def close(self) -> None: ...


def _warm(_: int) -> int:
    import time

    import hip3.replay.driver  # noqa: F401

    time.sleep(0.2)  # long enough that each call lands on a different worker
    return os.getpid()


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalBackend:
    """``workers`` spawned processes on this machine."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        self.name = f"{workers} local process{'es' if workers > 1 else ''}"
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def start(self) -> None:
        """Spawn every worker and import the replay code in it now (a benchmark times the work, not this)."""
        list(self._pool.map(_warm, range(self.workers)))

    def run(self, tasks: Sequence[Task]) -> list[Score]:
        return list(self._pool.map(evaluate, tasks))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayError(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a ``host:port`` nobody listens on at once (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "local", ray://...: Ray's own business
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RayError(f"cannot reach the Ray cluster at {address!r}: {e.strerror or e}") from None


class RayBackend:
    """Tasks on the Ray cluster at ``address`` (``ray.init(address=...)``: ``host:port``, ``auto``, or
    ``local`` for a cluster started for this study alone)."""

    def __init__(self, address: str, recordings: Sequence[str]) -> None:
        try:
            import ray
        except ImportError:
            raise RayError("--ray needs Ray: pip install -e '.[ray]'") from None
        self._ray = ray
        _probe(address)
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError... by version
            raise RayError(f"cannot reach the Ray cluster at {address!r}: {e}") from None
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        self.workers = int(resources.get("CPU", 1))
        self.name = f"Ray cluster at {address} ({self.workers} CPUs)"
        self._remote: Any = ray.remote(num_cpus=1, max_retries=1)(evaluate)
        self._refs = {r: ray.put(Path(r).read_bytes()) for r in recordings}

    def run(self, tasks: Sequence[Task]) -> list[Score]:
        futures = [self._remote.remote(t, self._refs[t.recording]) for t in tasks]
        results: list[Score] = self._ray.get(futures)
        return results

    def close(self) -> None:
        self._ray.shutdown()

"""Run the whole actor graph as threads in one process over ``inproc://`` (integration tests).

The supervisor core runs in its own thread with a ``ThreadLauncher``; every actor is a thread sharing
one ZeroMQ context. The actor code is exactly the production code; only the transport differs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import zmq

from hip3.config import Config
from hip3.runtime.bus import prepare_run_dir
from hip3.runtime.launchers import ThreadLauncher
from hip3.runtime.logs import setup_logging
from hip3.runtime.secrets import SigningKey
from hip3.runtime.supervisor import Supervisor


class InprocRun:
    """A running inproc graph: the supervisor (``sup``), the shared ``context``, and helpers."""

    def __init__(self, cfg: Config, factories: dict[str, Callable[..., object]] | None = None,
                 signing_key: SigningKey | None = None) -> None:
        if cfg.bus.transport != "inproc":
            cfg = msgspec.structs.replace(cfg, bus=msgspec.structs.replace(cfg.bus, transport="inproc"))
        self.cfg = cfg
        prepare_run_dir(cfg.run_path)
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        log = setup_logging("supervisor", cfg.run_path, cfg.logging.level, cfg.logging.stderr, cfg.logging)
        self.sup = Supervisor(cfg, ThreadLauncher(cfg, self.context, factories, signing_key), log, context=self.context)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hip3:supervisor", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.sup.step(10)

    def call(self, fn: Callable[[Supervisor], Any]) -> Any:
        """Run ``fn(sup)`` on the supervisor between two steps of its loop."""
        with self._lock:
            return fn(self.sup)

    def wait_for(self, pred: Callable[[Supervisor], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.call(pred):
                return True
            time.sleep(0.01)
        return False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sup.shutdown()
        self.sup.close()
        self.context.term()


@contextmanager
def inproc_graph(cfg: Config, factories: dict[str, Callable[..., object]] | None = None,
                 signing_key: SigningKey | None = None) -> Iterator[InprocRun]:
    run = InprocRun(cfg, factories, signing_key)
    run.start()
    try:
        yield run
    finally:
        run.stop()

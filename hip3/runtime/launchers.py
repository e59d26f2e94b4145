"""How the supervisor starts actors: as OS processes (production) or as threads (inproc tests).

Processes come from a ``multiprocessing`` *forkserver* whose preloaded modules make a restart fast
(no interpreter start, no re-import), while no ZeroMQ context ever crosses a fork: the forkserver
itself never creates one. Each child gets its own process group, so the supervisor can SIGKILL the
group of an actor that ignores SIGTERM.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import zmq

from hip3.config import Config
from hip3.runtime.roster import preloaded_modules
from hip3.runtime.secrets import SigningKey, hand_over

_PRELOAD = ["hip3.runtime.runner", "hip3.messages", "hip3.runtime.bus"]  # then the actors (``preload_list``)


def preload_list() -> list[str]:
    """What the forkserver imports before any fork: the runtime, then every actor the roster preloads."""
    return [*_PRELOAD, *preloaded_modules()]


class Handle(Protocol):
    """A running actor, whichever way it was started."""

    @property
    def pid(self) -> int | None: ...

    @property
    def sentinel(self) -> int | None: ...

    def exitcode(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def join(self, timeout: float) -> None: ...


class Launcher(Protocol):
    def launch(self, name: str) -> Handle: ...

    def close(self) -> None: ...


class ProcessHandle:
    def __init__(self, proc: multiprocessing.process.BaseProcess) -> None:
        self._proc = proc

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def sentinel(self) -> int | None:
        return self._proc.sentinel

    def exitcode(self) -> int | None:
        return self._proc.exitcode

    def terminate(self) -> None:
        if self._proc.pid and self._proc.exitcode is None:
            try:
                os.kill(self._proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the actor's whole process group (it called setpgrp), then the actor itself."""
        pid = self._proc.pid
        if not pid:
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def join(self, timeout: float) -> None:
        self._proc.join(timeout)


class ProcessLauncher:
    """Starts actors as child processes of a forkserver that preloaded hip3."""

    def __init__(self, config_path: Path, run_dir: Path, signing_key: SigningKey | None = None,
                 stderr_path: Path | None = None) -> None:
        """``stderr_path``: the actors write no JSON log lines to stderr and their stderr (a traceback, a
        library's print) goes to this file: the console owns the terminal (``hip3.ui.terminal``)."""
        self.signing_key = signing_key
        self.config_path = str(config_path.resolve())
        self.run_dir = str(run_dir)
        self.stderr_path = str(stderr_path) if stderr_path is not None else None
        os.environ["HIP3_SUPERVISOR_PID"] = str(os.getpid())
        os.environ["HIP3_RUN_DIR"] = self.run_dir
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(preload_list())

    def launch(self, name: str) -> Handle:
        from hip3.runtime.runner import supervised_main

        key = self.signing_key if name == "executor" else None
        proc = self._ctx.Process(target=supervised_main,
                                 args=(name, self.config_path, self.run_dir, key, self.stderr_path),
                                 name=f"hip3:{name}", daemon=False)
        proc.start()
        return ProcessHandle(proc)

    def close(self) -> None:
        pass


class ThreadHandle:
    """An actor running as a thread. ``kill`` can only ask it to stop (threads cannot be killed)."""

    def __init__(self, thread: threading.Thread, stop: threading.Event, result: list[int]) -> None:
        self._thread = thread
        self._stop = stop
        self._result = result

    @property
    def pid(self) -> int | None:
        return os.getpid()

    @property
    def sentinel(self) -> int | None:
        return None

    def exitcode(self) -> int | None:
        if self._thread.is_alive():
            return None
        return self._result[0] if self._result else 1

    def terminate(self) -> None:
        self._stop.set()

    def kill(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class ThreadLauncher:
    """Starts actors as threads sharing one ZeroMQ context: the inproc integration-test transport."""

    def __init__(self, cfg: Config, context: zmq.Context[zmq.Socket[bytes]],
                 factories: dict[str, Callable[..., object]] | None = None,
                 signing_key: SigningKey | None = None) -> None:
        if signing_key is not None:
            hand_over(signing_key)  # one process: the executor thread reads it like the process would
        self.cfg = cfg
        self.context = context
        self.factories = factories or {}

    def launch(self, name: str) -> Handle:
        from hip3.runtime.runner import actor_class

        stop = threading.Event()
        result: list[int] = []
        factory = self.factories.get(name) or actor_class(name)

        def main() -> None:
            try:
                actor = factory(self.cfg, context=self.context, stop_event=stop, supervised=True)
                result.append(actor.run())  # type: ignore[attr-defined]
            except BaseException:
                result.append(1)
                raise

        thread = threading.Thread(target=main, name=f"hip3:{name}", daemon=True)
        thread.start()
        return ThreadHandle(thread, stop, result)

    def close(self) -> None:
        pass

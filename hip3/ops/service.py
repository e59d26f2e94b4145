"""What ``start`` does for its service manager, once per turn of the supervisor's loop.

* ``READY=1`` at the first turn: the supervisor is up (its latch checked, its sockets bound, the
  simulator started in paper mode) and supervising. Not "every actor READY": bringing the actors up,
  restarting them and latching the hard stop when they cannot come up is the supervisor's job, and
  systemd killing it over a slow exchange would only leave positions unwatched for longer. Whether the
  actors are READY is ``/ready``'s answer (``hip3.ops.readiness``) and ``STATUS=``'s text.
* ``WATCHDOG=1`` every half of ``WatchdogSec=``, sent from the loop itself: a loop that stalls (a hang,
  a deadlock, a stop signal) stops the pings, and systemd kills and restarts the supervisor. A loop that
  turns again after a long stall pings once, not the pings it missed.
* ``STATUS=`` when the readiness verdict changes (``systemctl status`` shows it).
* ``STOPPING=1`` when the loop ends, before the actors are stopped.
* The log files' housekeeping, every ``HOUSEKEEP_INTERVAL_S``: a spare file ready for every log's next
  rotation and the rotated copies beyond ``[logging] keep_files`` deleted, so that no actor ever spends its
  hot path creating or deleting files (``hip3.ops.logrotate``).

Without ``NOTIFY_SOCKET`` (a terminal, a container) only the pruning runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hip3.ops.logrotate import housekeep
from hip3.ops.sd_notify import SdNotify, Watchdog

if TYPE_CHECKING:
    from hip3.config import Config
    from hip3.ops.readiness import Probes
    from hip3.runtime.logs import Log

__all__ = ["HOUSEKEEP_INTERVAL_S", "Service"]

HOUSEKEEP_INTERVAL_S = 1.0


class _Supervisor(Protocol):
    @property
    def probes(self) -> Probes: ...


class Service:
    """The service manager's side of the supervisor's loop: ``tick`` every turn, ``stopping`` at the end."""

    def __init__(self, notify: SdNotify, logs_dir: Path, keep_files: int, log: Log | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.notify = notify
        self.watchdog = Watchdog(notify.watchdog_usec)
        self.logs_dir = logs_dir
        self.keep_files = keep_files
        self.log = log
        self._clock_ns = clock_ns
        self.ready_sent = False
        self.pings = 0
        self._status = ""
        self._next_housekeep_ns = 0
        self._failure_logged = False

    @classmethod
    def from_environment(cls, cfg: Config, log: Log) -> Service:
        """Takes ``NOTIFY_SOCKET`` and the watchdog's variables out of the environment: call it before any
        child process starts, so that none inherits them."""
        notify = SdNotify.from_environment()
        if notify.enabled:
            log.info("service_manager", notify_socket=notify.address, watchdog_ms=notify.watchdog_usec // 1000)
        return cls(notify, cfg.run_path / "logs", cfg.logging.keep_files, log)

    def tick(self, sup: _Supervisor) -> None:
        now = self._clock_ns()
        verdict = sup.probes.verdict
        status = verdict.reason if verdict is not None else "starting"
        if not self.ready_sent:
            self.ready_sent = True
            self._sent(self.notify.ready(status))
            self._status = status
        elif self.watchdog.due(now):
            self.pings += 1
            self._sent(self.notify.watchdog())
        if status != self._status:
            self._status = status
            self._sent(self.notify.status(status))
        if now >= self._next_housekeep_ns:
            self._next_housekeep_ns = now + int(HOUSEKEEP_INTERVAL_S * 1e9)
            housekeep(self.logs_dir, self.keep_files)

    def stopping(self) -> None:
        self._sent(self.notify.stopping("stopping the actors"))

    def _sent(self, ok: bool) -> None:
        if not ok and self.notify.enabled and not self._failure_logged and self.log is not None:
            self._failure_logged = True  # once: the manager may be gone for good (a restart of systemd)
            self.log.warning("service_notify_failed", notify_socket=self.notify.address,
                             failed=self.notify.failed)

    def close(self) -> None:
        self.notify.close()

"""The service manager's notification protocol (systemd's ``sd_notify``), with the standard library only.

Under a unit with ``Type=notify`` systemd sets ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (the interval, in microseconds) and
``WATCHDOG_PID`` (the process expected to ping). The service sends newline-separated ``KEY=VALUE``
datagrams: ``READY=1`` once it is up, ``WATCHDOG=1`` at least every interval (systemd recommends every
half), ``STATUS=...`` for ``systemctl status``, ``STOPPING=1`` when it begins to shut down. Without a
ping for a whole interval systemd kills the service (SIGABRT) and, with ``Restart=``, starts it again.

* **Never blocks the caller.** The socket is non-blocking: a manager that does not read (its queue full)
  costs a failed send, counted, never a stall of the supervisor's loop.
* **Only the service's own process speaks.** ``from_environment`` takes the variables out of the
  environment (as ``sd_notify``'s ``unset_environment``), so no actor, forkserver or simulator started
  afterwards inherits them and believes it is the service; a ``WATCHDOG_PID`` that is not this process
  means the watchdog is someone else's.
* **The pings come from the caller's loop.** ``Watchdog.due`` says when; the supervisor asks once per
  loop turn (``hip3.ops.service``), so a loop that stalls stops pinging and systemd sees it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

__all__ = ["ENV_NOTIFY_SOCKET", "ENV_WATCHDOG_PID", "ENV_WATCHDOG_USEC", "SdNotify", "Watchdog"]

ENV_NOTIFY_SOCKET = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC = "WATCHDOG_USEC"
ENV_WATCHDOG_PID = "WATCHDOG_PID"


def _address(value: str) -> str | None:
    """``NOTIFY_SOCKET`` as an ``AF_UNIX`` address; None for a form this does not speak (``vsock:``)."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class SdNotify:
    """A datagram channel to the service manager; every method is a no-op when there is none."""

    def __init__(self, address: str | None, watchdog_usec: int = 0) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self.sent = 0
        self.failed = 0
        self._sock: socket.socket | None = None
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environment(cls, env: MutableMapping[str, str] | None = None, pid: int | None = None) -> SdNotify:
        """From ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (removed from ``env``, default
        ``os.environ``). A watchdog interval that is not a positive integer, or is meant for another pid,
        is ignored (no pings)."""
        e = os.environ if env is None else env
        raw_socket = e.pop(ENV_NOTIFY_SOCKET, "")
        raw_usec = e.pop(ENV_WATCHDOG_USEC, "")
        raw_pid = e.pop(ENV_WATCHDOG_PID, "")
        me = os.getpid() if pid is None else pid
        usec = int(raw_usec) if raw_usec.isdigit() else 0
        if raw_pid and (not raw_pid.isdigit() or int(raw_pid) != me):
            usec = 0
        return cls(_address(raw_socket) if raw_socket else None, usec)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """One datagram of ``KEY=VALUE`` fields; False (counted) if there is no manager or it did not take it."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:  # not listening, queue full (EAGAIN), gone: the service goes on regardless
            self.failed += 1
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *((f"STATUS={_one_line(status)}",) if status else ()))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={_one_line(status)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *((f"STATUS={_one_line(status)}",) if status else ()))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Watchdog:
    """When the next ``WATCHDOG=1`` is due: every half of the manager's interval (its recommendation).

    Pure: the caller passes its monotonic clock. A stall longer than the period gives one ping when the
    loop turns again, not a burst of the ones missed.
    """

    __slots__ = ("_next_ns", "period_ns")

    def __init__(self, watchdog_usec: int) -> None:
        self.period_ns = watchdog_usec * 1000 // 2
        self._next_ns = 0

    @property
    def enabled(self) -> bool:
        return self.period_ns > 0

    def due(self, now_ns: int) -> bool:
        """True (and the next one scheduled) if a ping is due at ``now_ns``."""
        if self.period_ns <= 0 or now_ns < self._next_ns:
            return False
        self._next_ns = now_ns + self.period_ns
        return True

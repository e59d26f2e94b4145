"""Real filesystem failures for tests: an immutable file, a read-only bind mount, a full tmpfs, and a
function run as another user (root ignores permission bits, so "no permission" needs a second uid).

Each needs privileges or tools a machine may not have: it skips the test with the reason, never fakes
the failure. Everything is undone when the context ends, pass or fail.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

NOBODY_UID = 65534


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i path`` (not even root may replace or change it) for the duration."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: cannot make an immutable file")
    r = _run("chattr", "+i", str(path))
    if r.returncode != 0:
        pytest.skip(f"chattr +i refused here (needs root and a filesystem with attributes): {r.stderr.strip()}")
    try:
        yield
    finally:
        _run("chattr", "-i", str(path))


@contextmanager
def readonly_bind(directory: Path) -> Iterator[None]:
    """``directory`` bind-mounted read-only onto itself (EROFS for every write) for the duration."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    r = _run("mount", "--bind", str(directory), str(directory))
    if r.returncode != 0:
        pytest.skip(f"mount --bind refused here (container without CAP_SYS_ADMIN?): {r.stderr.strip()}")
    try:
        r = _run("mount", "-o", "remount,ro,bind", str(directory))
        if r.returncode != 0:
            pytest.skip(f"remount read-only refused here: {r.stderr.strip()}")
        yield
    finally:
        _run("umount", "-l", str(directory))


@contextmanager
def full_tmpfs(directory: Path, size_kb: int = 256) -> Iterator[Callable[[], None]]:
    """A tiny tmpfs mounted on (empty) ``directory``; yields ``fill()``, which fills it to ENOSPC. Undone
    (unmounted, contents gone) at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory.mkdir(parents=True, exist_ok=True)
    r = _run("mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700", "tmpfs", str(directory))
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused here (container without CAP_SYS_ADMIN?): {r.stderr.strip()}")

    def fill() -> None:
        fd = os.open(directory / ".filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)

    try:
        yield fill
    finally:
        _run("umount", "-l", str(directory))


def as_other_user(fn: Callable[[], Any], uid: int = NOBODY_UID) -> Any:
    """``fn()`` in a forked child running as ``uid`` (root only: skips otherwise); returns its result or
    re-raises its exception. The child touches no ZeroMQ socket or thread of the parent and leaves with
    ``os._exit``."""
    if os.geteuid() != 0:
        pytest.skip("running a check as another uid needs root")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(rfd)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            out: tuple[bool, Any] = (True, fn())
        except BaseException as e:
            out = (False, e)
        try:
            data = pickle.dumps(out)
        except Exception as e:
            data = pickle.dumps((False, RuntimeError(f"unpicklable result: {e!r}")))
        with os.fdopen(wfd, "wb") as w:
            w.write(data)
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        data = r.read()
    os.waitpid(pid, 0)
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value

"""Nonce allocation for one signer.

The exchange keeps the 100 highest nonces per signer; a nonce must exceed the smallest of them, must never
repeat, and must lie within (T − 2 days, T + 1 day) of the block time T. The SDK uses bare
``time.time()*1000`` and collides when two actions share a millisecond ("Invalid nonce: duplicate nonce").

``NonceManager`` gives ``max(last + 1, now_ms + server_offset_ms)``: strictly increasing within a process
and, through a persisted high-water mark, across restarts. The file holds a *reserved ceiling*: before a
nonce above the ceiling is handed out, a new ceiling (nonce + ``reserve_ms``) is written atomically
(tmp file, fsync, ``os.replace``, fsync of the directory). After a crash the next process starts above
the ceiling, so a nonce can never be reused, and only one call in ``reserve_ms`` pays for an fsync.
The owner keeps that fsync off its send path by calling ``reserve_ahead`` from a timer: the ceiling then
stays at least half a reserve ahead of the clock and ``next()`` only writes when a burst overtakes it
(otherwise, with orders seconds apart, every order would pay two fsyncs, about 0.9 ms, before its frame).

One owner per signer (two processes signing for one API wallet would collide on nonces): an exclusive
``flock`` on ``<path>.lock`` refuses a second manager.

A full disk (or any write error) must not stop the flattens: ``next(durable=False)`` (reduce-only orders,
cancels, the dead man's switch) still signs when the new ceiling cannot be written, keeping it in memory;
``next()`` (entries) refuses with ``NonceStorageError``. ``storage_problem`` says why, until a write
succeeds again (``reserve_ahead`` retries on every call while it is set). What that risks: nonces are
``max(last + 1, now)``, so a process restarted from the older ceiling reuses a nonce only if it starts
within the same milliseconds that the unpersisted nonces ran ahead of the clock; the exchange refuses a
duplicate nonce, it never executes an action twice.

A state that cannot be used is refused with one line naming the file and what to do, never guessed: an
unreadable or corrupt file (``NonceError`` at construction), and a ceiling so far ahead of the clock that
the exchange would refuse every nonce (``problem()``: the owner reports it and does not trade). The
exchange accepts nonces up to one day ahead of its block time; a ceiling beyond that comes from a clock
that was ahead when it was written (then stepped back) or from a damaged file.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path

from hip3.runtime.durable import atomic_write
from hip3.runtime.hardstop import describe_os_error

__all__ = ["DAY_MS", "NonceError", "NonceManager", "NonceStorageError"]

DAY_MS = 86_400_000
# The exchange window is (T - 2 days, T + 1 day) [DOCS]; an older page says 1 day, so stay well inside.
_WINDOW_BEHIND_MS = 2 * DAY_MS
_WINDOW_AHEAD_MS = DAY_MS


class NonceError(RuntimeError):
    """A nonce cannot be issued safely (outside the exchange window, or the state file is unusable)."""


class NonceStorageError(NonceError):
    """The persisted ceiling could not be extended (full disk, I/O error): no durable nonce now."""


class NonceManager:
    """Strictly increasing nonces for one signer, persisted so a restart never reuses one.

    ``path=None`` keeps state in memory only (tests, the simulator). ``clock_ms`` supplies the local
    wall-clock time in ms when ``next()`` is called without ``now_ms``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        clock_ms: Callable[[], int] | None = None,
        reserve_ms: int = 2_000,
        safety_margin_ms: int = 60_000,
    ) -> None:
        if reserve_ms < 1:
            raise ValueError("reserve_ms must be >= 1")
        self._clock_ms = clock_ms
        self._reserve_ms = reserve_ms
        self._margin_ms = safety_margin_ms
        self._offset_ms = 0
        self._last = 0
        self._ceiling = 0  # every nonce handed out is <= this persisted value
        self._path = Path(path) if path is not None else None
        self._lock_fd: int | None = None
        self.fsyncs = 0
        self._storage_problem: str | None = None
        if self._path is not None:
            self._acquire_lock(self._path)
            try:
                self._ceiling = self._load(self._path)
            except NonceError:
                self.close()  # the owner lock too: a refused start holds nothing
                raise
            self._last = self._ceiling

    # ---- public ----

    @property
    def last(self) -> int:
        """The last nonce handed out (or the persisted ceiling right after start)."""
        return self._last

    @property
    def server_offset_ms(self) -> int:
        return self._offset_ms

    def set_server_offset(self, offset_ms: int) -> None:
        """Server time minus local time, from an observed server timestamp (e.g. a frame's ``time``)."""
        self._offset_ms = int(offset_ms)

    @property
    def storage_problem(self) -> str | None:
        """Why the ceiling cannot be written now (one line naming the file), or None."""
        return self._storage_problem

    def problem(self, now_ms: int) -> str | None:
        """Why ``next(now_ms)`` would refuse (one line for the operator), or None. Cheap: for READY checks."""
        server_now = now_ms + self._offset_ms
        if self._last + 1 < server_now + _WINDOW_AHEAD_MS - self._margin_ms:
            return None
        ahead_h = (self._last - server_now) / 3_600_000
        where = f"nonce state {self._path}" if self._path is not None else "the in-memory nonce state"
        return (f"{where} is {ahead_h:.1f} h ahead of the clock, past the exchange's window of 1 day: every "
                "signature would be refused; check the host clock (NTP); if it is right, stop hip3 and delete "
                "that file (nonces then follow the clock)")

    def next(self, now_ms: int | None = None, *, durable: bool = True) -> int:
        """The next nonce: ``max(last + 1, now_ms + server_offset_ms)``, persisted before it is returned.

        Raises ``NonceError`` if that nonce would fall outside the exchange's window around server time
        (for example a persisted ceiling far ahead after a clock jump): refusing beats a rejected or reused
        nonce. If the new ceiling cannot be written: ``durable`` raises ``NonceStorageError``; otherwise
        the nonce is handed out all the same (see the module's docstring) and no write is tried again on
        this path until ``reserve_ahead`` succeeds.
        """
        if now_ms is None:
            if self._clock_ms is None:
                raise ValueError("now_ms is required when no clock was injected")
            now_ms = self._clock_ms()
        server_now = now_ms + self._offset_ms
        nonce = max(self._last + 1, server_now)
        if nonce >= server_now + _WINDOW_AHEAD_MS - self._margin_ms:
            raise NonceError(self.problem(now_ms) or f"nonce {nonce} is too far ahead of {server_now}")
        if nonce <= server_now - _WINDOW_BEHIND_MS:  # cannot happen unless server_now is bogus
            raise NonceError(f"nonce {nonce} is behind the exchange window around {server_now}")
        if nonce > self._ceiling and (durable or self._storage_problem is None):
            try:
                self._persist(nonce + self._reserve_ms)
            except OSError as exc:
                self._storage_failed(exc)
                if durable:
                    raise NonceStorageError(self._storage_problem) from None
        self._last = nonce
        return nonce

    def reserve_ahead(self, now_ms: int) -> bool:
        """Move the persisted ceiling ahead of the clock when less than half a reserve is left, so the
        next ``next()`` calls need no fsync. For a timer off the send path; True if it wrote. While the
        last write failed (``storage_problem``) it writes on every call, and a success clears the problem;
        a failure is kept in ``storage_problem``, never raised."""
        server_now = now_ms + self._offset_ms
        ahead = max(self._last, server_now)
        if server_now + self._reserve_ms // 2 <= self._ceiling and self._storage_problem is None:
            return False
        ceiling = max(ahead + self._reserve_ms, self._ceiling)
        if ceiling >= server_now + _WINDOW_AHEAD_MS - self._margin_ms:
            return False  # next() refuses such a state with a clear error; never persist further ahead
        try:
            self._persist(ceiling)
        except OSError as exc:
            self._storage_failed(exc)
            return False
        return True

    def close(self) -> None:
        """Release the owner lock (the persisted ceiling stays)."""
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> NonceManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NonceManager(last={self._last}, ceiling={self._ceiling}, path={self._path})"

    # ---- persistence ----

    def _acquire_lock(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise NonceError(f"cannot open the nonce lock {path}.lock: {exc.strerror}: fix its permissions "
                             "(or remove what is there) and start again") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NonceError(f"another process owns the nonce state {path} (a second executor for this run "
                             "directory?): stop it first") from None
        self._lock_fd = fd

    @staticmethod
    def _load(path: Path) -> int:
        try:
            # O_NONBLOCK: a FIFO planted at the path must not hang the executor's start.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise NonceError(f"cannot read nonce state {path}: {exc.strerror}: fix its permissions (or remove "
                             "what is there) and start again") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NonceError(f"cannot read nonce state {path}: not a regular file: remove what is there "
                                 "and start again")
            raw = os.read(fd, 64)
        except OSError as exc:
            raise NonceError(f"cannot read nonce state {path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        text = raw.decode("ascii", errors="replace").strip()
        if not text.isdigit() or len(text) > 19:
            # Refuse to guess: a wrong guess could reuse a nonce. The operator must inspect it.
            raise NonceError(f"nonce state {path} is corrupt ({text[:40]!r}): with the host clock right, "
                             "delete it and start again (nonces then follow the clock)")
        return int(text)

    def _storage_failed(self, exc: OSError) -> None:
        self._storage_problem = f"cannot write the nonce ceiling {self._path}: {describe_os_error(exc)}"

    def _persist(self, ceiling: int) -> None:
        if self._path is None:
            self._ceiling = ceiling
            return
        atomic_write(self._path, f"{ceiling}\n".encode("ascii"))
        self._ceiling = ceiling
        self._storage_problem = None
        self.fsyncs += 1

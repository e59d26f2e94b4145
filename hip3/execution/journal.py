"""Durable "sent intents" journal: an intent is never sent twice, across an executor restart too.

PUSH sockets queue intents for a dead peer, so a restarted executor can receive intents that its previous
incarnation already sent. Before a signed frame is written, the executor appends one line
per order (``<epoch ms> <intent_id> <cloid>``) and fsyncs; at start it reloads the file and drops any intent
id found there.

Growth is bounded: at load, entries older than ``retention_ms`` (longer than any intent's TTL plus margin)
are pruned and the file is rewritten atomically (write to a temporary file, fsync, rename). A torn last
line (crash mid-write) is ignored: that frame was never written, because the append precedes the send.

A write that fails (full disk, I/O error) is cut back off the file (never a torn line for the next append
to run into) and kept in ``problem`` until a write succeeds again. The caller says what the line is worth:
``required`` (an entry: refused, ``JournalWriteError``, the id forgotten since it is never sent) or not (a
reduce-only order: it leaves all the same and its line is written with the next one that can be, or by
``retry``; a flatten sent twice after a restart is reduce-only, refused benignly once the position is
closed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from hip3.runtime.durable import atomic_write
from hip3.runtime.hardstop import describe_os_error

__all__ = ["JournalWriteError", "SentIntentJournal", "valid_id"]

log = logging.getLogger(__name__)

FILE_NAME = "sent_intents.log"
# Written (and skipped at load: not three fields) to learn whether the disk takes writes again when no
# line is waiting.
_PROBE = b"# write check\n"


class JournalWriteError(OSError):
    """A required line could not be written (its text is the one line for the operator)."""


def valid_id(s: str) -> bool:
    """Ids the journal can store: non-empty, no whitespace, at most 128 characters."""
    # ``split()`` splits on exactly the characters ``str.isspace`` reports (one C call, not a generator
    # over every character: this runs three times per order on the send path).
    return 0 < len(s) <= 128 and s.split() == [s]


class SentIntentJournal:
    """Append-only journal of sent intent ids in ``directory``. Not thread-safe (one executor)."""

    def __init__(self, directory: str | os.PathLike[str], *, now_ms: int, retention_ms: int) -> None:
        self.path = Path(directory) / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sent: dict[str, str] = {}  # intent_id -> cloid
        kept: list[str] = []
        if self.path.exists():
            with self.path.open("r", encoding="utf-8", errors="replace") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) != 3 or not line.endswith("\n") or not parts[0].isdigit():
                        continue  # torn or foreign line
                    if int(parts[0]) < now_ms - retention_ms:
                        continue
                    self._sent[parts[1]] = parts[2]
                    kept.append(line)
        self._rewrite(kept)
        # A raw O_APPEND descriptor: one write(2) per batch, no text-layer buffering to flush.
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size  # where a failed write is cut back to
        self._dirty = False
        self._torn = False  # a failed write left a fragment at the end of the file
        self._unwritten: list[str] = []  # lines of orders sent while the disk refused them
        self.problem: str | None = None  # why the last write failed (one line), until one succeeds

    def _rewrite(self, lines: list[str]) -> None:
        atomic_write(self.path, "".join(lines).encode("utf-8"), mode=0o666)

    def __contains__(self, intent_id: object) -> bool:
        return intent_id in self._sent

    def __len__(self) -> int:
        return len(self._sent)

    def cloid_of(self, intent_id: str) -> str | None:
        return self._sent.get(intent_id)

    def record(
        self, entries: Iterable[tuple[str, str]], now_ms: int, *, sync: bool = True, required: bool = True
    ) -> None:
        """Append (intent_id, cloid) pairs and fsync; call BEFORE the frame is written.

        Already-recorded intent ids (a requeued reduce-only order) are not written again. ``sync=False``
        writes to the kernel only (``write(2)``: visible to a restarted process even after SIGKILL) and
        leaves the fsync (host-crash durability) to ``sync()``. If the write fails: ``required`` raises
        ``JournalWriteError`` (the ids are forgotten: the caller does not send them); otherwise the lines
        are kept for the next write and ``problem`` says why.
        """
        lines = []
        for intent_id, cloid in entries:
            if not valid_id(intent_id) or not valid_id(cloid):
                raise ValueError(f"cannot journal id {intent_id!r}/{cloid!r}: empty or contains whitespace")
            if intent_id in self._sent:
                continue
            self._sent[intent_id] = cloid
            lines.append(f"{now_ms} {intent_id} {cloid}\n")
        if not lines:
            return
        try:
            self._append("".join(self._unwritten + lines if self._unwritten else lines).encode(), sync)
        except OSError as exc:
            if required:
                for line in lines:
                    del self._sent[line.split()[1]]
                raise JournalWriteError(self.problem or str(exc)) from None
            self._unwritten.extend(lines)

    def _append(self, data: bytes, sync: bool) -> None:
        """One append (and its fsync if ``sync``); on failure the file is cut back to where it was."""
        fd = self._fd
        if fd is None:
            raise ValueError("journal is closed")
        if self._torn:  # a fragment could not be cut off: end it, so this line stands on its own
            data = b"\n" + data
        start = self._size
        try:
            while data:  # a regular file takes it whole unless the disk is full (then write raises)
                n = os.write(fd, data)
                self._size += n
                data = data[n:]
            if sync:
                os.fsync(fd)
        except OSError as exc:
            self.problem = f"cannot write the sent-intent journal {self.path}: {describe_os_error(exc)}"
            try:
                os.ftruncate(fd, start)
                self._size = start
            except OSError:
                self._torn = self._size != start
            raise
        self._torn = False
        if not sync:
            self._dirty = True
        self._unwritten.clear()
        self.problem = None

    def retry(self) -> bool:
        """While ``problem`` is set: write what is waiting (or a check line) and fsync. True if the journal
        takes writes again. For a timer off the send path."""
        if self.problem is None:
            return True
        data = "".join(self._unwritten).encode() or _PROBE
        try:
            self._append(data, True)
        except OSError:
            return False
        self._dirty = False
        return True

    def sync(self) -> None:
        """fsync what ``record(..., sync=False)`` wrote (no-op if nothing is pending). A failure is kept
        in ``problem`` (the fsync is tried again at the next call), never raised."""
        if self._dirty and self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self.problem = f"cannot write the sent-intent journal {self.path}: {describe_os_error(exc)}"
                return
            self._dirty = False

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

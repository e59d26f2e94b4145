"""One atomic file write, durable unless the caller says otherwise.

``atomic_write`` writes to a temporary file beside the target, fsyncs it, renames it over the target
(``os.replace``: a reader, in this process or another, sees the old content or the new, never a mix) and
fsyncs the directory, so the rename itself survives a host crash. The hard-stop latch, the nonce ceiling,
the sent-intent journal's rewrite, the ownership ledger, the markets cache and the replay index all write
through it; each caller keeps its own error handling (the function raises ``OSError`` and leaves no
temporary file behind).

The temporary file's name carries the process id: several processes may write the same file at once (the
latch, the markets cache), and each must rename its own complete file, never another's half-written one.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, fsync: bool = True, sync_dir: bool = True,
                 mode: int = 0o600) -> None:
    """Replace ``path``'s content with ``data`` atomically.

    ``fsync`` flushes the file to the disk before the rename (without it the rename is atomic for readers
    but a host crash may leave an empty file); ``sync_dir`` then flushes the directory so the rename
    survives a host crash (only with ``fsync``). ``mode`` is the new file's permission bits (before the
    umask). Raises ``OSError`` (full disk, read-only file system, a directory at ``path``, ...) after
    removing the temporary file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view, offset = memoryview(data), 0
            while offset < len(data):  # a regular file takes it whole unless the disk is full (then it raises)
                offset += os.write(fd, view[offset:])
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:  # a full disk or a refused rename leaves no temporary file behind
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync and sync_dir:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

"""Structured logs: one JSON object a line, to ``<run_dir>/logs/<actor>.log`` and to stderr.

The files rotate by size (``[logging] max_file_mb``, ``keep_files``; ``hip3.ops.logrotate``): one rename,
never more work than that on the line that triggers it.

Every line has ``ts`` (epoch seconds), ``level``, ``actor``, ``event`` and the event's fields, so a
person and a program can both read it. Hot paths log nothing above debug; gate blocks are logged on
state transitions only (a block logged per message filled 400 MB of logs in hours).

Defence in depth for secrets: every line is scrubbed of anything shaped like a private key (64 hex
digits) before it is written, whatever the caller passed.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any, Protocol

import msgspec

from hip3.ops.logrotate import RotatingLineHandler

_KEY_RE = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_ENC = msgspec.json.Encoder(decimal_format="string")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def redact(text: str) -> str:
    """Replace anything that looks like a 32-byte hex secret."""
    return _KEY_RE.sub("[REDACTED]", text)


def record_dict(record: logging.LogRecord) -> dict[str, Any]:
    """A record as one JSON line's object: ``ts``, ``level``, ``actor``, ``event`` and the fields."""
    fields: dict[str, Any] = getattr(record, "fields", {})
    obj: dict[str, Any] = {
        "ts": round(record.created, 6),
        "level": record.levelname.lower(),
        "actor": getattr(record, "actor", record.name.removeprefix("hip3.")),
        "event": record.getMessage(),
    }
    for k, v in fields.items():
        # A field named like a line key (the supervisor's ``actor=slot.name``) keeps its value under
        # ``<key>_`` instead of being dropped: the line's own ``actor`` is who logged it.
        obj[k if k not in obj else f"{k}_"] = v
    return obj


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj = record_dict(record)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        try:
            line = _ENC.encode(obj).decode()
        except (TypeError, msgspec.EncodeError):
            line = _ENC.encode({k: str(v) for k, v in obj.items()}).decode()
        return redact(line)


class Log:
    """A small structured logger: ``log.info("order_sent", cloid=..., px=...)``."""

    __slots__ = ("_actor", "_logger")

    def __init__(self, actor: str) -> None:
        self._actor = actor
        self._logger = logging.getLogger(f"hip3.{actor}")

    def _log(self, level: int, event: str, fields: dict[str, Any], exc: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields, "actor": self._actor}, exc_info=exc)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, exc: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc)

    def critical(self, event: str, **fields: Any) -> None:
        self._log(logging.CRITICAL, event, fields)

    @property
    def debug_enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.DEBUG)


class Rotation(Protocol):
    """How the log files rotate (``hip3.config.LoggingConfig``)."""

    @property
    def max_file_mb(self) -> float: ...

    @property
    def keep_files(self) -> int: ...


def setup_logging(actor: str, run_dir: Path | None, level: str = "info", stderr: bool = True,
                  rotation: Rotation | None = None) -> Log:
    """Configure the process's root ``hip3`` logger (once per process) and return ``actor``'s logger.

    ``rotation``: rotate ``<run_dir>/logs/<actor>.log`` by size (None: never).

    In an inproc test several actors share one process: the first call configures the handlers and
    later calls only return loggers (each line still names its actor).
    """
    root = logging.getLogger("hip3")
    if not getattr(root, "_hip3_configured", False):
        root.setLevel(_LEVELS.get(level, logging.INFO))
        root.propagate = False
        fmt = _JsonFormatter()
        if run_dir is not None:
            (run_dir / "logs").mkdir(parents=True, exist_ok=True)
            max_bytes = int(rotation.max_file_mb * 1_000_000) if rotation is not None else 0
            fh = RotatingLineHandler(run_dir / "logs" / f"{actor}.log", max_bytes,
                                     rotation.keep_files if rotation is not None else 0)
            fh.setFormatter(fmt)
            root.addHandler(fh)
        if stderr:
            sh = logging.StreamHandler(sys.stderr)
            sh.setFormatter(fmt)
            root.addHandler(sh)
        root._hip3_configured = True  # type: ignore[attr-defined]
    return Log(actor)


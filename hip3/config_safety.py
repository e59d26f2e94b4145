"""Config values that would switch a safety mechanism off without a word, found after decoding.

Each field's own range is checked by msgspec at decode (``hip3.bounds``); these rules need the whole
config (two fields together) or look at every number at once:

* no number anywhere is infinite or NaN, whatever its Struct says (a key added later without bounds is
  covered too, the simulator's ``[sim]`` table included);
* the heartbeat timeout leaves room for a late heartbeat (at least twice the interval);
* the restart limit can trip: ``max_restarts`` restarts of a crash-looping actor, each delayed by the
  backoff, fit inside ``restart_period_s``. Otherwise the oldest restart leaves the window before the
  limit is reached and an actor that dies at once on every start is restarted for ever;
* the sent-intent journal remembers an intent longer than any intent lives (the executor's only guard
  against sending an intent again after a restart).

``problems(cfg)`` returns ``(key, text)`` pairs; ``hip3.config`` turns the first into its one-line
``ConfigError`` naming the key and the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

import msgspec

__all__ = ["Checked", "crash_loop_span_ms", "non_finite", "problems"]


# The parts of a config the rules below read, as read-only shapes: ``hip3.config.Config`` fits them, and
# this module needs nothing from ``hip3.config`` (which calls it while loading), so the two do not import
# each other.
class _Supervision(Protocol):
    @property
    def heartbeat_interval_ms(self) -> int: ...
    @property
    def heartbeat_timeout_ms(self) -> int: ...
    @property
    def restart_backoff_initial_ms(self) -> int: ...
    @property
    def restart_backoff_max_ms(self) -> int: ...
    @property
    def restart_jitter(self) -> float: ...
    @property
    def max_restarts(self) -> int: ...
    @property
    def restart_period_s(self) -> float: ...


class _EntryTtl(Protocol):
    @property
    def entry_ttl_ms(self) -> int: ...


class _ExitTtl(Protocol):
    @property
    def exit_ttl_ms(self) -> int: ...


class _SentJournal(Protocol):
    @property
    def sent_journal_retention_ms(self) -> int: ...


class Checked(Protocol):
    """What ``problems`` reads from a ``hip3.config.Config``."""

    @property
    def supervisor(self) -> _Supervision: ...
    @property
    def detector(self) -> _EntryTtl: ...
    @property
    def exits(self) -> _ExitTtl: ...
    @property
    def executor(self) -> _SentJournal: ...


def non_finite(value: object, path: str = "") -> Iterator[str]:
    """Dotted keys of every infinite or NaN float inside ``value`` (Structs, tuples, lists, dicts)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield path
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from non_finite(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from non_finite(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from non_finite(item, f"{path}.{k}" if path else str(k))


def crash_loop_span_ms(initial_ms: float, max_ms: float, jitter: float, max_restarts: int) -> float:
    """The longest time ``max_restarts`` restarts of an actor that dies at once can take (each restart
    delayed by ``min(max, initial * 2^n)``, stretched by the largest jitter factor), see
    ``hip3.runtime.restart.RestartPolicy``."""
    return sum(min(max_ms, initial_ms * 2.0**n) for n in range(max_restarts)) * (1.0 + jitter)


def problems(cfg: Checked) -> list[tuple[str, str]]:
    """Every rule ``cfg`` breaks, as (dotted key, why); empty if none."""
    out = [(key, "must be a finite number (not inf or nan)") for key in non_finite(cfg)]
    sc = cfg.supervisor
    if sc.heartbeat_timeout_ms < 2 * sc.heartbeat_interval_ms:
        out.append(("supervisor.heartbeat_timeout_ms",
                    f"{sc.heartbeat_timeout_ms} must be at least twice heartbeat_interval_ms "
                    f"({sc.heartbeat_interval_ms}): one late heartbeat would kill a healthy actor"))
    span_ms = crash_loop_span_ms(sc.restart_backoff_initial_ms, sc.restart_backoff_max_ms, sc.restart_jitter,
                                 sc.max_restarts)
    if sc.restart_period_s * 1000 <= span_ms:
        out.append(("supervisor.restart_period_s",
                    f"{sc.restart_period_s:g} s is too short for the restart limit to ever trip: "
                    f"{sc.max_restarts} restarts with the backoff take up to {span_ms / 1000:g} s "
                    "(raise restart_period_s, or lower max_restarts or the backoff)"))
    ttl_ms = max(cfg.detector.entry_ttl_ms, cfg.exits.exit_ttl_ms)
    if cfg.executor.sent_journal_retention_ms < 2 * ttl_ms:
        out.append(("executor.sent_journal_retention_ms",
                    f"{cfg.executor.sent_journal_retention_ms} must be at least twice the longest intent "
                    f"TTL ({ttl_ms} ms): a restarted executor could send a queued intent again"))
    return out

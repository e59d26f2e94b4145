"""The two percentile definitions hip3 reports, each in one place.

Both pick a sample (never interpolate between two), so a figure is always a latency that happened. They
differ in which sample, and each figure keeps the definition it has always been reported with, so
figures stay comparable across sessions and with ``BENCHMARKS.md``:

* ``percentile_round``: the sample at index ``round(q * (n - 1))`` of the sorted values (numpy's
  "nearest" method). The session report, ``status``'s tick-to-trade and the benchmarks use it.
* ``percentile_floor``: the sample at index ``n * percent // 100`` of values already sorted: the
  smallest sample with more than ``percent`` % of the samples at or below it (for p50 of an even count,
  the upper of the two middle samples). Integer arithmetic only, no float rounding. The heartbeat's
  latency breakdowns (the executor's stages, the journal's commits) use it, once per stats period.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

__all__ = ["percentile_floor", "percentile_round"]

T = TypeVar("T")


def percentile_round(values: Iterable[float], q: float) -> float:
    """The sample at index ``round(q * (n - 1))`` of ``values`` sorted (``values`` must not be empty;
    ``q`` in [0, 1])."""
    xs = sorted(values)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def percentile_floor(sorted_values: Sequence[T], percent: int) -> T:
    """The sample at index ``n * percent // 100`` of ``sorted_values`` (ascending, not empty; ``percent``
    in [0, 100], where 100 gives the largest)."""
    n = len(sorted_values)
    return sorted_values[min(n - 1, n * percent // 100)]

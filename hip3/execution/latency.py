"""Per-stage latency samples for the executor's send path, summarised into heartbeat stats.

Issue 6: the added latency (intent receipt → signed frame written) was 4–8× what the parts cost in a
hot loop, and nobody could say where it went. The executor stamps ``time.monotonic_ns()`` between its
stages (gates, wire, sign, journal, write) and keeps the last ``maxlen`` samples of each here; the
heartbeat carries ``<stage>_p50_us``/``_p90_us``/``_p99_us``/``_max_us``/``_n`` so ``status`` and the
benchmark read the breakdown of the running process, not of a hot loop. Recording is a deque append
(about 0.1 µs); sorting happens once per stats period, off the send path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from hip3.runtime.percentiles import percentile_floor

__all__ = ["LatencySamples", "latency_stats"]


def latency_stats(name: str, samples_ns: Iterable[int]) -> dict[str, int]:
    """``<name>_p50_us``/``_p90_us``/``_p99_us``/``_max_us`` and ``<name>_samples`` of ``samples_ns``."""
    s = sorted(samples_ns)
    n = len(s)
    if not n:
        return {}
    return {f"{name}_p50_us": percentile_floor(s, 50) // 1000, f"{name}_p90_us": percentile_floor(s, 90) // 1000,
            f"{name}_p99_us": percentile_floor(s, 99) // 1000, f"{name}_max_us": s[-1] // 1000, f"{name}_samples": n}


class LatencySamples:
    """Bounded samples (ns) per stage name; ``summary()`` gives whole-µs percentiles."""

    __slots__ = ("_maxlen", "_samples")

    def __init__(self, maxlen: int = 4096) -> None:
        self._maxlen = maxlen
        self._samples: dict[str, deque[int]] = {}

    def add(self, stage: str, ns: int) -> None:
        q = self._samples.get(stage)
        if q is None:
            q = self._samples[stage] = deque(maxlen=self._maxlen)
        q.append(ns)

    def clear(self) -> None:
        self._samples.clear()

    def summary(self) -> dict[str, int]:
        """``{"<stage>_p50_us": ..., "<stage>_p90_us", "_p99_us", "_max_us", "_n"}`` for every stage."""
        out: dict[str, int] = {}
        for stage, q in self._samples.items():
            if not q:
                continue
            s = sorted(q)
            n = len(s)
            out[f"{stage}_p50_us"] = percentile_floor(s, 50) // 1000
            out[f"{stage}_p90_us"] = percentile_floor(s, 90) // 1000
            out[f"{stage}_p99_us"] = percentile_floor(s, 99) // 1000
            out[f"{stage}_max_us"] = s[-1] // 1000
            out[f"{stage}_n"] = n
        return out

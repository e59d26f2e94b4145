"""The exchange's clock as seen from this host: an offset estimated from the exchange's own timestamps.

Why it matters: the exchange checks time in three places a taker cannot avoid. A nonce must lie within
(T − 2 days, T + 1 day) of its block time T; an action carrying ``expiresAfter`` is refused once T passes
it; ``scheduleCancel`` must be at least 5 s ahead of T. hip3 signs every order with ``expiresAfter`` a few
seconds ahead, so a host clock 10 s behind the exchange makes every action arrive already expired: no
entry, no flatten and no hard-stop order would ever execute, and a position would stay open. A host clock
ahead makes ``expiresAfter`` too late: an order hip3 gave up on after its local timeout could still
execute. So hip3 measures the offset, signs with the exchange's time (nonce, ``expiresAfter``,
``scheduleCancel``) and refuses entries while the host is off by more than ``[clock] max_skew_ms``.

How it is measured (``ClockOffsetEstimator``, in the feed): every exchange timestamp hip3 receives (a
bbo's ``time``, a fill's ``time``, an order update's ``statusTimestamp``) was stamped before its frame
left the exchange, so ``exchange_ms − receive_time`` is a LOWER bound of "exchange clock − our clock"
(short of it by that frame's one-way latency). It is taken against the monotonic clock: immune to steps of
the host's wall clock, and comparable across the processes of one host. Per bucket of ``bucket_ms`` the
highest lower bound is kept (the least-delayed frame); the estimate is the median of the last ``buckets``
buckets' maxima, so one bogus timestamp moves one bucket, not the estimate, and a sample further than a
day from the host's time is dropped and counted. The host's skew (exchange − wall) is evaluated when it is
used, so a step of the wall clock shows at once.

Round trips (a REST answer's ``time`` between send and receive) would give upper bounds too, but whether
``clearinghouseState.time`` is the query's time or the last block's (which can precede the request) is
not documented, so they are not used: only the one-sided bounds above, which hold whatever the stamp is.
The cost: the estimate reads the exchange as late by the smallest one-way latency (tens to a few hundred
ms on the real exchange, well under the default bound); for ``expiresAfter`` that errs on the safe side.

``ExchangeClock`` (hip3.messages) carries the estimate from the feed to the executor (signing) and the
detector (entries); ``ExchangeTime`` is the consumer's side.
"""

from __future__ import annotations

from collections import deque
from typing import Annotated

import msgspec

from hip3.messages import ExchangeClock

__all__ = ["ClockOffsetEstimator", "ClockParams", "ExchangeTime", "skew_problem"]

_MS = 1_000_000
# A timestamp further than this from the host's clock is not a clock offset but a bad value (a test
# frame's ``time: 1``, a corrupted field): dropped and counted, never folded into the estimate.
MAX_PLAUSIBLE_SKEW_MS = 86_400_000


class ClockParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[clock]``: how far the host's clock may be from the exchange's before entries are refused.

    Beyond ``max_skew_ms`` (either way) the detector and the executor refuse entries, saying the measured
    offset; orders are signed with the exchange's time whatever the offset, so flattens and the hard stop
    still go out. Fix the host's time sync (NTP) to trade again.
    """

    max_skew_ms: Annotated[int, msgspec.Meta(ge=50, le=600_000)] = 2000


class ClockOffsetEstimator:
    """Exchange time minus monotonic time, in ms, from exchange timestamps (see the module docstring).

    ``add`` is called on the feed's receive path (a few integer operations, no allocation besides the
    integers); ``set_reference`` gives the wall/monotonic relation used to drop implausible samples and
    to report the skew.
    """

    __slots__ = ("_bucket_ns", "_cur_max", "_cur_start_ns", "_hi", "_lo", "_maxima", "_wall_minus_mono_ms",
                 "last_sample_ns", "rejected", "samples")

    def __init__(self, bucket_ms: int = 2000, buckets: int = 15) -> None:
        if bucket_ms <= 0 or buckets <= 0:
            raise ValueError("bucket_ms and buckets must be positive")
        self._bucket_ns = bucket_ms * _MS
        self._cur_max: int | None = None
        self._cur_start_ns = 0
        self._maxima: deque[int] = deque(maxlen=buckets)
        self._wall_minus_mono_ms: int | None = None
        self._lo = 1  # plausible lower bounds: [_lo, _hi] (no reference yet: any positive exchange time)
        self._hi = 1 << 62
        self.samples = 0
        self.rejected = 0
        self.last_sample_ns = 0

    def set_reference(self, now_mono_ns: int, now_wall_ns: int) -> None:
        """The host's wall clock minus its monotonic clock, now (call at start and periodically)."""
        ref = self._wall_minus_mono_ms = (now_wall_ns - now_mono_ns) // _MS
        self._lo = ref - MAX_PLAUSIBLE_SKEW_MS
        self._hi = ref + MAX_PLAUSIBLE_SKEW_MS

    def add(self, exchange_ms: int, recv_mono_ns: int) -> bool:
        """One exchange timestamp and the monotonic time its frame was received. False if dropped."""
        lo = exchange_ms - recv_mono_ns // 1_000_000
        if exchange_ms <= 0 or not self._lo <= lo <= self._hi:
            self.rejected += 1
            return False
        if recv_mono_ns - self._cur_start_ns >= self._bucket_ns:
            if self._cur_max is not None:
                self._maxima.append(self._cur_max)
            self._cur_max = lo
            self._cur_start_ns = recv_mono_ns
        elif self._cur_max is None or lo > self._cur_max:
            self._cur_max = lo
        self.samples += 1
        self.last_sample_ns = recv_mono_ns
        return True

    def offset_mono_ms(self) -> int | None:
        """Exchange ms minus monotonic ms (None before the first sample): the median of bucket maxima."""
        vals = list(self._maxima)
        if self._cur_max is not None:
            vals.append(self._cur_max)
        if not vals:
            return None
        vals.sort()
        return vals[len(vals) // 2]

    def skew_ms(self, now_mono_ns: int, now_wall_ns: int) -> int | None:
        """Exchange time minus the host's wall time, now (positive: the host is behind)."""
        off = self.offset_mono_ms()
        return None if off is None else off + now_mono_ns // _MS - now_wall_ns // _MS

    def message(self, now_mono_ns: int, now_wall_ns: int) -> ExchangeClock | None:
        """The bus message for the current estimate (None before the first sample)."""
        off = self.offset_mono_ms()
        if off is None:
            return None
        return ExchangeClock(
            offset_mono_ms=off,
            skew_ms=off + now_mono_ns // _MS - now_wall_ns // _MS,
            samples=self.samples,
            last_sample_age_ms=max(0, (now_mono_ns - self.last_sample_ns) // _MS),
        )


def skew_problem(skew_ms: int, max_skew_ms: int) -> str:
    """The one line that refuses entries for a clock beyond the bound ("" when within it)."""
    if abs(skew_ms) <= max_skew_ms:
        return ""
    side = "behind" if skew_ms > 0 else "ahead of"
    return (f"host clock {abs(skew_ms)} ms {side} the exchange (measured offset exchange-host {skew_ms:+d} ms, "
            f"bound {max_skew_ms} ms): fix the host's time sync (NTP); orders are signed with the exchange's "
            f"time, so exits and the hard stop still go out")


class ExchangeTime:
    """The consumer's side of ``ExchangeClock``: the exchange's time from the monotonic clock."""

    __slots__ = ("last", "offset_mono_ms")

    def __init__(self) -> None:
        self.offset_mono_ms: int | None = None
        self.last: ExchangeClock | None = None

    def on_clock(self, msg: ExchangeClock) -> None:
        self.last = msg
        self.offset_mono_ms = msg.offset_mono_ms

    def skew_ms(self, now_mono_ns: int, now_wall_ns: int) -> int | None:
        """Exchange time minus the host's wall time, now (None until measured)."""
        off = self.offset_mono_ms
        return None if off is None else off + now_mono_ns // _MS - now_wall_ns // _MS

    def now_ms(self, now_mono_ns: int, now_wall_ns: int) -> int:
        """The exchange's time now; the host's wall time until the offset is measured."""
        off = self.offset_mono_ms
        return now_wall_ns // _MS if off is None else off + now_mono_ns // _MS

    def mono_ns_of(self, exchange_ms: int, now_mono_ns: int, now_wall_ms: int) -> int:
        """The monotonic time of an exchange timestamp (a fill's ``time``), never later than now: through the
        measured offset, or the host's wall clock until it is measured. A host clock off by the skew bound
        would otherwise move every hold timer that starts at a fill by as much."""
        off = self.offset_mono_ms
        if off is None:
            return now_mono_ns - max(0, now_wall_ms - exchange_ms) * _MS
        return min(now_mono_ns, (exchange_ms - off) * _MS)

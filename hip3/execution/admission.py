"""What the executor may send now, and what it refuses at intake: one admission mechanism for the
exchange's two budgets and the executor's own capacity, with one order of priority: cancels, then
reduce-only orders (flattens, the hard stop), then the dead man's switch, then entries.

Exchange behaviour and incidents it guards against:

* The address request budget (``userRateLimit``) [DOCS]: an address may send one action request per USDC
  it has traded since it was created, plus an initial 10,000; a batch of n orders or cancels counts n.
  Over it, the exchange still lets one request through every 10 s, and cancels have the larger limit
  ``min(cap + 100,000, 2 × cap)`` so that a throttled account can still cancel. Entries stop while
  fewer than ``request_budget_reserve`` requests would remain after them, so a run of entries can never
  leave the flattens to that one-per-10-s trickle. The budget is read from the exchange (the position
  tracker publishes ``RequestBudgetReading``) and what the executor sent since that read was asked for
  is added on top; a "Too many cumulative requests sent (A > B)" refusal is a fresh reading too.
  Entries wait for the first reading, and stop again while the latest is older than
  ``request_budget_max_age_polls`` polls: the executor counts only its own requests, and another client
  of the same address (the app, a second bot) spends the same budget.
* The WebSocket message budget, 2,000 client messages per rolling minute per IP [DOCS]. Found by
  ``bench.executor``: at a few hundred entries a second each entry left in its own post, the minute's
  budget was gone within a second, and then nothing, flattens included, could leave for up to a minute
  (offered 5,000 entries/s: none sent, and none of 15 flattens). Entry posts now draw from a token
  bucket (``PostPacer``) that leaves ``priority_posts_reserve`` messages of every rolling minute to
  everything else; under load entries wait for a token and leave in fuller batches, so the rate levels
  off instead of collapsing. The idle path is unchanged: with tokens left, an entry leaves at once.
* Overload of the executor itself: the core sheds an entry at intake (before the gates, without a log
  line of its own) when its market already has one pending, when it expired on the way, when the
  request budget is low, or when ``entry_intake_queue_limit`` accepted entries already wait for a post.
  Gating and logging each refused intent cost about 70 µs: 10,000 intents a second took 70 % of a CPU.
* Whole-request refusals: after one, nothing is posted for 0.5 s, doubling to 10 s until an action is
  accepted (``RefusalBackoff``; a refusing exchange got about 60 retries a second before).

Pure: every method takes the time (``now_ns`` monotonic, ``now_ms`` wall clock); no clock, no I/O.
"""

from __future__ import annotations

from collections import Counter, deque
from decimal import Decimal

from hip3.execution.batch import UNLIMITED, BatchLimits
from hip3.execution.deadman import Note
from hip3.execution.params import ExecutorParams
from hip3.hyperliquid.errors import parse_rate_limit_error
from hip3.messages import RequestBudgetReading

__all__ = ["Admission", "LogBudget", "PostPacer", "RefusalBackoff", "RequestBudget"]

# ---- the exchange's limits [DOCS: "Rate limits and user limits"] ----
CANCEL_EXTRA_REQUESTS = 100_000  # cancels: min(cap + this, 2 × cap)
THROTTLED_EVERY_NS = 10_000_000_000  # over the budget: one request every 10 s
WS_MESSAGES_PER_MIN = 2000  # client messages per rolling minute, every connection of the IP
_WS_PING_RESERVE = 10  # what ``WsClient.post`` keeps of that minute for pings

# ---- readings of the exchange's rules that no source states [UNVERIFIED]: change here after the first
# live session (the simulator models the same readings, ``hip3.sim.limits``) ----
# Over the budget, the one request per 10 s is taken to be one order or cancel (a batch of n counts n).
THROTTLED_REQUESTS = 1
# ``nRequestsSurplus`` (bought with reserveRequestWeight) is taken to add to the cap.
SURPLUS_ADDS_TO_CAP = True
# ``scheduleCancel`` is taken to count as an ordinary action, not as a cancel.
# A read may be served from a state slightly behind the exchange's: requests answered this long before the
# read was asked for are counted on top of it as well (twice, if it did hold them: the safe side).
READ_LAG_MS = 250

_MAX_MARKS = 4096  # answer marks kept between readings (older ones merge into the next: overcounting)


class RequestBudget:
    """The address request budget: the latest reading plus this executor's own requests that it may not
    hold yet. A request the exchange answered before the read was asked for is in the read; one still in
    flight then, or sent after, is added on top. A post that timed out counts as answered at its timeout
    (its ``expiresAfter`` has passed by then: it can no longer reach the exchange's count later)."""

    __slots__ = ("_base", "_cap", "_marks", "_resolved", "_sent", "_surplus", "_throttled_ns", "_used_read",
                 "cum_vlm_usd", "known", "read_ms")

    def __init__(self) -> None:
        self.known = False
        self.cum_vlm_usd = Decimal(0)
        self.read_ms = 0  # wall ms the latest reading was asked for
        self._used_read = 0
        self._cap = 0
        self._surplus = 0
        self._sent = 0  # requests this executor sent, ever
        self._resolved = 0  # of those, answered (or timed out)
        self._base = 0  # of those, the ones the latest reading holds
        self._marks: deque[tuple[int, int]] = deque()  # (wall ms of an answer, ``_resolved`` after it)
        self._throttled_ns = -THROTTLED_EVERY_NS  # the last request sent over the budget (monotonic)

    def on_reading(self, r: RequestBudgetReading) -> bool:
        """Apply a reading; False (ignored) for one asked for before the latest, or with nonsense in it."""
        if r.requested_ms < self.read_ms or r.n_requests_used < 0 or r.n_requests_cap < 0:
            return False
        self.known = True
        self.read_ms = r.requested_ms
        self.cum_vlm_usd = r.cum_vlm_usd
        self._used_read = r.n_requests_used
        self._cap = r.n_requests_cap
        self._surplus = max(0, r.n_requests_surplus) if SURPLUS_ADDS_TO_CAP else 0
        marks = self._marks
        cutoff = r.requested_ms - READ_LAG_MS
        base = self._base
        while marks and marks[0][0] < cutoff:
            base = marks.popleft()[1]
        self._base = base
        return True

    def on_rate_limit_error(self, text: str, n: int, now_ns: int) -> bool:
        """"Too many cumulative requests sent (A > B)" for a request of ``n`` (already ``resolve``d): the
        exchange's count is A − n and its cap B now, and its one-per-10-s allowance was not free (the next
        is waited for from now). False if the text is not that refusal."""
        parsed = parse_rate_limit_error(text)
        if parsed is None:
            return False
        would_be, cap = parsed
        self._throttled_ns = max(self._throttled_ns, now_ns)
        self.known = True
        self._used_read = max(0, would_be - n)
        self._cap = cap
        self._surplus = 0
        self._marks.clear()
        self._base = self._resolved
        return True

    def charge(self, n: int, now_ns: int, *, throttled: bool) -> None:
        """``n`` requests were written (``throttled``: over the budget, the one-per-10-s allowance)."""
        self._sent += n
        if throttled:
            self._throttled_ns = max(self._throttled_ns, now_ns)

    def resolve(self, n: int, now_ms: int) -> None:
        """A post of ``n`` requests was answered (or timed out) at wall time ``now_ms``."""
        marks = self._marks
        self._resolved += n
        marks.append((now_ms, self._resolved))
        if len(marks) > _MAX_MARKS:
            marks.popleft()

    @property
    def used(self) -> int:
        """Requests used by the exchange's count, estimated: the reading plus what it may not hold yet."""
        return self._used_read + self._sent - self._base

    @property
    def cap(self) -> int:
        return self._cap + self._surplus

    @property
    def cancel_cap(self) -> int:
        return min(self._cap + CANCEL_EXTRA_REQUESTS, 2 * self._cap) + self._surplus

    def room_orders(self) -> int:
        return self.cap - self.used

    def room_cancels(self) -> int:
        return self.cancel_cap - self.used

    def allowance_free(self, now_ns: int) -> bool:
        """Over the budget: is the one-request-per-10-s allowance free now?"""
        return now_ns >= self.allowance_free_ns

    @property
    def allowance_free_ns(self) -> int:
        return self._throttled_ns + THROTTLED_EVERY_NS


class PostPacer:
    """Token bucket for entry posts: ``burst`` tokens, refilled at ``rate_per_s``. In any window of T
    seconds entries take at most ``burst + rate × T`` posts, so every rolling minute keeps the rest of the
    WebSocket budget for everything else."""

    __slots__ = ("_last_ns", "_tokens", "burst", "rate_per_ns")

    def __init__(self, burst: int, rate_per_s: float, now_ns: int = 0) -> None:
        self.burst = float(burst)
        self.rate_per_ns = rate_per_s / 1e9
        self._tokens = float(burst)
        self._last_ns = now_ns

    def _refill(self, now_ns: int) -> float:
        if now_ns > self._last_ns:
            self._tokens = min(self.burst, self._tokens + (now_ns - self._last_ns) * self.rate_per_ns)
            self._last_ns = now_ns
        return self._tokens

    def ready(self, now_ns: int) -> bool:
        return self._refill(now_ns) >= 1.0

    def take(self, now_ns: int) -> None:
        """Spend one token (an entry post); never below zero."""
        self._tokens = max(0.0, self._refill(now_ns) - 1.0)

    def next_ns(self, now_ns: int) -> int:
        """When a token is there (``now_ns`` if now)."""
        missing = 1.0 - self._refill(now_ns)
        return now_ns if missing <= 0 else now_ns + int(missing / self.rate_per_ns) + 1

    @property
    def tokens(self) -> float:
        return self._tokens


class RefusalBackoff:
    """After a whole action refused by the exchange: nothing posted for 0.5 s, doubling per refusal in a
    row up to 10 s; the next accepted action resets it."""

    __slots__ = ("base_ms", "max_ms", "refusals", "until_ns")

    def __init__(self, base_ms: int = 500, max_ms: int = 10_000) -> None:
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.refusals = 0
        self.until_ns = 0

    def on_refused(self, now_ns: int) -> int:
        """One more refusal in a row; returns the pause in ms."""
        self.refusals += 1
        delay_ms: int = min(self.max_ms, self.base_ms << min(self.refusals - 1, 16))
        self.until_ns = now_ns + delay_ms * 1_000_000
        return delay_ms

    def on_accepted(self) -> None:
        self.refusals = 0

    def blocked(self, now_ns: int) -> bool:
        return now_ns < self.until_ns


class LogBudget:
    """At most ``per_s`` log lines a second (a token bucket); the lines over it are counted by key."""

    __slots__ = ("_pacer", "suppressed")

    def __init__(self, per_s: int) -> None:
        self._pacer = PostPacer(per_s, per_s)
        self.suppressed: Counter[str] = Counter()

    def allow(self, key: str, now_ns: int) -> bool:
        if self._pacer.ready(now_ns):
            self._pacer.take(now_ns)
            return True
        self.suppressed[key] += 1
        return False

    def take_suppressed(self) -> dict[str, int]:
        out = dict(self.suppressed)
        self.suppressed.clear()
        return out


class Admission:
    """The executor's admission: the request budget, the entry post pacer, the refusal backoff, intake
    shedding. The core asks it for each batch's ``limits`` and tells it what was sent (``on_sent``)."""

    def __init__(self, params: ExecutorParams, now_ns: int = 0) -> None:
        self.params = params
        self.reserve = params.request_budget_reserve
        self.budget = RequestBudget()
        rate = (WS_MESSAGES_PER_MIN - _WS_PING_RESERVE - params.priority_posts_reserve - params.entry_posts_burst) / 60
        self.pacer = PostPacer(params.entry_posts_burst, rate, now_ns)
        self.backoff = RefusalBackoff()
        self.shed: Counter[str] = Counter()  # entries shed at intake since the last summary, by reason
        self._entries_state = ""  # why entries are refused for the budget ("" = they are not): for transitions
        self.max_read_age_ms = params.request_budget_poll_ms * params.request_budget_max_age_polls
        self.reading_age_ms = -1  # the latest reading's age at the last ``check_reading_age`` (-1: none yet)
        self.reading_stale = False  # older than ``max_read_age_ms``: entries are refused until a new one

    # ------------------------------------------------------------------ decisions

    def limits(self, now_ns: int) -> BatchLimits:
        """What the next post may carry now."""
        if self.backoff.blocked(now_ns):
            return BatchLimits(0, 0, 0)
        entries_ok = self.pacer.ready(now_ns)
        b = self.budget
        if not b.known:  # intake refuses entries until the first reading; priority traffic is not held
            return BatchLimits(UNLIMITED, UNLIMITED, UNLIMITED if entries_ok else 0)
        allowance = THROTTLED_REQUESTS if b.allowance_free(now_ns) else 0
        room_c = b.room_cancels()
        room = b.room_orders()
        cancels = room_c if room_c > 0 else allowance
        if room > 0:
            entries_ok = entries_ok and not self.reading_stale
            return BatchLimits(cancels, room, max(0, room - self.reserve) if entries_ok else 0)
        return BatchLimits(cancels, allowance, 0)

    def entry_refusal(self, now_ns: int, queued_new: int) -> str:
        """Why an entry must be refused at intake ("" if it may go on to the gates): the exchange backoff,
        the request budget (unknown, or low: flattens keep the reserve), or a full queue (overload)."""
        if self.backoff.blocked(now_ns):
            return "ExchangeBackoff"
        budget = self._budget_refusal()
        if budget:
            return budget
        if queued_new >= self.params.entry_intake_queue_limit:
            return "Overloaded"
        return ""

    def _budget_refusal(self) -> str:
        """Why the request budget refuses entries ("" if it does not): not read yet, its reading too old,
        or too little left above the flattens' reserve."""
        b = self.budget
        if not b.known:
            return "RequestBudgetUnknown"
        if self.reading_stale:
            return "RequestBudgetStale"
        if b.room_orders() - 1 < self.reserve:
            return "RequestBudgetLow"
        return ""

    def may_send_other(self, now_ns: int) -> bool:
        """May the dead man's switch be re-armed now? Not during a backoff, and only above the reserve (it
        protects resting orders, which a taker rarely has: flattens come first)."""
        if self.backoff.blocked(now_ns):
            return False
        b = self.budget
        return not b.known or b.room_orders() - 1 >= self.reserve

    def next_change_ns(self, now_ns: int) -> int | None:
        """The next time ``limits`` can allow more than now: the backoff's end, the pacer's next token, the
        over-budget allowance coming free. None if nothing is waiting on time (a low budget waits for a
        reading; queued entries then expire on the actor's tick)."""
        if self.backoff.blocked(now_ns):
            return self.backoff.until_ns
        times = []
        if not self.pacer.ready(now_ns):
            times.append(self.pacer.next_ns(now_ns))
        b = self.budget
        if b.known and b.room_orders() <= 0 and not b.allowance_free(now_ns):
            times.append(b.allowance_free_ns)
        return min(times) if times else None

    # ------------------------------------------------------------------ what happened

    def on_sent(self, n: int, *, cancels: bool, entries: bool, now_ns: int) -> None:
        """A post of ``n`` orders (or ``cancels``) was written; ``entries``: it carried new orders."""
        b = self.budget
        throttled = b.known and (b.room_cancels() if cancels else b.room_orders()) < n
        b.charge(n, now_ns, throttled=throttled)
        if entries or self.pacer.ready(now_ns):  # priority posts take a token when there is one
            self.pacer.take(now_ns)

    def on_other_sent(self, now_ns: int) -> None:
        """A non-order action (the dead man's switch) was written: one request."""
        self.on_sent(1, cancels=False, entries=False, now_ns=now_ns)

    def on_reading(self, reading: RequestBudgetReading) -> bool:
        return self.budget.on_reading(reading)

    def check_reading_age(self, now_ms: int) -> None:
        """Once a second (wall clock, like the reading's time): is the latest reading too old to trust for
        entries? A reading delivered as state to a restarted executor is judged by when it was read, not
        when it arrived. A budget known only from a rate-limit refusal (no reading yet) is not aged."""
        b = self.budget
        if not b.known or not b.read_ms:
            self.reading_age_ms, self.reading_stale = -1, False
            return
        self.reading_age_ms = max(0, now_ms - b.read_ms)
        self.reading_stale = self.reading_age_ms > self.max_read_age_ms

    def on_accepted(self) -> None:
        self.backoff.on_accepted()

    def count_shed(self, reason: str) -> None:
        self.shed[reason] += 1

    def take_shed(self) -> dict[str, int]:
        out = dict(self.shed)
        self.shed.clear()
        return out

    def take_notes(self) -> list[Note]:
        """For the log, once a period: the entries shed since the last call (counts by reason), and a change
        in whether the request budget lets entries through."""
        notes = []
        shed = self.take_shed()
        if shed:
            notes.append(Note("entries_shed", ", ".join(f"{k}={v}" for k, v in sorted(shed.items())),
                              warning=False))
        change = self.entries_transition()
        if change is not None:
            b = self.budget
            figures = f"{b.used:,} of {b.cap:,} address requests used, reserve {self.reserve:,}"
            if change[1] == "RequestBudgetStale":
                notes.append(Note("request_budget_stale", f"entries stopped: the latest reading of the address "
                                  f"request budget is {self.reading_age_ms // 1000} s old (limit "
                                  f"{self.max_read_age_ms // 1000} s); requests other clients of the address "
                                  "send are not counted; flattens and cancels go on; entries resume with the "
                                  "next reading"))
            elif change[1]:
                notes.append(Note("request_budget_low", f"entries stopped: {figures}; flattens and cancels keep "
                                  "the reserve"))
            else:
                notes.append(Note("request_budget_ok", f"entries allowed again: {figures}", warning=False))
        return notes

    def entries_transition(self) -> tuple[str, str] | None:
        """``(before, now)`` when the budget's verdict on entries changed since the last call ("" = entries
        allowed, else the reason); None if it did not. For one log line per change, not per intent."""
        now = self._budget_refusal()
        if now == "RequestBudgetUnknown":  # the wait for the first reading is not a change worth a line
            now = ""
        if now == self._entries_state:
            return None
        before, self._entries_state = self._entries_state, now
        return before, now

    def stats(self, now_ms: int) -> dict[str, int]:
        """Levels for the heartbeat (``status`` and the metrics)."""
        b = self.budget
        out = {"request_budget_known": int(b.known), "request_budget_reserve": self.reserve,
               "request_budget_stale": int(self.reading_stale),
               "request_budget_max_age_s": self.max_read_age_ms // 1000, "post_tokens": int(self.pacer.tokens)}
        if b.known:
            out.update(request_budget_used=b.used, request_budget_cap=b.cap, request_budget_cancel_cap=b.cancel_cap,
                       request_budget_cum_vlm_usd=int(b.cum_vlm_usd),
                       request_budget_read_age_s=max(0, now_ms - b.read_ms) // 1000 if b.read_ms else -1)
        return out

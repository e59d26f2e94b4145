"""Alerts to a person, through apprise (webhooks, JSON, Telegram, Discord, Slack, e-mail, ...).

hip3 runs unattended; a hard stop, an actor in a crash loop or a flatten that cannot finish must reach
someone who is not watching the console. This module is the delivery half: a bounded queue and one
sending thread, a per-kind rate limit, and the destinations from the environment. What to say and when is
``hip3.ops.alert_rules`` (it watches the supervisor).

What it guards against:

* **A notifier that stalls trading.** Sending happens on its own thread; the supervisor's loop only
  appends to a bounded queue without waiting (``queue.put_nowait``). A destination that hangs holds only
  that thread, for at most ``send_timeout_s`` a message; when the queue is full new alerts are dropped
  and counted, and the next message that goes out says how many.
* **A flood.** At most ``rate_limit_count`` messages per kind (a kind names the event, and the actor or
  market where it matters) per ``rate_limit_window_s``; the ones held back are counted, and the next
  message of that kind says how many. When the window frees without a new one, the latest held-back
  message is sent then with its count, so the last word about a kind always arrives.
* **Secrets in a message or a log.** Destinations (they hold bot tokens and webhook secrets) come only
  from the environment variable named by ``urls_env``, never from a config file; they are never logged
  (only the services' names are), and every text that leaves (messages and the log lines about failed
  sends) is scrubbed of anything shaped like a private key and of every token of those URLs.
* **Failures that spam the log.** A failed send is logged once per outage (WARNING, with the reason),
  and once when sending works again, with how many were lost meanwhile.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Protocol

import msgspec

from hip3.runtime.logs import Log, redact

__all__ = ["AlertEvent", "AlertsConfig", "AlertsError", "AppriseSender", "Notifier", "RateLimiter", "Scrubber",
           "destinations_from_env"]

LEVELS = ("info", "success", "warning", "critical")
_HEADLINE = {"info": "info", "success": "ok", "warning": "WARNING", "critical": "CRITICAL"}


class AlertsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[alerts]``: messages to a person through apprise. Off by default.

    * ``urls_env``: the environment variable that holds the destinations: one or more apprise URLs
      separated by spaces or new lines (``json://host/path``, ``tgram://TOKEN/CHAT``,
      ``discord://ID/TOKEN``, ``slack://...``, ``mailtos://...``; https://github.com/caronc/apprise/wiki).
      Enabled with this variable unset, empty or holding a URL apprise does not know, the start is refused
      (one line naming the variable, never its value). Config files never hold them.
    * ``label``: shown in every title (default: mode@hostname), to tell several deployments apart.
    * ``rate_limit_count`` messages per kind per ``rate_limit_window_s``; the rest are counted and reported.
    * ``queue_size``: alerts waiting to be sent; beyond it new ones are dropped (and counted).
    * ``send_timeout_s``: the longest one message may take (all destinations together).
    * ``crash_loop_restarts``: an actor restarted this many times within ``[supervisor] restart_period_s``
      is reported (before the restart limit latches the hard stop, which is reported too).
    * ``entries_blocked_s``: entries refused this long (dex unfunded, market terms unknown, clock skew,
      request budget) are reported; once more when they are allowed again.
    * ``feed_down_s``: the feed not READY (disconnected, resubscribing) this long is reported.
    * ``daily_summary``: after 00:00 UTC, the day's trades and PnL net of fees (from the journal).
    * ``session_messages``: a message when hip3 starts (so a wrong destination shows at once) and stops.
    """

    enabled: bool = False
    urls_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Z_][A-Z0-9_]*$")] = "HIP3_ALERT_URLS"
    label: Annotated[str, msgspec.Meta(max_length=64)] = ""
    rate_limit_count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    rate_limit_window_s: Annotated[float, msgspec.Meta(ge=1.0, le=86_400.0)] = 600.0
    queue_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    send_timeout_s: Annotated[float, msgspec.Meta(ge=0.5, le=120.0)] = 10.0
    crash_loop_restarts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    entries_blocked_s: Annotated[float, msgspec.Meta(ge=1.0, le=86_400.0)] = 300.0
    feed_down_s: Annotated[float, msgspec.Meta(ge=1.0, le=3600.0)] = 30.0
    daily_summary: bool = True
    session_messages: bool = True


class AlertsError(Exception):
    """Alerts are enabled but cannot work (no destination, an unknown scheme): one line, never a secret."""


@dataclass(frozen=True)
class AlertEvent:
    """One message. ``key`` is what the rate limit counts by (the kind, or the kind and an actor);
    ``lazy`` computes the text on the sending thread (a summary that reads the journal)."""

    kind: str
    level: str
    title: str
    text: str
    key: str = ""
    lazy: Callable[[], str] | None = None

    @property
    def limit_key(self) -> str:
        return self.key or self.kind


class RateLimiter:
    """At most ``count`` per key in any ``window_s``; the rest are held back and counted. Pure: ``now``
    (seconds, monotonic) comes in."""

    def __init__(self, count: int, window_s: float) -> None:
        self.count = count
        self.window_s = window_s
        self._sent: dict[str, deque[float]] = {}
        self._held: dict[str, tuple[int, AlertEvent]] = {}  # key -> (held back since the last send, the latest)

    def _room(self, key: str, now: float) -> deque[float]:
        sent = self._sent.setdefault(key, deque())
        while sent and now - sent[0] >= self.window_s:
            sent.popleft()
        return sent

    def admit(self, ev: AlertEvent, now: float) -> int | None:
        """None: held back (counted). Else the number held back before it, which its text reports."""
        key = ev.limit_key
        sent = self._room(key, now)
        if len(sent) >= self.count:
            n, _ = self._held.get(key, (0, ev))
            self._held[key] = (n + 1, ev)
            return None
        sent.append(now)
        n, _ = self._held.pop(key, (0, ev))
        return n

    def due(self, now: float) -> list[tuple[AlertEvent, int]]:
        """Held-back messages whose key has room again: (the latest, how many were held back in all)."""
        out = []
        for key in [k for k in self._held if len(self._room(k, now)) < self.count]:
            n, ev = self._held.pop(key)
            self._sent[key].append(now)
            out.append((ev, n))
        return out

    @property
    def held(self) -> int:
        return sum(n for n, _ in self._held.values())


# A token of a destination URL: what a bot token, a webhook id or a password is made of (no dots, so host
# names and IP addresses split into short pieces and stay readable).
_TOKEN = re.compile(r"[A-Za-z0-9_\-~%+]{8,}")


class Scrubber:
    """Removes private-key-shaped hex and every token of the destination URLs from a text."""

    def __init__(self, urls: Sequence[str]) -> None:
        tokens = {t for url in urls for t in _TOKEN.findall(url.split("://", 1)[-1])}
        self._secrets = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))) \
            if tokens else None

    def __call__(self, text: str) -> str:
        text = redact(text)
        return self._secrets.sub("[REDACTED]", text) if self._secrets is not None else text


def destinations_from_env(params: AlertsConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """The destination URLs from the environment variable ``params.urls_env``; ``AlertsError`` if none."""
    e = os.environ if env is None else env
    urls = (e.get(params.urls_env) or "").split()
    if not urls:
        raise AlertsError(f"[alerts] enabled = true but the environment variable {params.urls_env} holds no "
                          "destination (apprise URLs separated by spaces; e.g. json://host/path, tgram://TOKEN/CHAT)")
    return urls


class Sender(Protocol):
    services: tuple[str, ...]

    def send(self, title: str, body: str, level: str) -> str:
        """Deliver one message to every destination; "" when delivered, else why not (may hold secrets:
        the caller scrubs it)."""
        ...


class AppriseSender:
    """Every destination through one ``apprise.Apprise``. Refuses (``AlertsError``) a URL apprise does
    not know, naming its position and scheme only."""

    def __init__(self, urls: Sequence[str], env_name: str, timeout_s: float) -> None:
        import apprise

        # apprise logs through the standard library; without a handler a warning would reach stderr (the
        # operator's terminal) with a URL in it. The reasons come back in each call's result instead.
        lg = logging.getLogger("apprise")
        lg.addHandler(logging.NullHandler())
        lg.propagate = False
        self._apprise = apprise.Apprise()
        self._types = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
                       "warning": apprise.NotifyType.WARNING, "critical": apprise.NotifyType.FAILURE}
        services = []
        for i, url in enumerate(urls, 1):
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
                raise AlertsError(f"{env_name}: destination {i} of {len(urls)} (scheme {scheme!r}) is not a URL "
                                  "apprise can use")
            self._apprise.add(plugin)
            services.append(str(plugin.service_name))
        self.services = tuple(services)
        self.timeout_s = timeout_s

    def send(self, title: str, body: str, level: str) -> str:
        result = self._apprise.notify(body=body, title=title, notify_type=self._types.get(level, "info"),
                                      timeout=self.timeout_s)
        if result:
            return ""
        reasons = [str(entry).split(" - ", 2)[-1] for entry in result.logs()][-3:]
        return "; ".join(reasons) or f"not delivered ({result.status})"


class Notifier:
    """The bounded queue and its sending thread. ``notify`` and ``tick`` never block (the supervisor's
    loop calls them); ``close`` waits at most its timeout for the queue to drain."""

    def __init__(self, params: AlertsConfig, sender: Sender, log: Log, label: str, scrub: Scrubber,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.params = params
        self.sender = sender
        self.log = log
        self.label = label
        self.scrub = scrub
        self.clock = clock
        self.limiter = RateLimiter(params.rate_limit_count, params.rate_limit_window_s)
        self._queue: queue.Queue[tuple[AlertEvent, int, int] | None] = queue.Queue(params.queue_size)
        self._lock = threading.Lock()
        self.dropped = 0  # queue full, since the last message that went out
        self.dropped_total = 0
        self.sent = 0
        self.failed = 0
        self._failed_in_outage = 0
        self._thread = threading.Thread(target=self._run, name="hip3:alerts", daemon=True)
        self._thread.start()

    # ---- the supervisor's side: never blocks ----------------------------------------------------------

    def notify(self, ev: AlertEvent, now_s: float | None = None) -> bool:
        """Queue ``ev`` unless its kind is over the rate limit or the queue is full; True if queued.
        ``now_s``: the caller's monotonic clock (the supervisor's), else this notifier's."""
        held = self.limiter.admit(ev, self.clock() if now_s is None else now_s)
        if held is None:
            self.log.debug("alert_held_back", kind=ev.kind, key=ev.limit_key, title=ev.title)
            return False
        return self._put(ev, held)

    def tick(self, now_s: float | None = None) -> None:
        """Send the held-back messages whose kind has room again (the latest of each, with its count)."""
        for ev, held in self.limiter.due(self.clock() if now_s is None else now_s):
            self._put(ev, held - 1)

    def _put(self, ev: AlertEvent, held: int) -> bool:
        self.log.info("alert", kind=ev.kind, level=ev.level, title=ev.title, text=self.scrub(ev.text)[:500],
                      held_back=held)
        try:
            self._queue.put_nowait((ev, held, time.time_ns() // 1_000_000))
            return True
        except queue.Full:
            with self._lock:
                if self.dropped == 0:
                    self.log.warning("alert_queue_full", size=self.params.queue_size, kind=ev.kind,
                                     note="the destination is slower than the alerts; dropped ones are counted")
                self.dropped += 1
                self.dropped_total += 1
            return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Let the queue drain for at most ``timeout_s``, then leave (the thread is a daemon)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=max(0.01, deadline - time.monotonic()))
                break
            except queue.Full:
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self.log.warning("alerts_not_flushed", waiting=self._queue.qsize(), timeout_s=timeout_s)

    # ---- the sending thread ---------------------------------------------------------------------------

    def compose(self, ev: AlertEvent, held: int, at_ms: int) -> tuple[str, str]:
        """(title, body) as sent: the event, its time, and what was held back, dropped or lost before it."""
        text = ev.text
        if ev.lazy is not None:
            try:
                text = ev.lazy()
            except Exception as e:  # a summary that cannot be computed still says that it could not
                text = f"{ev.text} (could not be computed: {e})".strip()
        notes = []
        if held:
            notes.append(f"{held} more '{ev.kind}' alert{'s' if held > 1 else ''} held back by the rate limit "
                         f"({self.params.rate_limit_count} per {self.params.rate_limit_window_s:g} s) before this one")
        with self._lock:
            dropped, self.dropped = self.dropped, 0
        if dropped:
            notes.append(f"{dropped} alert{'s' if dropped > 1 else ''} dropped: the alert queue was full")
        if self._failed_in_outage:
            notes.append(f"{self._failed_in_outage} alert(s) could not be delivered earlier (see the supervisor log)")
        when = datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        body = "\n".join([text, *(f"({n})" for n in notes), when])
        title = f"hip3 {self.label}: {_HEADLINE.get(ev.level, ev.level)} {ev.title}"
        return self.scrub(title), self.scrub(body)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            ev, held, at_ms = item
            try:
                title, body = self.compose(ev, held, at_ms)
                error = self.sender.send(title, body, ev.level)
            except Exception as e:  # the sending thread never dies: the next alert may get through
                error = f"{type(e).__name__}: {e}"
            if error:
                self.failed += 1
                if self._failed_in_outage == 0:
                    self.log.warning("alert_send_failed", kind=ev.kind, services=list(self.sender.services),
                                     error=self.scrub(error)[:300], note="logged once per outage; later alerts are "
                                     "still tried")
                self._failed_in_outage += 1
                continue
            self.sent += 1
            if self._failed_in_outage:
                self.log.warning("alert_send_recovered", lost=self._failed_in_outage)
                self._failed_in_outage = 0

"""What the supervisor tells a person, and when: the rules over what it already knows.

The supervisor holds the hard-stop latch (and whether the disk kept it), the executor's flatten progress,
every actor's restarts, READY and heartbeat stats, the actors' ``Alert`` messages and the trading
figures. ``AlertRouter.observe`` looks at them once per loop turn (a few attribute reads: nothing here
waits, reads a file or a socket) and hands the events to the ``Notifier`` (``hip3.ops.alerts``):

* **hard stop**: latched (why, what is open), flat again (or flat but for dust a person must close),
  reset; "cannot flatten" from the executor's alerts;
* **the latch not saved** (the disk refused it) and saved again;
* **a crash loop**: an actor restarted ``crash_loop_restarts`` times within the restart period, and the
  restart limit reached;
* **the feed**: markets stale (the feed's own alert, with the markets), not READY for ``feed_down_s``,
  and fresh again;
* **entries blocked** for ``entries_blocked_s`` (the detector's reason: dex unfunded, market terms,
  clock, request budget), and allowed again;
* **every other actor alert** (ownership ledger, journal, dust, positions opened outside hip3, ...);
* **the day**: after 00:00 UTC, the past UTC day's trades and PnL net of fees, from the journal;
* **the session**: started (a wrong destination shows at once) and stopped (what stays open).

Actor alerts the rules above cover from state are not sent twice: ``COVERED`` lists them by the start of
their text (``tests/ops`` checks that each still matches an alert an actor sends).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hip3.account.entry_conditions import ENTRIES_ALLOWED, ENTRIES_BLOCKED_PREFIX
from hip3.messages import PositionClosed
from hip3.ops.alerts import AlertEvent, AppriseSender, Notifier, Scrubber, destinations_from_env
from hip3.runtime.logs import Log

if TYPE_CHECKING:
    from hip3.config import Config
    from hip3.runtime.supervisor_view import SupervisorView

__all__ = ["COVERED", "AlertRouter", "day_summary", "open_alerts"]

_DAY_MS = 86_400_000

# (actor, start of an Alert's text) -> the kind it is sent as; None: a state rule here already says it.
COVERED: dict[tuple[str, str], str | None] = {
    ("executor", "hard stop cannot flatten"): "cannot_flatten",
    ("executor", "hard stop: "): "cannot_flatten",
    ("feed", "feed: stale market data"): "feed",
    ("position_tracker", "entries refused: "): None,  # entries_blocked, once it has lasted
    ("supervisor", "hard stop latched in memory only"): None,  # latch_not_saved
    ("supervisor", "hard stop now written"): None,
    ("*", "restart limit: "): "crash_loop",  # the supervisor's, in the failing actor's name
}
_TITLES = {"cannot_flatten": "cannot flatten", "feed": "stale market data", "crash_loop": "restart limit"}


def open_alerts(cfg: Config, log: Log) -> AlertRouter | None:
    """The router and its notifier when ``[alerts] enabled``; ``AlertsError`` (one line) if the destinations
    are missing or unusable. The variable is removed from the environment: no actor or simulator inherits it."""
    params = cfg.alerts
    if not params.enabled:
        return None
    urls = destinations_from_env(params)
    os.environ.pop(params.urls_env, None)
    sender = AppriseSender(urls, params.urls_env, params.send_timeout_s)
    label = params.label or f"{cfg.mode}@{socket.gethostname()}"
    notifier = Notifier(params, sender, log, label, Scrubber(urls))
    log.info("alerts_on", services=list(sender.services), variable=params.urls_env, label=label)
    return AlertRouter(cfg, notifier)


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class AlertRouter:
    """Watches a ``Supervisor`` once per loop turn (``observe``) and says what a person must hear."""

    def __init__(self, cfg: Config, notifier: Notifier, wall_ms: Callable[[], int] | None = None) -> None:
        self.cfg = cfg
        self.params = cfg.alerts
        self.notifier = notifier
        self.wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._started = False
        self._epoch: int | None = None
        self._flat_epoch = -1
        self._progress: object = None
        self._persisted = True
        self._last_alert: object = None
        self._loop_level: dict[str, int] = {}  # actor -> 0 fine, 1 crash loop said, 2 restart limit said
        self._blocked_since_ns: int | None = None
        self._blocked_said = ""
        self._feed_down_since_ns: int | None = None
        self._feed_said = False
        self._feed_bad_seen = False
        self._day = -1
        self._now_s = 0.0  # the supervisor's monotonic clock at this turn: the rate limit's time

    def _send(self, kind: str, level: str, title: str, text: str, key: str = "",
              lazy: Callable[[], str] | None = None) -> None:
        self.notifier.notify(AlertEvent(kind=kind, level=level, title=title, text=text, key=key, lazy=lazy),
                             self._now_s)

    # ------------------------------------------------------------------ the loop's turn

    def observe(self, sup: SupervisorView, now_ns: int) -> None:
        self._now_s = now_ns / 1e9
        if not self._started:
            self._started = True
            self._session_started(sup)
        self._hard_stop(sup)
        self._actor_alerts(sup)
        self._crash_loops(sup, now_ns)
        self._feed(sup, now_ns)
        self._entries(sup, now_ns)
        self._daily(sup)
        self.notifier.tick(self._now_s)

    def _session_started(self, sup: SupervisorView) -> None:
        st = sup.latch.state
        self._epoch = st.epoch
        self._persisted = sup.latch.persisted
        self._day = self.wall_ms() // _DAY_MS
        if not self.params.session_messages:
            return
        latched = f"; the hard stop is LATCHED: {st.reason}" if st.latched else ""
        self._send("session", "warning" if st.latched else "info", "started",
                   f"hip3 started in {sup.cfg.mode} mode: {_n(len(sup.cfg.markets), 'market')}, "
                   f"{_n(len(sup.slots), 'actor')}, run directory {sup.run_dir}{latched}")

    def _hard_stop(self, sup: SupervisorView) -> None:
        st = sup.latch.state
        if st.epoch != self._epoch:
            self._epoch = st.epoch
            if st.latched:
                snap = sup.trading.snapshot
                open_now = "unknown (no position snapshot yet)" if snap is None else \
                    f"{_n(len(snap.positions), 'position')} and {_n(len(snap.open_orders), 'open order')} of hip3's"
                self._send("hardstop", "critical", "hard stop latched",
                           f"hard stop latched (epoch {st.epoch}): {st.reason}. The executor cancels every order and "
                           f"flattens every position; open now: {open_now}. Entries stay refused until "
                           "`python supervisor.py reset-hardstop`.")
            else:
                self._send("hardstop", "info", "hard stop reset",
                           f"hard stop reset by the operator (epoch {st.epoch}): entries may resume")
        prog = sup.hardstop_progress
        if prog is not None and prog is not self._progress:
            self._progress = prog
            if prog.done and st.latched and prog.epoch > self._flat_epoch:
                self._flat_epoch = prog.epoch
                if prog.dust:
                    self._send("hardstop_flat", "warning", "flat except dust",
                               f"hard stop (epoch {prog.epoch}): no open order; left only dust the exchange refuses to "
                               f"close (below its minimum order value): {', '.join(prog.dust)}; close it by hand")
                else:
                    self._send("hardstop_flat", "success", "flat",
                               f"hard stop (epoch {prog.epoch}): flat, no position and no open order left of hip3's, "
                               f"after {_n(prog.attempts, 'attempt')}")
        persisted = sup.latch.persisted
        if persisted != self._persisted:
            self._persisted = persisted
            if persisted:
                self._send("latch_not_saved", "success", "hard stop saved",
                           f"the hard stop is now written to {sup.latch.path}")
            else:
                self._send("latch_not_saved", "critical", "hard stop NOT SAVED",
                           f"the hard stop is latched in memory only: cannot write {sup.latch.path}: "
                           f"{sup.latch.persist_error}; a restart now would forget it: repair that path")

    def _actor_alerts(self, sup: SupervisorView) -> None:
        alerts = sup.alerts
        new: list[dict[str, Any]] = []
        for a in reversed(alerts):  # the list is bounded; the last one seen marks where the new ones start
            if a is self._last_alert:
                break
            new.append(a)
        if alerts:
            self._last_alert = alerts[-1]
        for a in reversed(new):
            actor, text, level = str(a["actor"]), str(a["text"]), str(a["level"])
            kind: str | None = f"actor:{actor}"
            for (who, prefix), covered in COVERED.items():
                if who in (actor, "*") and text.startswith(prefix):
                    kind = covered
                    break
            if kind is None:
                continue
            if kind == "feed":
                self._feed_said = True
                self._feed_bad_seen = False
            elif kind == "crash_loop":
                self._loop_level[actor] = 2
            level = level if level in ("warning", "critical") else "warning"
            self._send(kind, level, f"{actor}: {_TITLES.get(kind, 'alert')}", text, key=f"{kind}:{actor}")

    def _crash_loops(self, sup: SupervisorView, now_ns: int) -> None:
        """An actor restarted ``crash_loop_restarts`` times within the period, before the restart limit
        (which the supervisor's own alert reports: ``COVERED``). Once per episode: again only after a
        whole period without a restart."""
        sc = self.cfg.supervisor
        for name, slot in sup.slots.items():
            recent = slot.policy.recent(now_ns / 1e9)
            if recent == 0:
                self._loop_level[name] = 0
            if recent < self.params.crash_loop_restarts or self._loop_level.get(name, 0) >= 1:
                continue
            self._loop_level[name] = 1
            why = f"; its last word: {slot.ready_detail}" if slot.ready_detail else ""
            self._send("crash_loop", "warning", f"{name}: crash loop",
                       f"{name} restarted {recent} times within {sc.restart_period_s:g} s (more than "
                       f"{sc.max_restarts} latches the hard stop){why}", key=f"crash_loop:{name}")

    def _feed(self, sup: SupervisorView, now_ns: int) -> None:
        feed = sup.slots.get("feed")
        if feed is None or sup.stopping:
            return
        down = feed.state == "running" and not feed.ready
        stale = int(feed.stats.get("stale_markets", 0))
        if down or stale:
            self._feed_bad_seen = True
        if down:
            if self._feed_down_since_ns is None:
                self._feed_down_since_ns = now_ns
            elif not self._feed_said and now_ns - self._feed_down_since_ns >= self.params.feed_down_s * 1e9:
                self._feed_said = True
                self._send("feed", "warning", "feed not READY",
                           f"the feed has not been READY for {(now_ns - self._feed_down_since_ns) / 1e9:.0f} s: "
                           f"{feed.ready_detail or 'no detail'}; no market data, so no entry and no mark-based exit")
            return
        self._feed_down_since_ns = None
        if self._feed_said and self._feed_bad_seen and feed.ready and not stale:
            self._feed_said = False
            self._feed_bad_seen = False
            self._send("feed", "success", "feed fresh again", "the feed is READY and every market is fresh again")

    def _entries(self, sup: SupervisorView, now_ns: int) -> None:
        det = sup.slots.get("detector")
        if det is None or sup.cfg.mode == "observe" or sup.stopping:
            return
        if sup.latch.state.latched or det.state != "running":
            self._blocked_since_ns = None  # the hard stop and the actor's own failures are said elsewhere
            return
        allowed = det.ready and det.ready_detail == ENTRIES_ALLOWED
        if allowed:
            if self._blocked_said:
                blocked_s = 0.0 if self._blocked_since_ns is None else (now_ns - self._blocked_since_ns) / 1e9
                self._send("entries_blocked", "success", "entries allowed again",
                           f"entries are allowed again after {blocked_s / 60:.1f} min (they were blocked: "
                           f"{self._blocked_said})")
            self._blocked_since_ns = None
            self._blocked_said = ""
            return
        if self._blocked_since_ns is None:
            self._blocked_since_ns = now_ns
        reason = det.ready_detail.removeprefix(ENTRIES_BLOCKED_PREFIX) if det.ready else \
            f"the detector is not READY ({det.ready_detail})"
        if not self._blocked_said and now_ns - self._blocked_since_ns >= self.params.entries_blocked_s * 1e9:
            self._blocked_said = reason
            self._send("entries_blocked", "warning", "entries blocked",
                       f"no entry for {(now_ns - self._blocked_since_ns) / 60e9:.1f} min: {reason}")

    def _daily(self, sup: SupervisorView) -> None:
        if not self.params.daily_summary:
            return
        day = self.wall_ms() // _DAY_MS
        if day == self._day:
            return
        past, self._day = self._day, day
        start_ms, end_ms = past * _DAY_MS, (past + 1) * _DAY_MS
        # In memory now (cheap), the journal on the sending thread (it has every session of the day).
        closes = [c for c in sup.trading.closes if start_ms <= c.closed_ms < end_ms]
        run_dir = sup.run_dir
        day_text = time.strftime("%Y-%m-%d", time.gmtime(start_ms / 1000))
        self._send("daily_pnl", "info", f"day {day_text} (UTC)", f"day {day_text} (UTC): summary",
                   lazy=lambda: day_summary(run_dir, start_ms, end_ms, closes))

    # ------------------------------------------------------------------ the end

    def close(self, sup: SupervisorView, timeout_s: float = 5.0) -> None:
        """The session's last message (what stays open at the exchange), then drain the queue (bounded)."""
        if self.params.session_messages and self._started:
            from hip3.ui.stopping import format_leftovers

            st = sup.status()
            t = st.get("trading") or {}
            left = format_leftovers(st.get("left"), hint=False)
            level = "warning" if st["hard_stop"]["latched"] or (st.get("left") or {}).get("positions") else "info"
            self._send("session", level, "stopped",
                       f"hip3 stopped after {st['uptime_s'] / 60:.1f} min: {_n(int(t.get('trades', 0)), 'trade')}, "
                       f"realised PnL {float(t.get('realized_pnl_usd', 0.0)):+.2f} USD "
                       f"(fees {float(t.get('fees_usd', 0.0)):.2f}); " + "; ".join(left))
        self.notifier.close(timeout_s)


def day_summary(run_dir: Path, start_ms: int, end_ms: int, fallback: list[PositionClosed]) -> str:
    """The day's trades from the journal (fees from the exchange's fills, every session of the day), or,
    without a readable journal, from the closes this supervisor saw."""
    from hip3.journal.report import closed_trades, open_readonly
    from hip3.journal.schema import JOURNAL_FILE

    day = time.strftime("%Y-%m-%d", time.gmtime(start_ms / 1000))
    try:
        conn = open_readonly(run_dir / JOURNAL_FILE)
        try:
            rows = [(t.pnl, t.fees) for t in closed_trades(conn, start_ms) if t.closed_ms < end_ms]
        finally:
            conn.close()
        source = "journal"
    except (OSError, sqlite3.Error) as e:
        rows = [(c.pnl_usd, c.fees_usd) for c in fallback]
        source = f"this session's closes only (journal unreadable: {e})"
    pnl = sum((p for p, _ in rows), Decimal(0))
    fees = sum((f for _, f in rows), Decimal(0))
    wins = sum(1 for p, f in rows if p - f > 0)
    win_rate = f", {wins / len(rows) * 100:.0f} % won" if rows else ""
    return (f"day {day} (UTC): {_n(len(rows), 'trade')}{win_rate}; PnL {float(pnl):+.2f} USD before fees, "
            f"fees {float(fees):.2f}, net {float(pnl - fees):+.2f} USD ({source}). "
            "`python supervisor.py report --since` for the detail.")


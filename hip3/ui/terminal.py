"""The console of ``start`` on a terminal: readable, coloured lines, rendered off the supervisor's loop.

What the supervisor's loop does for the console is one non-blocking ``put`` per trade or shown log
record into a bounded queue. One daemon thread renders (``hip3.ui.console``) and writes, so a paused or
slow terminal (Ctrl-S, a congested SSH session) can delay the console, never the heartbeat checks,
restarts or the hard-stop rebroadcast; if the queue fills, lines are dropped and counted, and the count
is printed when the terminal drains. The same thread follows the actors' log files for their warnings
(``hip3.ui.logtail``) and prints the summary the loop hands it every ``SUMMARY_INTERVAL_S``.

The JSON log files are unchanged; ``--log-format json`` keeps the JSON lines on the terminal instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from hip3.runtime.logs import record_dict
from hip3.ui.console import SHOWN_INFO, end_texts, log_text, summary_text, trade_text
from hip3.ui.logtail import LogTail

__all__ = ["SUMMARY_INTERVAL_S", "Terminal", "open_terminal"]

SUMMARY_INTERVAL_S = 60.0
QUEUE_MAX = 2_000
TICK_S = 0.2  # how often the thread collects, reads the actors' logs and prints
HOLD_S = 0.3  # lines wait this long, so that lines from all processes print in time order


class _Handler(logging.Handler):
    """The supervisor process's log records that the console shows, queued as dicts."""

    def __init__(self, term: Terminal) -> None:
        super().__init__(logging.DEBUG)
        self.term = term

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and record.getMessage() not in SHOWN_INFO:
            return
        try:
            self.term.put(("log", record_dict(record)))
        except Exception:
            self.handleError(record)


class Terminal:
    """The console: ``start()`` its thread, feed it, ``close()`` it; then ``print`` the end of session."""

    def __init__(self, console: Console, logs_dir: Path | None, summary_interval_s: float = SUMMARY_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.tail = LogTail(logs_dir) if logs_dir is not None else None
        self.summary_interval_s = summary_interval_s
        self._clock = clock
        self._next_summary = clock() + summary_interval_s
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue(QUEUE_MAX)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hip3:console", daemon=True)
        self.handler = _Handler(self)
        self.dropped = 0
        self._dropped_told = 0
        self.session_pnl_usd = 0.0
        self._held: list[tuple[float, int, str, Any]] = []
        self._seq = 0

    # ---- feeding (any thread; never blocks) ---------------------------------------------------------

    def put(self, item: tuple[str, Any]) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def on_trade(self, rec: dict[str, Any]) -> None:
        """A ``hip3.ui.board.Board`` listener."""
        self.put(("trade", rec))

    def tick(self, status: Callable[[], dict[str, Any]]) -> None:
        """From the supervisor's loop: the summary, every ``summary_interval_s`` (built here, rendered there)."""
        now = self._clock()
        if now >= self._next_summary:
            self._next_summary = now + self.summary_interval_s
            self.put(("summary", status()))

    # ---- the thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _render(self, kind: str, item: Any) -> Text | None:
        if kind == "trade":
            if item.get("kind") == "exit":
                self.session_pnl_usd += float(item.get("pnl_usd") or 0.0)
                return trade_text(item, self.session_pnl_usd)
            return trade_text(item)
        if kind == "log":
            return log_text(item)
        if kind == "summary":
            return summary_text(item)
        return None

    @staticmethod
    def _ts(kind: str, item: Any) -> float:
        """An item's wall-clock time, to print the supervisor's lines and the actors' in one order."""
        if kind == "trade":
            return float(item.get("time_ms") or 0) / 1000
        if kind == "log":
            ts = item.get("ts")
            return float(ts) if isinstance(ts, int | float) else time.time()
        return time.time()

    def _collect(self) -> None:
        """Everything queued, and the actors' new log lines, into the held (time-ordered) buffer."""
        while True:
            try:
                kind, item = self._q.get_nowait()
            except queue.Empty:
                break
            self._held.append((self._ts(kind, item), self._seq, kind, item))
            self._seq += 1
        if self.tail is not None:
            for rec in self.tail.poll():
                self._held.append((self._ts("log", rec), self._seq, "log", rec))
                self._seq += 1

    def _flush(self, upto_s: float) -> None:
        """Print the held items up to ``upto_s`` in time order (later ones wait for the next turn)."""
        self._held.sort(key=lambda x: (x[0], x[1]))
        n = 0
        for ts, _, kind, item in self._held:
            if ts > upto_s:
                break
            n += 1
            text = self._render(kind, item)
            if text is not None:
                self.console.print(text, soft_wrap=True, highlight=False)
        del self._held[:n]
        if self.dropped != self._dropped_told:
            self.console.print(Text(f"({self.dropped - self._dropped_told} console lines dropped: the terminal "
                                    "was too slow; the log files have everything)", style="yellow"))
            self._dropped_told = self.dropped

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self._collect()
                # An actor's line reaches its file and this thread's next read up to a turn later than the
                # supervisor's own line of the same instant: hold lines one turn so both print in order.
                self._flush(time.time() - HOLD_S)
            except Exception as e:  # the console must never take the supervisor down
                self.dropped += 1
                try:
                    self.console.print(Text(f"(console error: {type(e).__name__}: {e})", style="yellow"))
                except Exception:
                    time.sleep(0.5)

    def print_end(self, status: dict[str, Any], left_lines: list[str]) -> None:
        """The end of the session (after ``close``): what happened and what stays open."""
        for text in end_texts(status, left_lines):
            self.console.print(text, soft_wrap=True, highlight=False)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the thread after it printed what is queued (and the actors' last warnings)."""
        logging.getLogger("hip3").removeHandler(self.handler)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self._collect()
            self._flush(float("inf"))


def open_terminal(logs_dir: Path) -> Terminal:
    """The console on this process's stdout, started, with the supervisor's log records routed to it."""
    term = Terminal(Console(highlight=False), logs_dir)
    logging.getLogger("hip3").addHandler(term.handler)
    term.start()
    return term

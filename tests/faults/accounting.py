"""Which journaled orders never reached the exchange simulator, and why (the fault tests' and the soak's
"no order lost"). Moved here from ``bench/soak.py`` so that ``Session.lost_orders`` and the soak use one
race-free check: the journal is read first, then the simulator's order log until every line arrived or
a grace period passed (read the other way round on a trading session, an order journaled between the
two reads counted as lost: a probe flagged 64 of 121 orders, all logged 0.5 s later)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.faults.session import Session

KILLED = "killed_before_frame"    # the executor died (SIGKILL) between the journal line and the frame
DROPPED = "dropped_connection"    # the frame went into a connection the simulator had dropped / was dropping
REFUSED = "refused_before_log"    # refused before the simulator's order log: by the exchange, or by the client
LOST = "lost"                     # none of these: a problem
# A frame leaves microseconds after its journal line; the supervisor sees a death at once (the process
# sentinel) and the executor a reset on its next read. The death or the disconnect that explains a frame
# that never arrived must follow its line within this (generous on a loaded 2-vCPU machine).
SEND_WINDOW_S = 1.0

JournalLine = tuple[int, str, str]  # (epoch ms, intent id, cloid)


def journal_lines(run_dir: Path) -> list[JournalLine]:
    """The executor's sent-intent journal in file order, which is send order (torn lines skipped)."""
    path = run_dir / "sent_intents.log"
    out: list[JournalLine] = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines(keepends=True):
            parts = line.split()
            if len(parts) == 3 and line.endswith("\n") and parts[0].isdigit():
                out.append((int(parts[0]), parts[1], parts[2]))
    return out


def unreceived(s: Session, grace_s: float = 5.0) -> tuple[list[JournalLine], list[JournalLine]]:
    """(every journal line, the lines whose cloid the simulator's order log does not hold). The journal is
    read FIRST, then the order log until every line arrived or ``grace_s`` passed: the session still
    trades and a line written just before the read has its frame on the way. (Reading the order log
    first, as ``Session.lost_orders`` does, counts an order journaled between the two reads as lost: a
    probe calling it in a loop on a trading session flagged 64 of 121 orders, all logged 0.5 s later.)"""
    lines = journal_lines(s.run_dir)
    missing = lines

    def arrived() -> bool:
        nonlocal missing
        got = {c for r in s.order_log() for c in r.get("cloids", [])}
        missing = [e for e in missing if e[2] not in got]
        return not missing

    from tests.faults.session import wait_until  # (session imports this module)

    wait_until(arrived, grace_s, 0.2)
    return lines, missing


def recorder_view(run_dir: Path) -> dict[str, list[str]]:
    """cloid -> the order events hip3 published for it (the recorder's journal: ``submitted`` right after
    the frame was written, ``rejected: <reason>``...). Empty if the database cannot be read. A killed
    recorder misses what was published while it was down: evidence, not proof."""
    path = run_dir / "journal.sqlite"
    if not path.exists():
        return {}
    out: dict[str, list[str]] = {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT order_key, event, reason FROM order_events ORDER BY rec_ns").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    for key, event, reason in rows:
        out.setdefault(str(key), []).append(f"{event}: {reason}" if reason else str(event))
    return out


def classify_unreceived(
    lines: list[JournalLine],
    missing: list[JournalLine],
    executor_log: list[dict[str, Any]],
    supervisor_log: list[dict[str, Any]],
    view: dict[str, list[str]],
) -> dict[str, str]:
    """Why each journaled cloid that never reached the simulator did not, from hip3's own files:

    * ``REFUSED``: hip3 recorded a refusal for it: the exchange's whole-request error (``rejected:
      exchange:``; the simulator logs an action only once its signature, ``expiresAfter`` and nonce
      passed) or the client's, before anything left (``rejected: send_failed:``, not connected or over
      its budget at ``ws.post``).
    * ``KILLED``: the supervisor saw the executor die of SIGKILL within ``SEND_WINDOW_S`` after the line,
      no ``submitted`` was published for it (that comes right after the frame is written), and no later
      journal line before the death reached the simulator: the process died before the frame.
    * ``DROPPED``: the executor's order-entry connection went down within ``SEND_WINDOW_S`` after the
      line, the order was ``submitted`` (the frame was written, or its write failed on the dead socket),
      and no later journal line before the disconnect reached the simulator (TCP keeps order: a later
      frame that arrived means this one did): the connection died under it. hip3 had the post as outcome
      unknown and released it at the post timeout (after which ``expiresAfter`` forbids it anyway).
    * ``LOST``: none of these.

    Each explained case is at-most-once working: the intent is in the journal, so it is never re-sent,
    and nothing holds the order live."""
    received = {e[2] for e in lines} - {e[2] for e in missing}
    index = {e[2]: i for i, e in enumerate(lines)}
    deaths = [float(e["ts"]) for e in supervisor_log
              if e.get("event") == "actor_failed" and e.get("actor_") == "executor" and e.get("exitcode") == -9]
    downs = [float(e["ts"]) for e in executor_log if str(e.get("event", "")).startswith("ws disconnected")]

    def last_before(i: int, until_s: float) -> bool:
        """No journal line after line ``i`` (send order), written up to ``until_s``, reached the simulator."""
        return not any(e[2] in received for e in lines[i + 1:] if e[0] <= until_s * 1000 + 1)

    def followed_by(t_ms: int, times: list[float], i: int) -> bool:
        t = t_ms / 1000
        return any(t - 0.001 <= x <= t + SEND_WINDOW_S and last_before(i, x) for x in times)

    out: dict[str, str] = {}
    for t_ms, _intent, cloid in missing:
        events = view.get(cloid, [])
        i = index[cloid]
        # "submitted" carries the flatten's reason when there is one ("submitted: time_stop").
        submitted = any(ev == "submitted" or ev.startswith("submitted:") for ev in events)
        if any(ev.startswith(("rejected: exchange:", "rejected: send_failed:")) for ev in events):
            out[cloid] = REFUSED
        elif not submitted and followed_by(t_ms, deaths, i):
            out[cloid] = KILLED
        elif submitted and followed_by(t_ms, downs, i):
            out[cloid] = DROPPED
        else:
            out[cloid] = LOST
    return out

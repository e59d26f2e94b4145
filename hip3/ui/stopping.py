"""Stopping: what a stop leaves at the exchange, and ``stop --flatten``'s wait for zero.

A stop (``stop`` or Ctrl-C) ends the actors; positions and resting orders stay at the exchange and
nothing manages them any more. The operator is told exactly what is left, from the position tracker's
last snapshot the supervisor holds (with its age, and whether it was synced with the exchange).

``stop --flatten`` reuses the hard stop: the latch makes the executor cancel every order and flatten
every position, repeating until the tracker's view shows both at zero (``HardStopProgress.done``). The
CLI waits for that, bounded, then asks for the stop; the supervisor clears the latch once every actor is
down, only if this stop latched it and the flatten finished (``clear_after_flatten``); otherwise the
latch stays, which is the honest state (positions may be open, or the stop was latched for another
reason) and makes the next start flatten before anything else. If the wait times out, nothing stops:
hip3 keeps running latched and keeps flattening, and the operator is told so in one line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hip3.runtime.hardstop import Latch, LatchFileError

if TYPE_CHECKING:
    from hip3.runtime.supervisor_view import SupervisorView

__all__ = ["FLATTEN_REASON", "FlattenResult", "FlattenWait", "StopTimeout", "clear_after_flatten", "end_of_session",
           "flatten_before_stop", "format_leftovers", "print_summary", "stop_session"]

FLATTEN_REASON = "operator: stop --flatten"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def format_leftovers(left: Mapping[str, Any] | None, hint: bool = True) -> list[str]:
    """Lines for the operator: nothing left, or every position and order left open."""
    if not left or not left.get("known"):
        return ["left at the exchange: UNKNOWN (no position snapshot from the tracker): check the exchange"]
    pos, oo = left["positions"], left["open_orders"]
    age = "" if left.get("age_ms") is None else f", {left['age_ms'] / 1000:.1f} s old"
    view = f"the tracker's view{age}" + ("" if left.get("synced") else ", NOT synced with the exchange")
    if not pos and not oo:
        return [f"left at the exchange: no open position, no open order ({view})"]
    lines = [f"LEFT OPEN at the exchange, no longer managed by hip3: {_plural(len(pos), 'position')}, "
             f"{_plural(len(oo), 'open order')} ({view})"]
    for p in pos:
        mark = "" if p.get("mark_px") is None else f"  mark {p['mark_px']:g}"
        upnl = "" if p.get("unrealized_pnl_usd") is None else f"  uPnL {p['unrealized_pnl_usd']:+.4f} USD"
        lines.append(f"  position {p['coin']} {p['side']} {p['size']:g} @ {p['entry_px']:g}{mark}{upnl}")
    for o in oo:
        ro = " reduce-only" if o.get("reduce_only") else ""
        lines.append(f"  order    {o['coin']} {o['side']} {o['size']:g} @ {o['limit_px']:g}{ro} (oid {o['oid']})")
    if hint:
        lines.append("  `python supervisor.py stop --flatten` flattens to zero before stopping")
    return lines


Decision = Literal["wait", "flat", "timeout", "reset", "gone"]


class FlattenWait:
    """Decides, from successive ``status`` replies, when ``stop --flatten`` may stop (pure; clock injected).

    ``flat``: the executor's flatten for ``epoch`` reported done and the supervisor's position view shows
    no position and no open order. ``reset``: someone cleared the latch meanwhile (entries could resume:
    do not stop as if flat). ``gone``: the supervisor stopped. ``timeout``: not flat by ``deadline_s``.
    """

    def __init__(self, epoch: int, deadline_s: float) -> None:
        self.epoch = epoch
        self.deadline_s = deadline_s
        self.positions = -1
        self.open_orders = -1

    def check(self, status: Mapping[str, Any], now_s: float) -> Decision:
        if not status.get("running"):
            return "gone"
        hs = status.get("hard_stop") or {}
        if not hs.get("latched") or int(hs.get("epoch", -1)) != self.epoch:
            return "reset"
        trading = status.get("trading") or {}
        self.positions = len(trading.get("positions") or [])
        self.open_orders = int(trading.get("open_orders") or 0)
        prog = hs.get("flatten") or {}
        done = bool(prog.get("done")) and int(prog.get("epoch", -1)) == self.epoch
        if done and self.positions == 0 and self.open_orders == 0:
            return "flat"
        return "timeout" if now_s >= self.deadline_s else "wait"


class FlattenResult:
    """How ``stop --flatten``'s wait ended: ``flat``; ``epoch`` waited on; ``ours``: this stop latched it."""

    __slots__ = ("epoch", "flat", "ours", "why")

    def __init__(self, flat: bool, epoch: int, ours: bool, why: str) -> None:
        self.flat, self.epoch, self.ours, self.why = flat, epoch, ours, why


def flatten_before_stop(request: Callable[[dict[str, Any]], dict[str, Any]], timeout_s: float,
                        say: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                        sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.25) -> FlattenResult:
    """Latch the hard stop (unless it is already), then wait at most ``timeout_s`` for zero positions and
    orders. ``request`` sends one command to the supervisor. Says one line on every outcome."""
    st = request({"cmd": "status"})
    hs = st.get("hard_stop") or {}
    ours = False
    if hs.get("latched"):
        epoch = int(hs["epoch"])
        say(f"hard stop already latched ({hs.get('reason')}, epoch {epoch}): waiting for its flatten")
    else:
        reply = request({"cmd": "hardstop", "reason": FLATTEN_REASON.removeprefix("operator: ")})
        if not reply.get("ok", True):
            return FlattenResult(False, -1, False, f"the supervisor refused the hard stop: {reply.get('error')}")
        epoch = int(reply["hard_stop"]["epoch"])
        ours = bool(reply.get("changed"))
        say(f"flattening: hard stop latched (epoch {epoch}); waiting up to {timeout_s:g} s for zero positions "
            "and orders")
    wait = FlattenWait(epoch, clock() + timeout_s)
    while True:
        decision = wait.check(request({"cmd": "status"}), clock())
        if decision == "flat":
            say(f"flat: no position, no open order (the executor's flatten for epoch {epoch} is done)")
            return FlattenResult(True, epoch, ours, "")
        if decision == "timeout":
            return FlattenResult(False, epoch, ours, (
                f"could not flatten within {timeout_s:g} s: {_plural(wait.positions, 'position')} and "
                f"{_plural(wait.open_orders, 'open order')} remain; hip3 keeps running with the hard stop LATCHED "
                "and keeps flattening; `python supervisor.py stop` stops it anyway (what is open stays open)"))
        if decision == "reset":
            return FlattenResult(False, epoch, False, "the hard stop was reset while flattening: not stopping "
                                 "as if flat; check status and stop again")
        if decision == "gone":
            return FlattenResult(False, epoch, ours, "the supervisor stopped while flattening")
        sleep(poll_s)


def clear_after_flatten(sup: SupervisorView) -> bool:
    """Once every actor is down: clear the latch ``stop --flatten`` raised, if the stop asked for it
    (``clear_hardstop_epoch``), the latch is still that one (same epoch, the flatten's reason), the flatten
    of that epoch reported done and the last position view holds nothing. Anything else stays latched."""
    epoch = sup.stop_request.get("clear_hardstop_epoch")
    st = sup.latch.state
    prog = sup.hardstop_progress
    left = sup.board.left(sup.trading.snapshot)
    if (not isinstance(epoch, int) or not st.latched or st.epoch != epoch or st.reason != FLATTEN_REASON
            or prog is None or prog.epoch != epoch or not prog.done or left["positions"] or left["open_orders"]):
        return False
    try:
        if not sup.latch.reset():
            return False
    except LatchFileError as e:  # the reset cannot be written: it stays latched, which the summary says
        sup.log.warning("hardstop_not_cleared_after_flatten", epoch=epoch, error=str(e))
        return False
    sup.log.warning("hardstop_cleared_after_flatten", epoch=epoch, new_epoch=sup.latch.state.epoch)
    return True


def end_of_session(sup: SupervisorView) -> tuple[dict[str, Any], list[str]]:
    """After ``sup.shutdown()``: the latch cleared if ``stop --flatten`` earned it, then the final status and
    the lines listing what stays open at the exchange."""
    clear_after_flatten(sup)
    return sup.status(), format_leftovers(sup.board.left(sup.trading.snapshot))


def print_summary(status: dict[str, Any], left: list[str]) -> None:
    """The end of a session without the console (``--log-format json``, a pipe, a service): on stderr."""
    hs = status["hard_stop"]
    lines = [f"hip3 session ended after {status['uptime_s']} s (run dir {status['run_dir']})",
             f"hard stop: {'LATCHED: ' + str(hs['reason']) if hs['latched'] else 'not latched'} (epoch {hs['epoch']})"]
    if not hs.get("persisted", True):
        lines.append(f"HARD STOP NOT SAVED: cannot write {hs['path']}: {hs['persist_error']}; the next start does "
                     "not know it: repair that path and run `hardstop` again before starting")
    for a in status["actors"]:
        lines.append(f"  {a['name']:<17} restarts={a['restarts']}")
    if status.get("trading"):
        from hip3.runtime.trading import format_trading

        lines.extend(format_trading(status["trading"]))
    print("\n".join([*lines, *left]), file=sys.stderr)


class StopTimeout(Exception):
    """The supervisor did not stop in time (one line)."""


def stop_session(request: Callable[[dict[str, Any]], dict[str, Any]], holder: Callable[[], int | None],
                 run_dir: Path, flatten: bool, flatten_timeout_s: float, stop_timeout_s: float,
                 say: Callable[[str], None]) -> int:
    """The ``stop`` command: (flatten first,) stop, wait for the supervisor to go, say what it left.

    ``request`` sends one command to the running supervisor; ``holder`` is the pid holding the run
    directory's lock (None: no supervisor). Returns the exit code.
    """
    pid = holder()
    if pid is None:
        if flatten:
            say(f"no supervisor is running on {run_dir}: nothing can flatten; positions, if any, stay at the "
                "exchange (a start with the hard stop latched flattens them first)")
            return 1
        say(f"no supervisor is running on {run_dir}")
        return 0
    flat = None
    if flatten:
        try:
            flat = flatten_before_stop(request, flatten_timeout_s, say)
        except KeyboardInterrupt:
            say("interrupted: hip3 keeps running with the hard stop latched (it keeps flattening)")
            return 1
        if not flat.flat:
            say(flat.why)
            if holder() is not None:
                say("\n".join(format_leftovers(request({"cmd": "status"}).get("left"), hint=False)))
            return 1
    reply = request({"cmd": "stop", **({"clear_hardstop_epoch": flat.epoch} if flat and flat.ours else {})})
    deadline = time.monotonic() + stop_timeout_s
    while holder() is not None:
        if time.monotonic() > deadline:
            raise StopTimeout(f"the supervisor (pid {pid}) did not stop in time")
        time.sleep(0.05)
    say("hip3 stopped")
    st = Latch.load(run_dir)
    if st.latched:
        say(f"hard stop stays LATCHED ({st.reason}): the next start flattens first; `reset-hardstop` clears it")
    elif flat is not None and flat.ours:
        say("hard stop cleared: it was latched only to flatten; the next start trades normally")
    say("\n".join(format_leftovers(reply.get("left"), hint=not flatten)))
    return 0


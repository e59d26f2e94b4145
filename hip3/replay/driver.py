"""Replay a recorded session through the real actor graph, in one thread, lock-stepped on a virtual clock.

``replay(path, cfg)`` (``python supervisor.py replay FILE``):

1. reads the recording (``hip3.replay.recording``) and installs a ``hip3.clock.VirtualClock`` that
   starts at the recording's start (its monotonic time; wall = the recorded wall time);
2. starts ``hip3.sim.replay.ReplayExchange`` (the simulator's matching engine, the recorded markets,
   a throwaway account funded as in paper mode) on 127.0.0.1, and the six actors of a paper session (the
   recorder writes the replay's journal in its run directory) - the production
   classes, unchanged - over ``inproc://`` in this thread (``Actor.start``), with a small stand-in for
   the supervisor (control state, hard-stop requests, inbox);
3. then, frame group by frame group (frames received together live are applied together): fires every
   actor timer due before the group's receive time, in time order, moves the clock to it, applies the
   frames (books, oracles; the recorded bytes go to the feed's WebSocket) and **settles**: steps every
   actor (``Actor.step(0)``), the simulator after each actor that did something, until a whole round
   does nothing. An actor with work in a worker thread (``Actor.busy()``: the position tracker's REST
   sync) is stepped alone, with the simulator serving it, until it is done.

Deterministic because nothing runs concurrently: inproc ZeroMQ and loopback TCP deliver within the
sending call, so what one step sends is readable by the next; the simulator only reads in its own steps;
time moves only between settled states. Faster than real time because idle time is skipped.

Limits: see ``hip3.sim.replay`` (what the market model leaves out) and docs/runtime.md.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import zmq
from eth_account import Account

from hip3 import clock
from hip3.config import Config, MarketConfig
from hip3.journal.trades import TradeLog
from hip3.messages import HardStopRequest, HardStopState
from hip3.replay.recording import Recording
from hip3.replay.rotation import read_recording
from hip3.runtime.actor import Actor
from hip3.runtime.bus import Bus, prepare_run_dir
from hip3.runtime.hardstop import Latch
from hip3.runtime.paper import PAPER_FUNDS_USD
from hip3.runtime.roster import start_order
from hip3.runtime.runner import actor_class
from hip3.runtime.secrets import SigningKey, hand_over
from hip3.runtime.trading import TradingStats
from hip3.sim.params import SimParams
from hip3.sim.replay import ReplayExchange, params_from_header

# The journal is committed at the end of the replay anyway (the recorder's teardown); a long commit
# interval keeps its timer from waking the graph twenty times a virtual second.
REPLAY_COMMIT_INTERVAL_MS = 1000
MAX_ROUNDS = 100_000  # per settle: a graph that never goes quiet is a bug, not a long replay


class ReplayError(RuntimeError):
    """The replay cannot run (bad recording or config) or did not settle."""


@dataclass
class ReplayResult:
    trades: TradeLog
    stats: dict[str, Any]
    frames: int
    span_s: float
    wall_s: float
    settles: int
    rounds: int
    torn_bytes: int
    run_dir: Path
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "recorded_span_s": round(self.span_s, 3), "replay_wall_s": round(self.wall_s, 3),
            "speed_x": round(self.span_s / self.wall_s, 1) if self.wall_s > 0 else None,
            "trade_count": len(self.trades.trades), "settles": self.settles, "rounds": self.rounds,
            "torn_bytes": self.torn_bytes, "run_dir": str(self.run_dir), "notes": self.notes,
            "trading": self.stats,
        }


def replay_config(cfg: Config, rec: Recording, run_dir: Path, rest_url: str, account: str) -> Config:
    """``cfg`` as a paper session against the replay exchange: inproc, its own run dir, no recording, the
    recorded markets (those of ``cfg`` that were recorded, or all of them)."""
    recorded = list(rec.header["markets"])
    wanted = [m for m in cfg.markets if m.coin in recorded] if cfg.markets else [MarketConfig(coin=c) for c in recorded]
    if not wanted:
        raise ReplayError(f"none of the configured markets was recorded (recorded: {', '.join(recorded)})")
    r = msgspec.structs.replace
    return r(cfg, mode="paper", run_dir=str(run_dir), markets=tuple(wanted),
             bus=r(cfg.bus, transport="inproc"),
             exchange=r(cfg.exchange, network="sim", rest_url=rest_url, ws_url="", account_address=account,
                        signer_address="", vault_address=""),
             feed=r(cfg.feed, record_path=""),
             recorder=r(cfg.recorder, commit_interval_ms=REPLAY_COMMIT_INTERVAL_MS),
             logging=r(cfg.logging, stderr=False),  # the replay prints its trades; logs go to its run dir
             supervisor=r(cfg.supervisor, actors=()))


class _Control:
    """The supervisor's part, minimal: control state (hard stop) to every actor, the inbox drained,
    hard-stop requests latched (persisted in the replay's run dir) and broadcast."""

    def __init__(self, cfg: Config, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.bus = Bus(cfg, "supervisor", context=context, run_dir=cfg.run_path)
        self.latch = Latch(cfg.run_path)
        self.control = self.bus.publisher("control")
        self.inbox = self.bus.puller("inbox")
        self.control.publish(self.latch.state.to_message(), state_key="hardstop")
        self.hardstop_reasons: list[str] = []

    def step(self) -> bool:
        did = False
        if self.control.sock.poll(0):
            self.control.on_subscription()
            did = True
        for msg in self.inbox.drain():
            if isinstance(msg, HardStopRequest) and self.latch.latch(msg.reason, clock.wall_ms()):
                self.hardstop_reasons.append(f"{msg.source}: {msg.reason}")
                state: HardStopState = self.latch.state.to_message()
                self.control.publish(state, state_key="hardstop")
                did = True
        return did

    def close(self) -> None:
        self.bus.close()


class _Tap:
    """A SUB on ``exec`` and ``positions``: the trades and the trading summary."""

    def __init__(self, cfg: Config, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.bus = Bus(cfg, "replay", context=context, run_dir=cfg.run_path)
        self.rcv = self.bus.subscriber(["exec", "positions"])
        self.trades = TradeLog()
        self.stats = TradingStats()

    def step(self) -> bool:
        did = False
        for msg in self.rcv.drain():
            self.trades.on_message(msg)
            self.stats.on_message(msg)
            did = True
        return did

    def close(self) -> None:
        self.bus.close()


class Replay:
    """One replay of one recording (see the module doc). ``run()`` once."""

    def __init__(self, path: Path, cfg: Config, run_dir: Path, speed: float | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        self.path = path
        self.rec = read_recording(path)
        self.base_cfg = cfg
        self.run_dir = run_dir.resolve()
        self.speed = speed  # None = as fast as possible; 1.0 = the recorded pace
        self.on_progress = on_progress
        self.settles = 0
        self.rounds = 0
        self.notes: list[str] = []
        if self.rec.torn_bytes or self.rec.torn_reason:
            self.notes.append(f"ignored a torn tail of {self.rec.torn_bytes} bytes ({self.rec.torn_reason})")
        # A rotated part repeats its feed's header; a restarted feed writes a new one.
        feeds = {(s.header["started_wall_ns"], s.header["started_mono_ns"]) for s in self.rec.segments}
        if len(feeds) > 1:
            self.notes.append(f"{len(feeds)} feed processes (restarts): replayed as one session")

    def _groups(self) -> list[tuple[int, list[bytes]]]:
        """Frames received together (same ``recv_ns``) in one group, on the first segment's monotonic
        time line: a later segment (a restarted feed, maybe after a reboot) is placed by its wall time."""
        h0 = self.rec.header
        base = int(h0["started_wall_ns"]) - int(h0["started_mono_ns"])
        groups: list[tuple[int, list[bytes]]] = []
        for seg in self.rec.segments:
            shift = int(seg.header["started_wall_ns"]) - int(seg.header["started_mono_ns"]) - base
            for t_ns, raw in seg.frames:
                t = t_ns + shift
                if groups and t <= groups[-1][0]:
                    groups[-1][1].append(raw)  # same instant (or a clock step back): keep the order
                else:
                    groups.append((t, [raw]))
        return groups

    def run(self) -> ReplayResult:
        header = self.rec.header
        seg0 = self.rec.segments[0]
        vc = clock.VirtualClock(seg0.t_ns, int(header["started_wall_ns"]) - int(header["started_mono_ns"]))
        prepare_run_dir(self.run_dir)
        saved_env = {k: os.environ.pop(k, None) for k in ("HIP3_RUN_DIR",)}
        clock.install(vc)
        wall0 = time.perf_counter()
        try:
            return self._run(vc, wall0)
        finally:
            clock.restore()
            for k, v in saved_env.items():
                if v is not None:
                    os.environ[k] = v

    def _run(self, vc: clock.VirtualClock, wall0: float) -> ReplayResult:
        key = SigningKey("0x" + secrets.token_hex(32))  # throwaway, as in paper mode
        account = str(Account.from_key(key.reveal()).address).lower()
        base_sim = SimParams.from_dict(self.base_cfg.sim) if self.base_cfg.sim else SimParams()
        self.sim = sim = ReplayExchange(params_from_header(self.rec.header, base_sim), {account: PAPER_FUNDS_USD},
                                        order_log=str(self.run_dir / "sim-orders.jsonl"))
        sim.start()
        cfg = replay_config(self.base_cfg, self.rec, self.run_dir, sim.url, account)
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        control = _Control(cfg, context)
        tap = _Tap(cfg, context)
        self.aux: list[_Control | _Tap] = [control, tap]
        self.actors: list[Actor] = []
        hand_over(key)
        groups = self._groups()
        try:
            # The paper graph, in the supervisor's start order: the recorder writes the replay's journal
            # (``<run_dir>/journal.sqlite``) with the same code as a live session, so ``report --run-dir``
            # reads both alike.
            for name in start_order("paper"):
                actor = actor_class(name)(cfg, context=context, supervised=False)
                with sim.serving():
                    actor.start()
                self.actors.append(actor)
                self.settle()
            t_start = vc.now_ns
            for i, (t_ns, frames) in enumerate(groups):
                self.advance_to(vc, t_ns)
                self._pace(vc, t_start, wall0)
                sim.apply(frames)
                self.settle()
                if self.on_progress is not None and i % 1000 == 0:
                    self.on_progress(i, len(groups))
            wall_s = time.perf_counter() - wall0
            span_s = (vc.now_ns - t_start) / 1e9
        finally:
            hand_over(None)
            with sim.serving():
                for actor in reversed(self.actors):
                    try:
                        actor.close()
                    except Exception as e:  # a replay's teardown must not hide its result
                        self.notes.append(f"{actor.name} teardown: {e!r}")
            for aux in self.aux:
                aux.close()
            sim.close()
            context.term()
        if control.hardstop_reasons:
            self.notes.append("hard stop latched: " + "; ".join(control.hardstop_reasons))
        return ReplayResult(trades=tap.trades, stats=tap.stats.as_dict(), frames=sum(len(f) for _, f in groups),
                            span_s=span_s, wall_s=wall_s, settles=self.settles, rounds=self.rounds,
                            torn_bytes=self.rec.torn_bytes, run_dir=self.run_dir, notes=self.notes)

    def _pace(self, vc: clock.VirtualClock, t_start: int, wall0: float) -> None:
        if self.speed:
            ahead = (vc.now_ns - t_start) / 1e9 / self.speed - (time.perf_counter() - wall0)
            if ahead > 0:
                time.sleep(ahead)

    def advance_to(self, vc: clock.VirtualClock, t_ns: int) -> None:
        """Fire every timer due before ``t_ns`` at its own time (settling after each), then move to ``t_ns``."""
        while True:
            due = min(a.next_due_ns() for a in self.actors)
            if due > t_ns:
                break
            vc.advance_to(due)
            self.sim.fire_scheduled_cancels(clock.wall_ms())
            self.settle()
        vc.advance_to(t_ns)

    def settle(self) -> None:
        """Step everything until a whole round does nothing."""
        sim = self.sim
        self.settles += 1
        for _ in range(MAX_ROUNDS):
            self.rounds += 1
            did = False
            for actor in self.actors:
                if actor.step(0):
                    did = True
                    sim.step()
                while actor.busy():
                    sim.run_for(0.001)
                    actor.step(0)
            for aux in self.aux:
                did = aux.step() or did
            did = sim.step() or did
            if not did:
                return
        raise ReplayError(f"the graph did not settle within {MAX_ROUNDS} rounds at t={clock.monotonic_ns()}")


def replay(path: Path | str, cfg: Config, run_dir: Path | str, speed: float | None = None) -> ReplayResult:
    """Replay ``path`` with ``cfg``'s strategy (see ``Replay``); the replay's logs go to ``run_dir``."""
    return Replay(Path(path), cfg, Path(run_dir), speed).run()


def describe(result: ReplayResult) -> str:
    """The trades and the summary, for a person."""
    lines = [f"{len(result.trades.trades)} trades:"]
    for t in result.trades.trades:
        lines.append(f"  {t.coin:<14} {t.side:<4} {t.size!s:>12} @ {t.price!s:<12} {t.reason}")
    s = result.summary()
    lines.append(f"{s['frames']} frames, {s['recorded_span_s']} s recorded, replayed in {s['replay_wall_s']} s "
                 f"({s['speed_x']}x), {s['settles']} settles, {s['rounds']} rounds; run dir {s['run_dir']}")
    tr = result.stats
    for k in ("entries", "exits", "win_rate", "realized_pnl_usd", "exits_by_reason"):
        if k in tr:
            lines.append(f"  {k}: {tr[k]}")
    lines.extend(f"  note: {n}" for n in result.notes)
    return "\n".join(lines)


def cli(path: str, cfg: Config, speed: str, as_json: bool, run_dir: str | None) -> int:
    """``python supervisor.py replay FILE [--speed max|X] [--json] [--run-dir DIR]``."""
    import json
    import sys

    from hip3.replay.recording import RecordingError

    if speed == "max":
        pace: float | None = None
    else:
        try:
            pace = float(speed)
        except ValueError:
            pace = -1.0
        if not pace or pace <= 0:
            print(f"error: --speed wants 'max' or a positive factor, got {speed!r}", file=sys.stderr)
            return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(run_dir) if run_dir else cfg.run_path / "replays" / f"{Path(path).stem}-{stamp}"
    try:
        result = replay(path, cfg, out, pace)
    except (OSError, RecordingError, ReplayError, KeyError, ValueError) as e:
        print(f"error: replay of {path}: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps({"trades": result.trades.as_list(), **result.summary()}, default=str))
    else:
        print(describe(result))
    return 0


__all__ = ["Replay", "ReplayError", "ReplayResult", "cli", "describe", "replay", "replay_config"]

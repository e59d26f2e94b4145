"""The actors, once: each one's name, its class, and the roles the supervisor, the forkserver and the replay
give it. Everything that lists actors derives from ``ROSTER``: the supervisor's start order per mode and
the actors it keeps restarting through a hard stop, the runner's name -> class lookup, the forkserver's
preloaded modules, the replay's actor graph.

The classes are named by dotted path (``"actors.feed:Feed"``) and imported when an actor starts, so this
module imports no actor (each actor imports the runner, which reads this).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ROSTER", "ActorSpec", "actor_names", "flatten_actors", "preloaded_modules", "start_order", "target_of"]

@dataclass(frozen=True)
class ActorSpec:
    name: str
    target: str  # "module:Class"
    observe: bool  # started in observe mode (no orders); paper and live start every actor
    # The hard stop's flatten runs in the executor, from the position tracker's synced view and the feed's
    # marks. Past the restart limit these are not given up (that would latch the stop and leave the
    # positions open at the exchange for good): the stop latches and they keep being restarted, every
    # ``restart_backoff_max_ms``. The others stop being restarted (Erlang/OTP's intensity limit).
    flatten: bool
    preload: bool  # imported by the forkserver before any fork, so that a restart is a fork


# Dependency order for a start: market data, then positions, then the rest.
ROSTER: tuple[ActorSpec, ...] = (
    ActorSpec("feed", "actors.feed:Feed", observe=True, flatten=True, preload=True),
    ActorSpec("position_tracker", "actors.position_tracker:PositionTracker", observe=False, flatten=True,
              preload=True),
    ActorSpec("executor", "actors.executor:Executor", observe=False, flatten=True, preload=True),
    ActorSpec("detector", "actors.detector:Detector", observe=True, flatten=False, preload=True),
    ActorSpec("exit_watcher", "actors.exit_watcher:ExitWatcher", observe=False, flatten=False, preload=True),
    # off the hot path: the journal; nothing depends on it
    ActorSpec("recorder", "actors.recorder:Recorder", observe=True, flatten=False, preload=False),
)


def target_of(name: str) -> str:
    """``"module:Class"`` of the actor ``name``; ``KeyError`` naming the known actors if there is none."""
    for spec in ROSTER:
        if spec.name == name:
            return spec.target
    raise KeyError(f"unknown actor {name!r}; known: {', '.join(s.name for s in ROSTER)}")


def actor_names() -> frozenset[str]:
    return frozenset(s.name for s in ROSTER)


def start_order(mode: str) -> tuple[str, ...]:
    """The actors a session in ``mode`` starts by default, in dependency order."""
    return tuple(s.name for s in ROSTER if s.observe or mode != "observe")


def flatten_actors() -> frozenset[str]:
    return frozenset(s.name for s in ROSTER if s.flatten)


def preloaded_modules() -> list[str]:
    return [s.target.split(":")[0] for s in ROSTER if s.preload]

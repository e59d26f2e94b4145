"""The whole actor graph as threads over inproc://, under the real supervisor core, against the simulator.

Every actor is the production class; only the transport (inproc) and the exchange (the simulator on
127.0.0.1, in this process) differ from a paper session.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from hip3.runtime.actor import Actor
from hip3.runtime.inproc import inproc_graph
from hip3.runtime.runner import actor_class
from hip3.runtime.secrets import SigningKey
from hip3.runtime.supervisor import Supervisor
from tests.conftest import sim_config

ALL = ("feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder")


def _all_ready(s: Supervisor) -> bool:
    return s.all_ready()


def _graph(run_dir: Path, sim: Any, key: str, factories: dict[str, Any] | None = None) -> Any:
    k = SigningKey(key)
    cfg = sim_config(run_dir, sim.url, k.address)
    return inproc_graph(cfg, factories, signing_key=k)


def test_all_actors_start_ready_and_acknowledge_the_hard_stop(run_dir: Path, sim_server: Any, paper_key: str) -> None:
    with _graph(run_dir, sim_server, paper_key) as run:
        assert run.wait_for(_all_ready, 30), run.call(lambda s: s.status())
        assert [a["name"] for a in run.call(lambda s: s.status())["actors"]] == list(ALL)
        run.call(lambda s: s.hardstop("integration test", "test"))
        assert run.wait_for(lambda s: all(x.acked_epoch == 1 for x in s.slots.values()), 5)
        assert run.call(lambda s: s.status()["hard_stop"]["latched"])
        run.call(lambda s: s.reset_hardstop())
        assert run.wait_for(lambda s: all(x.acked_epoch == 2 for x in s.slots.values()), 5)


def test_actor_raised_hard_stop_reaches_every_actor(run_dir: Path, sim_server: Any, paper_key: str) -> None:
    made: dict[str, Actor] = {}

    def capture(name: str) -> Any:
        def factory(*args: Any, **kwargs: Any) -> Actor:
            a = actor_class(name)(*args, **kwargs)
            made[name] = a
            return a
        return factory

    with _graph(run_dir, sim_server, paper_key, {n: capture(n) for n in ALL}) as run:
        assert run.wait_for(_all_ready, 30)
        made["executor"].raise_hardstop("executor saw a realised loss")
        assert run.wait_for(lambda s: s.latch.state.latched and all(x.acked_epoch == 1 for x in s.slots.values()))
        assert all(a.hardstop.latched for a in made.values())
        assert "realised loss" in (made["detector"].hardstop.reason or "")


def test_malformed_bus_messages_are_counted_and_nobody_crashes(run_dir: Path, sim_server: Any,
                                                              paper_key: str) -> None:
    with _graph(run_dir, sim_server, paper_key) as run:
        assert run.wait_for(_all_ready, 30)
        push = run.context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        for ep in ("intents", "inbox"):
            push.connect(run.sup.bus.address(ep))
        for _ in range(10):
            push.send(b"\x93not a message")
        assert run.wait_for(lambda s: s.slots["executor"].stats.get("bad_messages", 0) >= 1, 5)
        time.sleep(0.3)
        st = run.call(lambda s: s.status())
        assert all(a["ready"] and a["restarts"] == 0 for a in st["actors"])
        assert run.sup.inbox.bad >= 1
        push.close()


class _Crasher(Actor):
    name = "detector"

    def setup(self) -> None:
        raise RuntimeError("boom")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_crash_loop_hits_the_restart_limit_and_latches(run_dir: Path, sim_server: Any, paper_key: str) -> None:
    k = SigningKey(paper_key)
    cfg = sim_config(run_dir, sim_server.url, k.address,  # type: ignore[attr-defined]
                     extra="[supervisor]\nactors=['feed','detector']\nmax_restarts=2\nrestart_backoff_initial_ms=10\n")
    with inproc_graph(cfg, {"detector": _Crasher}) as run:
        assert run.wait_for(lambda s: s.slots["detector"].state == "failed", 10)
        st = run.call(lambda s: s.status())
        det = next(a for a in st["actors"] if a["name"] == "detector")
        assert det["restarts"] == 2
        assert st["hard_stop"]["latched"] and "restart limit: detector" in st["hard_stop"]["reason"]
        assert run.wait_for(lambda s: s.slots["feed"].acked_epoch == 1 and s.slots["feed"].ready, 10)
        assert run.call(lambda s: s.slots["feed"].restarts) == 0

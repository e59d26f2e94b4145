"""Scheduling classes: the opt-in realtime class for hot-path actors (``[supervisor] realtime_actors``)."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from hip3.config import Config
from hip3.runtime import sched
from hip3.runtime.logs import Log
from hip3.runtime.runner import apply_scheduling
from hip3.runtime.supervisor import Supervisor
from tests.conftest import make_config

pytestmark = pytest.mark.timeout(60)


def _with_realtime(cfg: Config, names: tuple[str, ...]) -> Config:
    return msgspec.structs.replace(cfg, supervisor=msgspec.structs.replace(cfg.supervisor, realtime_actors=names))


def _probe(cfg: Config, name: str, supervised: bool, out: Any) -> None:
    """In a fresh process: apply the actor's scheduling, then start a ZeroMQ context (its I/O thread is
    created now) and report every thread's class."""
    asked, refused = apply_scheduling(name, cfg, supervised)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind("tcp://127.0.0.1:*")  # makes sure the I/O thread runs
    tasks = os.listdir("/proc/self/task")
    policies = sorted({os.sched_getscheduler(int(t)) for t in tasks})
    sock.close(0)
    ctx.term()
    out.put((asked, refused, policies, len(tasks)))


def _run_probe(cfg: Config, name: str, supervised: bool) -> tuple[bool, str, list[int], int]:
    spawn = mp.get_context("spawn")
    q = spawn.Queue()
    p = spawn.Process(target=_probe, args=(cfg, name, supervised, q))
    p.start()
    try:
        return q.get(timeout=30)  # type: ignore[no-any-return]
    finally:
        p.join(10)


def test_listed_actor_and_its_zmq_thread_run_fifo_or_say_why_not(tmp_path: Path) -> None:
    cfg = _with_realtime(make_config(tmp_path), ("executor",))
    asked, refused, policies, threads = _run_probe(cfg, "executor", True)
    assert asked and threads >= 2  # the main thread and at least the ZeroMQ I/O thread
    if refused:  # not root and no CAP_SYS_NICE: the normal class stays, with the reason
        assert "not permitted" in refused and policies == [os.SCHED_OTHER]
    else:
        assert policies == [os.SCHED_FIFO]  # every thread, the I/O thread included


def test_unlisted_or_standalone_actor_keeps_the_normal_class(tmp_path: Path) -> None:
    cfg = _with_realtime(make_config(tmp_path), ("executor",))
    assert _run_probe(cfg, "detector", True)[:3] == (False, "", [os.SCHED_OTHER])
    assert _run_probe(cfg, "executor", False)[:3] == (False, "", [os.SCHED_OTHER])  # python -m actors.executor


def test_refusal_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(sched.os, "sched_setscheduler", refuse)
    assert sched.realtime_priority(10) == "not permitted (needs root or CAP_SYS_NICE)"

    def other(*_: object) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(sched.os, "sched_setscheduler", other)
    assert "Invalid argument" in sched.realtime_priority(10)


class _NoLauncher:
    def launch(self, name: str) -> Any:
        raise AssertionError("not started in this test")

    def close(self) -> None:
        pass


def test_unknown_realtime_actor_is_refused_at_start(tmp_path: Path) -> None:
    cfg = _with_realtime(make_config(tmp_path, '[bus]\ntransport = "inproc"\n'), ("exit_watcher", "exiter"))
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with pytest.raises(ValueError, match="realtime_actors: exiter"):
            Supervisor(cfg, _NoLauncher(), Log("supervisor"), context=ctx)
    finally:
        ctx.term()


def test_realtime_priority_range_is_validated(tmp_path: Path) -> None:
    from hip3.config import ConfigError

    with pytest.raises(ConfigError, match="realtime_priority"):
        make_config(tmp_path, '[supervisor]\nrealtime_priority = 99\n')
    cfg = make_config(tmp_path, '[supervisor]\nrealtime_actors = ["feed"]\n')
    assert cfg.supervisor.realtime_actors == ("feed",) and cfg.supervisor.realtime_priority == 10

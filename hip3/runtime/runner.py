"""Runs one actor as a process: the supervisor's child, or ``python -m actors.<name>`` alone.

The process gets its title ``hip3:<name>``, its own process group (so the supervisor can kill it and
anything it started in one go), a parent-death signal (so it exits when the supervisor dies, even by
``kill -9``), structured logs, and signal handlers for a clean stop.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import signal
import sys
from pathlib import Path

import msgspec

from hip3.config import Config, ConfigError, load_config
from hip3.runtime.actor import Actor, install_signal_handlers
from hip3.runtime.roster import target_of
from hip3.runtime.sched import realtime_priority
from hip3.runtime.secrets import SigningKey, hand_over

_PR_SET_PDEATHSIG = 1


def actor_class(name: str) -> type[Actor]:
    module, cls = target_of(name).split(":")
    result: type[Actor] = getattr(importlib.import_module(module), cls)
    return result


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the parent process dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass  # not Linux: the heartbeat timer's parent check still applies


def apply_scheduling(name: str, cfg: Config, supervised: bool) -> tuple[bool, str]:
    """``SCHED_FIFO`` for a supervised actor listed in ``[supervisor] realtime_actors``. Called before the
    actor (its ZeroMQ context and I/O thread) exists, so every thread inherits the class. Returns
    (asked for, why refused or "")."""
    if not (supervised and name in cfg.supervisor.realtime_actors):
        return False, ""
    return True, realtime_priority(cfg.supervisor.realtime_priority)


def run_actor_process(name: str, cfg: Config, supervised: bool) -> int:
    """Entry point of an actor process (also the supervisor's forkserver target)."""
    if supervised:
        os.setpgrp()
        _die_with_parent()
    try:
        import setproctitle

        setproctitle.setproctitle(f"hip3:{name}")
    except ImportError:
        pass
    realtime, refused = apply_scheduling(name, cfg, supervised)
    actor = actor_class(name)(cfg, supervised=supervised)
    if realtime and refused:
        actor.log.warning("realtime_refused", why=refused, priority=cfg.supervisor.realtime_priority)
    elif realtime:
        actor.log.info("realtime", policy="SCHED_FIFO", priority=cfg.supervisor.realtime_priority)
    install_signal_handlers(actor)
    return actor.run()


def supervised_main(name: str, config_path: str, run_dir: str, key: SigningKey | None = None,
                    stderr_path: str | None = None) -> None:
    """Target of the supervisor's child processes. Only the executor is given ``key``. With ``stderr_path``
    (the supervisor's console owns the terminal) the actor logs to its file only and its stderr goes to
    that file: a terminal that stops reading can then never block an actor's write."""
    os.environ["HIP3_RUN_DIR"] = run_dir
    hand_over(key)
    cfg = load_config(config_path)
    if stderr_path is not None:
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
        cfg = msgspec.structs.replace(cfg, logging=msgspec.structs.replace(cfg.logging, stderr=False))
    code = run_actor_process(name, cfg, supervised=True)
    sys.exit(code)


def standalone_main(name: str, argv: list[str] | None = None) -> int:
    """``python -m actors.<name> --config FILE``: one actor alone, for debugging."""
    parser = argparse.ArgumentParser(prog=f"python -m actors.{name}", description=f"run the {name} actor alone")
    parser.add_argument("--config", help="config file (default: $HIP3_CONFIG or configs/default.toml)")
    parser.add_argument("--run-dir", help="run directory (default: the config's run_dir)")
    args = parser.parse_args(argv)
    os.umask(0o077)  # files and sockets it creates are the user's only (as under supervisor.py)
    if args.run_dir:
        os.environ["HIP3_RUN_DIR"] = str(Path(args.run_dir).resolve())
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    from hip3.runtime.bus import prepare_run_dir

    prepare_run_dir(cfg.run_path)
    return run_actor_process(name, cfg, supervised=False)

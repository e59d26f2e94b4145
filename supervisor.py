"""hip3's command line: start, watch and stop the actors; raise and reset the hard stop.

    python supervisor.py start [--config FILE] [--detach]
    python supervisor.py status [--json] [--config FILE]
    python supervisor.py stop [--config FILE]
    python supervisor.py hardstop --reason TEXT [--config FILE]
    python supervisor.py reset-hardstop [--config FILE]
    python supervisor.py report [--since TIME] [--json] [--run-dir DIR] [--signals] [--html FILE] [--config FILE]
    python supervisor.py replay FILE [--speed max|X] [--json] [--run-dir DIR] [--config FILE]
    python supervisor.py optimize RECORDINGS... --space FILE [--trials N] [--seed S] [--workers N | --ray ADDRESS]

The config is ``--config``, else ``$HIP3_CONFIG``, else ``configs/default.toml`` (paper mode against the
built-in simulator). Commands reach the running supervisor over the ``ctl`` socket in the run
directory, which only the user can read. One supervisor per run directory: a second is refused.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import msgspec
import zmq

from hip3.bus import BusError, endpoint_address, prepare_run_dir
from hip3.config import Config, ConfigError, load_config, resolve_config_path
from hip3.hardstop import Latch

LOCK_FILE = "supervisor.lock"


class CliError(Exception):
    """One line for the operator, and a non-zero exit."""


# -------------------------------------------------------------------------------------------------
# The run-directory lock: one supervisor per run directory.
# -------------------------------------------------------------------------------------------------


def _lock_holder(run_dir: Path) -> int | None:
    """The pid holding the lock, or None if no supervisor runs on ``run_dir``."""
    path = run_dir / LOCK_FILE
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


def _acquire_lock(run_dir: Path) -> TextIO:
    f = open(run_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the supervisor's lifetime
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise CliError(f"another supervisor (pid {holder}) is already running on run directory {run_dir}") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


# -------------------------------------------------------------------------------------------------
# The control-socket client.
# -------------------------------------------------------------------------------------------------


def request(cfg: Config, body: dict[str, Any], timeout_ms: int = 3000) -> dict[str, Any]:
    """Send one command to the running supervisor and return its JSON reply."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    try:
        sock.connect(endpoint_address(cfg, "ctl"))
        sock.send(msgspec.json.encode(body))
        reply: dict[str, Any] = msgspec.json.decode(sock.recv())
        return reply
    except zmq.Again:
        raise CliError(f"the supervisor on {cfg.run_path} did not answer within {timeout_ms} ms") from None
    finally:
        sock.close()


# -------------------------------------------------------------------------------------------------
# Commands
# -------------------------------------------------------------------------------------------------


def cmd_start(cfg: Config, config_path: Path, detach: bool, live: bool = False) -> int:
    if cfg.mode == "live" and not live:
        raise CliError("mode = \"live\" trades real money: start it with the explicit opt-in --live")
    if cfg.mode != "live" and live:
        raise CliError(f"--live given but the config's mode is {cfg.mode!r}")
    if cfg.bus.transport == "inproc":
        raise CliError("bus.transport = inproc runs actors as threads inside tests; use ipc or tcp for start")
    run_dir = cfg.run_path
    prepare_run_dir(run_dir)
    if detach:
        return _start_detached(cfg, config_path, live)
    lock = _acquire_lock(run_dir)
    try:
        return _run_foreground(cfg, config_path)
    finally:
        lock.close()
        try:
            (run_dir / LOCK_FILE).unlink()
        except FileNotFoundError:
            pass


def _run_foreground(cfg: Config, config_path: Path) -> int:
    from hip3.logs import setup_logging
    from hip3.metrics import MetricsError
    from hip3.runtime.launchers import ProcessLauncher
    from hip3.runtime.paper import PaperExchange, PaperExchangeError
    from hip3.runtime.supervisor import Supervisor
    from hip3.secrets import SecretError, SigningKey, check_signer, load_signing_key, scrub_environment

    log = setup_logging("supervisor", cfg.run_path, cfg.logging.level, cfg.logging.stderr)
    key: SigningKey | None = None
    exchange: PaperExchange | None = None
    try:
        if cfg.mode == "live":
            key = load_signing_key()
            if key is None:
                raise CliError("live mode needs a key: set HIP3_PRIVATE_KEY or HIP3_KEYSTORE (+ password)")
            check_signer(key, cfg.exchange.signer_address)
            if not cfg.exchange.account_address:
                raise CliError("live mode needs exchange.account_address (the master or sub-account address)")
        scrub_environment()  # no actor inherits a secret through its environment
        if cfg.mode == "paper":
            exchange = PaperExchange(cfg, config_path, log)
            exchange.start()
            key = exchange.key  # a throwaway key for the simulator's account, never a real one
        sup = Supervisor(cfg, ProcessLauncher(config_path, cfg.run_path, key), log, exchange=exchange)
    except (BusError, SecretError, PaperExchangeError, MetricsError) as e:
        if exchange is not None:
            exchange.stop()
        raise CliError(str(e)) from None

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal", signal=signal.Signals(signum).name)
        sup.stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    log.info("supervisor_started", pid=os.getpid(), run_dir=str(cfg.run_path), mode=cfg.mode,
             actors=list(sup.slots), hardstop_latched=sup.latch.state.latched)
    try:
        while not sup.stopping:
            sup.step()
    finally:
        sup.shutdown()
        _print_summary(sup.status())
        sup.close()
    return 0


def _print_summary(status: dict[str, Any]) -> None:
    hs = status["hard_stop"]
    lines = [f"hip3 session ended after {status['uptime_s']} s (run dir {status['run_dir']})",
             f"hard stop: {'LATCHED: ' + str(hs['reason']) if hs['latched'] else 'not latched'} (epoch {hs['epoch']})"]
    for a in status["actors"]:
        lines.append(f"  {a['name']:<17} restarts={a['restarts']}")
    if status.get("trading"):
        from hip3.runtime.trading import format_trading

        lines.extend(format_trading(status["trading"]))
    print("\n".join(lines), file=sys.stderr)


def _start_detached(cfg: Config, config_path: Path, live: bool) -> int:
    run_dir = cfg.run_path
    holder = _lock_holder(run_dir)
    if holder is not None:
        raise CliError(f"another supervisor (pid {holder}) is already running on run directory {run_dir}")
    out = open(run_dir / "logs" / "supervisor.out", "ab")  # noqa: SIM115 - handed to the child
    env = dict(os.environ, HIP3_RUN_DIR=str(run_dir))
    cmd = [sys.executable, str(Path(__file__).resolve()), "start", "--config", str(config_path)]
    proc = subprocess.Popen([*cmd, "--live"] if live else cmd,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=env)
    out.close()
    from hip3.runtime.supervisor import DEFAULT_ORDER

    n_actors = len(cfg.supervisor.actors or DEFAULT_ORDER[cfg.mode])
    # Actors start one after another, each allowed ready_timeout_ms; plus the simulator's start.
    deadline = time.monotonic() + cfg.supervisor.ready_timeout_ms / 1000 * n_actors + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (run_dir / "logs" / "supervisor.out").read_text(errors="replace").strip().splitlines()[-5:]
            raise CliError(f"the supervisor exited with code {proc.returncode}: " + " | ".join(tail))
        if _lock_holder(run_dir) == proc.pid:
            try:
                st = request(cfg, {"cmd": "status"}, timeout_ms=1000)
            except CliError:
                st = None
            if st and st["actors"] and all(a["ready"] for a in st["actors"]):
                print(f"hip3 started (supervisor pid {proc.pid}, run dir {run_dir}); all actors READY")
                return 0
        time.sleep(0.1)
    raise CliError(f"hip3 did not get READY in time (supervisor pid {proc.pid} still running; see "
                   f"{run_dir / 'logs'})")


def cmd_status(cfg: Config, as_json: bool) -> int:
    run_dir = cfg.run_path
    if _lock_holder(run_dir) is None:
        st = Latch.load(run_dir)
        status: dict[str, Any] = {"run_dir": str(run_dir), "running": False,
                                  "hard_stop": {"latched": st.latched, "reason": st.reason, "epoch": st.epoch},
                                  "actors": []}
    else:
        status = request(cfg, {"cmd": "status"})
    if as_json:
        print(msgspec.json.encode(status).decode())
    else:
        print(format_status(status))
    return 0 if status.get("running") else 1


# The counters worth a glance in the table (every counter is in --json).
_TABLE_STATS = ("seq_gaps", "bad_messages", "conn_id", "disconnects", "stale_markets", "bad_frames", "signals",
                "intents", "intents_dropped", "flattens", "orders_sent", "added_latency_p50_us", "positions_closed",
                "resyncs", "journal_rows", "journal_malformed", "journal_errors", "journal_dropped")


def format_status(status: dict[str, Any]) -> str:
    hs = status["hard_stop"]
    out = [f"run dir   {status['run_dir']}  ({'running' if status.get('running') else 'NOT RUNNING'})",
           f"hard stop {'LATCHED: ' + str(hs.get('reason')) if hs['latched'] else 'clear'}  (epoch {hs['epoch']})"]
    if status.get("actors"):
        out.append(f"{'actor':<17} {'pid':>7} {'state':<9} {'ready':<5} {'restarts':>8} {'hb age ms':>9}  counters")
        for a in status["actors"]:
            st = a.get("stats") or {}
            stats = " ".join(f"{k}={st[k]}" for k in _TABLE_STATS if st.get(k))
            hb = "-" if a["heartbeat_age_ms"] is None else str(a["heartbeat_age_ms"])
            out.append(f"{a['name']:<17} {a['pid'] or '-':>7} {a['state']:<9} {'yes' if a['ready'] else 'no':<5} "
                       f"{a['restarts']:>8} {hb:>9}  {stats}")
        out.append(f"sequence gaps: {status.get('seq_gaps', 0)}")
    if status.get("trading"):
        from hip3.runtime.trading import format_trading

        out.extend(format_trading(status["trading"]))
    if status.get("metrics"):
        out.append(f"metrics   {status['metrics']['url']}")
    return "\n".join(out)


def cmd_stop(cfg: Config) -> int:
    run_dir = cfg.run_path
    holder = _lock_holder(run_dir)
    if holder is None:
        print(f"no supervisor is running on {run_dir}")
        return 0
    request(cfg, {"cmd": "stop"})
    deadline = time.monotonic() + cfg.supervisor.stop_timeout_ms / 1000 + 10
    while time.monotonic() < deadline:
        if _lock_holder(run_dir) is None:
            print("hip3 stopped")
            return 0
        time.sleep(0.05)
    raise CliError(f"the supervisor (pid {holder}) did not stop in time")


def cmd_hardstop(cfg: Config, reason: str) -> int:
    run_dir = cfg.run_path
    if _lock_holder(run_dir) is None:
        prepare_run_dir(run_dir)
        latch = Latch(run_dir)
        latch.latch(f"operator: {reason}")
        print(f"hard stop latched (supervisor not running; it will start latched): {latch.state.reason}")
        return 0
    reply = request(cfg, {"cmd": "hardstop", "reason": reason})
    print(f"hard stop latched: {reply['hard_stop']['reason']} (epoch {reply['hard_stop']['epoch']})")
    return 0


def cmd_reset(cfg: Config) -> int:
    run_dir = cfg.run_path
    if _lock_holder(run_dir) is None:
        prepare_run_dir(run_dir)
        latch = Latch(run_dir)
        changed = latch.reset()
    else:
        changed = bool(request(cfg, {"cmd": "reset-hardstop"})["changed"])
    print("hard stop reset" if changed else "hard stop was not latched")
    return 0


def cmd_report(cfg: Config, args: argparse.Namespace) -> int:
    """The session report, the follow-up analysis (``--signals``) or the HTML report (``--html FILE``), from
    the journal of the run directory or of ``--run-dir`` (a replay's); read-only, the supervisor need not run."""
    from hip3.analysis.report_cli import ReportError, run_report

    run_dir = Path(args.run_dir).resolve() if args.run_dir else cfg.run_path
    try:
        text = run_report(run_dir, since=args.since, as_json=args.json, signals=args.signals, html_path=args.html,
                          taker_fee_bps=args.taker_fee_bps)
    except ReportError as e:
        raise CliError(str(e)) from None
    if text:
        print(text)
    return 0


def cmd_replay(cfg: Config, path: str, speed: str, as_json: bool, run_dir: str | None) -> int:
    """Replay a recording (``feed.record_path``) through the actor graph against the matching engine."""
    from hip3.replay.driver import cli

    return cli(path, cfg, speed, as_json, run_dir)


def cmd_optimize(cfg: Config, args: argparse.Namespace) -> int:
    """A parameter search over replays of recordings (``hip3.analysis.optimize``); ``cfg`` is the base."""
    from hip3.analysis.optimize import cli

    return cli(cfg, args.recordings, args.space, args.trials, args.seed, args.workers, args.ray, args.batch,
               args.drawdown_penalty, args.top, args.json, args.keep_runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python supervisor.py", description="run and control hip3")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start every actor (foreground; Ctrl-C stops)")
    p_start.add_argument("--detach", action="store_true", help="return once every actor is READY")
    p_start.add_argument("--live", action="store_true", help="explicit opt-in for mode = live (real money)")
    p_status = sub.add_parser("status", help="actors, READY, hard stop")
    p_status.add_argument("--json", action="store_true")
    sub.add_parser("stop", help="stop the running supervisor and every actor")
    p_hs = sub.add_parser("hardstop", help="latch the hard stop")
    p_hs.add_argument("--reason", required=True)
    sub.add_parser("reset-hardstop", help="clear the hard-stop latch (operator only)")
    p_report = sub.add_parser("report", help="session report from the journal (trades, PnL, latency)")
    p_report.add_argument("--since", help="only events since TIME: an age (30m, 2h, 1d) or an ISO-8601 time")
    p_report.add_argument("--json", action="store_true")
    p_report.add_argument("--run-dir", help="read the journal of this run directory (e.g. a replay's)")
    p_report.add_argument("--signals", action="store_true",
                          help="follow-up analysis of the signals: net edge per horizon, best threshold per market")
    p_report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report (plotly)")
    p_report.add_argument("--taker-fee-bps", type=float, default=None,
                          help="taker fee per leg assumed by --signals (default: HIP-3 tier 0, 9 bps)")
    p_replay = sub.add_parser("replay", help="replay a recorded session (feed.record_path) deterministically")
    p_replay.add_argument("file", help="the recording: feed.record_path, its index, or one part")
    p_replay.add_argument("--speed", default="max", help="'max' (default) or a factor (1 = the recorded pace)")
    p_replay.add_argument("--run-dir", help="the replay's run directory (default: <run_dir>/replays/<file>-<time>)")
    p_replay.add_argument("--json", action="store_true")
    p_opt = sub.add_parser("optimize", help="search parameters over replays of recordings (Optuna, walk-forward)")
    p_opt.add_argument("recordings", nargs="+", help="recordings (files, or an index for its parts), any order")
    p_opt.add_argument("--space", required=True, help="TOML search space (see hip3/analysis/space.py)")
    p_opt.add_argument("--trials", type=int, default=50)
    p_opt.add_argument("--seed", type=int, default=0, help="the same seed and batch give the same study")
    p_opt.add_argument("--workers", type=int, help="local worker processes (default: one per CPU)")
    p_opt.add_argument("--ray", metavar="ADDRESS", help="run the trials on this Ray cluster (host:port, auto)")
    p_opt.add_argument("--batch", type=int, default=8, help="trials asked and run together (default 8)")
    p_opt.add_argument("--drawdown-penalty", type=float, default=1.0,
                       help="objective = net PnL - this x max drawdown (default 1)")
    p_opt.add_argument("--top", type=int, default=10, help="rows of the trial table (default 10)")
    p_opt.add_argument("--keep-runs", metavar="DIR", help="keep every replay's run directory under DIR")
    p_opt.add_argument("--json", action="store_true")
    for p in sub.choices.values():
        p.add_argument("--config", help="config file (default: $HIP3_CONFIG or configs/default.toml)")
    args = parser.parse_args(argv)
    # Everything a session creates (logs, journals, latch, sockets, the paper simulator's files) is readable
    # by the user only; children (forkserver, actors, simulator) inherit the mask.
    os.umask(0o077)
    try:
        config_path = resolve_config_path(args.config)
        cfg = load_config(args.config)
        if args.command == "start":
            return cmd_start(cfg, config_path, args.detach, args.live)
        if args.command == "status":
            return cmd_status(cfg, args.json)
        if args.command == "stop":
            return cmd_stop(cfg)
        if args.command == "hardstop":
            return cmd_hardstop(cfg, args.reason)
        if args.command == "report":
            return cmd_report(cfg, args)
        if args.command == "replay":
            return cmd_replay(cfg, args.file, args.speed, args.json, args.run_dir)
        if args.command == "optimize":
            return cmd_optimize(cfg, args)
        return cmd_reset(cfg)
    except (ConfigError, CliError, BusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

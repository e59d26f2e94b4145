"""hip3's command line: start, watch and stop the actors; raise and reset the hard stop. Installed as ``hip3``.

    python supervisor.py start [--config FILE] [--detach] [--log-format auto|console|json]
    python supervisor.py check [--config FILE]          (the preflight check; ``start`` runs it too)
    python supervisor.py status [--json | --watch] [--config FILE]      (``top`` = ``status --watch``)
    python supervisor.py stop [--flatten [--timeout S]] [--config FILE]
    python supervisor.py hardstop --reason TEXT [--config FILE]
    python supervisor.py reset-hardstop [--config FILE]
    python supervisor.py report [--since TIME] [--json] [--run-dir DIR] [--signals] [--html FILE] [--config FILE]
    python supervisor.py replay FILE [--speed max|X] [--json] [--run-dir DIR] [--config FILE]
    python supervisor.py fund-dex [--usd N] [--yes] [--config FILE]
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

from hip3.config import Config, ConfigError, load_config, resolve_config_path
from hip3.runtime.bus import BusError, endpoint_address, prepare_run_dir
from hip3.runtime.hardstop import Latch, LatchFileError, read_latch
from hip3.ui.status_text import format_status

LOCK_FILE = "supervisor.lock"


class CliError(Exception):
    """One line for the operator, and a non-zero exit (2 unless ``exit_code`` says otherwise)."""

    def __init__(self, text: str, exit_code: int = 2) -> None:
        super().__init__(text)
        self.exit_code = exit_code


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


_LATCH_ADVICE = ("; hip3 does not start without a hard-stop latch it can read and write: repair that path (free "
                 "the disk, fix permissions, or remove what is there: no file means not latched), then start again")


def check_latch_file(run_dir: Path, write: bool = True) -> None:
    """Refuse a start whose hard-stop latch cannot be read (was the account stopped?) or written (a hard
    stop would not survive a restart): one line saying which file and what to do. ``write`` rewrites the
    record, so only under the run directory's lock."""
    try:
        latch = Latch(run_dir)
        if write:
            latch.check_writable()
    except LatchFileError as e:
        raise CliError(f"{e}{_LATCH_ADVICE}") from None


def cmd_start(cfg: Config, config_path: Path, detach: bool, live: bool = False, log_format: str = "auto") -> int:
    if cfg.mode == "live" and not live:
        raise CliError("mode = \"live\" trades real money: start it with the explicit opt-in --live")
    if cfg.mode != "live" and live:
        raise CliError(f"--live given but the config's mode is {cfg.mode!r}")
    if cfg.bus.transport == "inproc":
        raise CliError("bus.transport = inproc runs actors as threads inside tests; use ipc or tcp for start")
    run_dir = cfg.run_path
    prepare_run_dir(run_dir)
    if detach:
        check_latch_file(run_dir, write=False)  # the started supervisor checks the write, under the lock
        return _start_detached(cfg, config_path, live)
    lock = _acquire_lock(run_dir)
    try:
        check_latch_file(run_dir)
        console = log_format == "console" or (log_format == "auto" and sys.stdout.isatty())
        return _run_foreground(cfg, config_path, console)
    finally:
        lock.close()
        try:
            (run_dir / LOCK_FILE).unlink()
        except FileNotFoundError:
            pass


def _run_foreground(cfg: Config, config_path: Path, console: bool = False) -> int:
    """Run the supervisor's loop here until a signal or ``stop``. ``console``: readable coloured lines on
    stdout (``hip3.ui.terminal``) instead of every process's JSON lines on stderr."""
    from hip3.ops.alerts import AlertsError
    from hip3.ops.preflight_cli import EXIT_TRANSIENT, PreflightFailed, preflight_for_start
    from hip3.ops.service import Service
    from hip3.runtime.launchers import ProcessLauncher
    from hip3.runtime.logs import setup_logging
    from hip3.runtime.metrics import MetricsError
    from hip3.runtime.paper import PaperExchange, PaperExchangeError, open_paper_exchange
    from hip3.runtime.secrets import SecretError, SigningKey, check_signer, load_signing_key, scrub_environment
    from hip3.runtime.supervisor import Supervisor

    log = setup_logging("supervisor", cfg.run_path, cfg.logging.level, cfg.logging.stderr and not console,
                        cfg.logging)
    service = Service.from_environment(cfg, log)  # systemd's variables are this process's, no child's
    term = None
    if console:
        from hip3.ui.terminal import open_terminal

        term = open_terminal(cfg.run_path / "logs")
    key: SigningKey | None = None
    exchange: PaperExchange | None = None
    try:
        if cfg.mode == "live":
            key = load_signing_key()
            if key is None:
                raise CliError("live mode needs a key: set HIP3_PRIVATE_KEY (or _FILE) or HIP3_KEYSTORE (+ password)")
            check_signer(key, cfg.exchange.signer_address)
            if not cfg.exchange.account_address:
                raise CliError("live mode needs exchange.account_address (the master or sub-account address)")
        scrubbed = scrub_environment()  # no actor inherits a secret through its environment
        if cfg.mode == "paper":  # its own simulator and a throwaway key, or one of its own (exchange.rest_url)
            exchange, key = open_paper_exchange(cfg, config_path, log, scrubbed)
        # Before any actor: a misspelt market, an unreachable host or a wrong key is refused here, one line each.
        preflight_for_start(cfg, log, key.address if key else None,
                            "paper: the session's own key" if cfg.mode == "paper" else "the key from the environment")
        stderr_path = cfg.run_path / "logs" / "actors.stderr" if console else None
        sup = Supervisor(cfg, ProcessLauncher(config_path, cfg.run_path, key, stderr_path), log, exchange=exchange)
    except LatchFileError as e:
        if exchange is not None:
            exchange.stop()
        if term is not None:
            term.close()
        raise CliError(f"{e}{_LATCH_ADVICE}") from None
    except (BusError, SecretError, PaperExchangeError, MetricsError, AlertsError, PreflightFailed) as e:
        if exchange is not None:
            exchange.stop()
        if term is not None:
            term.close()
        transient = isinstance(e, PreflightFailed) and e.transient
        raise CliError(str(e), EXIT_TRANSIENT if transient else 2) from None
    if term is not None:
        sup.board.listeners.append(term.on_trade)

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
            service.tick(sup)  # READY=1, the watchdog's pings (only from a loop that turns), STATUS=
            if term is not None:
                term.tick(sup.status)
    finally:
        service.stopping()
        sup.shutdown()
        from hip3.ui.stopping import end_of_session, print_summary

        status, left = end_of_session(sup)
        if term is not None:
            term.close()
            term.print_end(status, left)
        else:
            print_summary(status, left)
        sup.close()
    return 0


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
    from hip3.runtime.roster import start_order

    n_actors = len(cfg.supervisor.actors or start_order(cfg.mode))
    # Actors start one after another, each allowed ready_timeout_ms; plus the simulator's start.
    deadline = time.monotonic() + cfg.supervisor.ready_timeout_ms / 1000 * n_actors + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (run_dir / "logs" / "supervisor.out").read_text(errors="replace").strip().splitlines()[-20:]
            if tail and tail[-1].startswith("error: "):  # its own refusal (a line per problem): pass it on as it is
                raise CliError("\nerror: ".join(t.removeprefix("error: ") for t in tail if t.startswith("error: ")),
                               proc.returncode or 2)
            raise CliError(f"the supervisor exited with code {proc.returncode}: " + " | ".join(tail))
        if _lock_holder(run_dir) == proc.pid:
            try:
                st = request(cfg, {"cmd": "status"}, timeout_ms=1000)
            except CliError:
                st = None
            if st and st["actors"] and all(a["ready"] for a in st["actors"]):
                print(f"hip3 started (supervisor pid {proc.pid}, run dir {run_dir}); all actors READY")
                return 0
            refused = [a for a in (st or {}).get("actors", []) if a["ready_detail"].startswith("start refused")]
            if refused:  # its own reason, now: waiting longer would only restart it until the limit
                a = refused[0]
                raise CliError(f"{a['name']} {a['ready_detail']} (supervisor pid {proc.pid} still running, "
                               "restarting it: `stop` it, fix that, start again)")
        time.sleep(0.1)
    raise CliError(f"hip3 did not get READY in time (supervisor pid {proc.pid} still running; see "
                   f"{run_dir / 'logs'})")


def _status(cfg: Config) -> dict[str, Any]:
    run_dir = cfg.run_path
    if _lock_holder(run_dir) is None:
        hard_stop: dict[str, Any]
        try:
            st = read_latch(run_dir / "hardstop.json")
            hard_stop = {"latched": st.latched, "reason": st.reason, "epoch": st.epoch}
        except LatchFileError as e:  # unknown: reported, and a start refuses it
            hard_stop = {"latched": None, "reason": None, "epoch": None, "unreadable": str(e)}
        return {"run_dir": str(run_dir), "running": False, "hard_stop": hard_stop, "actors": []}
    return request(cfg, {"cmd": "status"})


def cmd_status(cfg: Config, as_json: bool, watch: bool = False) -> int:
    if watch:
        from hip3.ui.live import watch as live_watch

        return live_watch(lambda: _status(cfg))
    status = _status(cfg)
    if as_json:
        print(msgspec.json.encode(status).decode())
    else:
        print(format_status(status))
    return 0 if status.get("running") else 1


def cmd_stop(cfg: Config, flatten: bool = False, timeout_s: float = 30.0) -> int:
    """Stop, and list what stays open at the exchange; ``flatten``: to zero first (``hip3.ui.stopping``)."""
    from hip3.ui.stopping import StopTimeout, stop_session

    run_dir = cfg.run_path
    try:
        return stop_session(lambda body: request(cfg, body), lambda: _lock_holder(run_dir), run_dir, flatten,
                            timeout_s, cfg.supervisor.stop_timeout_ms / 1000 + 10, print)
    except StopTimeout as e:
        raise CliError(str(e)) from None


def cmd_hardstop(cfg: Config, reason: str) -> int:
    run_dir = cfg.run_path
    if _lock_holder(run_dir) is None:
        prepare_run_dir(run_dir)
        try:
            latch = Latch(run_dir)
        except LatchFileError as e:
            raise CliError(f"hard stop NOT latched: {e}") from None
        latch.latch(f"operator: {reason}")
        if not latch.persisted:  # no supervisor runs: a latch only this process's memory knows is none
            raise CliError(f"hard stop NOT latched: cannot write {latch.path}: {latch.persist_error}")
        print(f"hard stop latched (supervisor not running; it will start latched): {latch.state.reason}")
        return 0
    reply = request(cfg, {"cmd": "hardstop", "reason": reason})
    hs = reply["hard_stop"]
    if not hs.get("persisted", True):
        print(f"hard stop LATCHED IN MEMORY ONLY (epoch {hs['epoch']}): {hs['reason']}; NOT saved: cannot write "
              f"{hs['path']}: {hs['persist_error']}; the actors are flattening, the supervisor keeps retrying "
              "the write; do not stop hip3 before `status` shows it saved")
        return 1
    print(f"hard stop latched: {hs['reason']} (epoch {hs['epoch']})")
    return 0


def cmd_reset(cfg: Config) -> int:
    run_dir = cfg.run_path
    if _lock_holder(run_dir) is None:
        prepare_run_dir(run_dir)
        try:
            changed = Latch(run_dir).reset()
        except LatchFileError as e:
            raise CliError(f"hard stop NOT reset: {e}" if "NOT reset" not in str(e) else str(e)) from None
    else:
        reply = request(cfg, {"cmd": "reset-hardstop"})
        if not reply.get("ok"):
            raise CliError(str(reply.get("error")))
        changed = bool(reply["changed"])
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


def cmd_fund_dex(cfg: Config, usd: str | None, yes: bool) -> int:
    """Move USDC from the perp balance to the traded HIP-3 dex: one user-signed sendAsset, only when run.

    Paper mode: through the running supervisor (it alone holds the session's key). Otherwise the account's
    own key must be in HIP3_PRIVATE_KEY / HIP3_KEYSTORE for this command (an API wallet cannot move funds);
    on mainnet ``--yes`` is required."""
    from hip3.account.funding import FundingError, fund_with_own_key, parse_amount

    try:
        amount = parse_amount(usd, cfg.collateral.transfer_usd)
    except FundingError as e:
        raise CliError(str(e)) from None
    if cfg.exchange.network == "sim":
        if _lock_holder(cfg.run_path) is None:
            raise CliError("paper mode: start hip3 first (the supervisor holds the simulated account's key)")
        reply = request(cfg, {"cmd": "fund-dex", "usd": str(amount)}, timeout_ms=10_000)
        if not reply.get("ok"):
            raise CliError(str(reply.get("error")))
        print(reply["line"])
        return 0
    try:
        print(fund_with_own_key(cfg, amount, yes))
    except FundingError as e:
        raise CliError(str(e)) from None
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
    prog = "hip3" if Path(sys.argv[0]).name == "hip3" else "python supervisor.py"  # the console script, or this
    parser = argparse.ArgumentParser(prog=prog, description="run and control hip3")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start every actor (foreground; Ctrl-C stops)")
    p_start.add_argument("--detach", action="store_true", help="return once every actor is READY")
    p_start.add_argument("--live", action="store_true", help="explicit opt-in for mode = live (real money)")
    p_start.add_argument("--log-format", choices=("auto", "console", "json"), default="auto",
                         help="terminal output: readable lines (console; auto on a terminal) or JSON lines")
    sub.add_parser("check", help="preflight: markets, hosts, key, dex funding, fees (start runs it too)")
    p_status = sub.add_parser("status", help="actors, READY, hard stop")
    p_status.add_argument("--json", action="store_true")
    p_status.add_argument("--watch", action="store_true", help="a live screen, refreshed every second")
    sub.add_parser("top", help="the live screen (status --watch)")
    p_stop = sub.add_parser("stop", help="stop the running supervisor and every actor; list what stays open")
    p_stop.add_argument("--flatten", action="store_true", help="flatten to zero positions and orders first")
    p_stop.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for --flatten (default 30)")
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
    p_fund = sub.add_parser("fund-dex", help="move USDC from the perp balance to the traded HIP-3 dex (sendAsset)")
    p_fund.add_argument("--usd", help="the amount (default: [collateral] transfer_usd)")
    p_fund.add_argument("--yes", action="store_true", help="required on mainnet: real money moves")
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
            return cmd_start(cfg, config_path, args.detach, args.live, args.log_format)
        if args.command == "check":
            from hip3.ops.preflight_cli import cmd_check

            return cmd_check(cfg, config_path, lambda: _status(cfg) if _lock_holder(cfg.run_path) else None)
        if args.command in ("status", "top"):
            return cmd_status(cfg, getattr(args, "json", False), args.command == "top" or args.watch)
        if args.command == "stop":
            return cmd_stop(cfg, args.flatten, args.timeout)
        if args.command == "hardstop":
            return cmd_hardstop(cfg, args.reason)
        if args.command == "report":
            return cmd_report(cfg, args)
        if args.command == "replay":
            return cmd_replay(cfg, args.file, args.speed, args.json, args.run_dir)
        if args.command == "fund-dex":
            return cmd_fund_dex(cfg, args.usd, args.yes)
        if args.command == "optimize":
            return cmd_optimize(cfg, args)
        return cmd_reset(cfg)
    except (ConfigError, CliError, BusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code if isinstance(e, CliError) else 2


if __name__ == "__main__":
    sys.exit(main())

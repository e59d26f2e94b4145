"""``start``: refuse what would not be safe to run (live without its opt-in, a latch that cannot be read
or written), then run the supervisor's loop in this process until a signal or ``stop``, or start it
detached and return once every actor is READY."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hip3.config import Config
from hip3.ops.ctl import LOCK_FILE, CliError, _acquire_lock, lock_holder, request
from hip3.runtime.bus import BusError, prepare_run_dir
from hip3.runtime.hardstop import Latch, LatchFileError

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


def cmd_start(cfg: Config, config_path: Path, script: Path, detach: bool, live: bool = False,
              log_format: str = "auto") -> int:
    """``script``: the command line's own file (``supervisor.py``), which a detached start runs again."""
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
        return _start_detached(cfg, config_path, script, live)
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


def _start_detached(cfg: Config, config_path: Path, script: Path, live: bool) -> int:
    run_dir = cfg.run_path
    holder = lock_holder(run_dir)
    if holder is not None:
        raise CliError(f"another supervisor (pid {holder}) is already running on run directory {run_dir}")
    out = open(run_dir / "logs" / "supervisor.out", "ab")  # noqa: SIM115 - handed to the child
    env = dict(os.environ, HIP3_RUN_DIR=str(run_dir))
    cmd = [sys.executable, str(script), "start", "--config", str(config_path)]
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
        if lock_holder(run_dir) == proc.pid:
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

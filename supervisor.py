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
import os
import sys
from pathlib import Path

from hip3.config import ConfigError, load_config, resolve_config_path
from hip3.ops.commands import (
    cmd_fund_dex,
    cmd_hardstop,
    cmd_optimize,
    cmd_replay,
    cmd_report,
    cmd_reset,
    cmd_status,
    cmd_stop,
)
from hip3.ops.ctl import CliError, lock_holder, read_status
from hip3.ops.start import cmd_start
from hip3.runtime.bus import BusError

# Commands that only read: a reader that goes away early loses nothing.
_READ_ONLY = frozenset({"status", "top", "check", "report"})


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
            return cmd_start(cfg, config_path, Path(__file__).resolve(), args.detach, args.live, args.log_format)
        if args.command == "check":
            from hip3.ops.preflight_cli import cmd_check

            return cmd_check(cfg, config_path, lambda: read_status(cfg) if lock_holder(cfg.run_path) else None)
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
    except BrokenPipeError:
        # The reader went away (``status | head``). ``start`` runs the session: its own handling decides.
        if args.command == "start":
            raise
        # Later writes, and the interpreter's last flush, go nowhere instead of raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        if args.command in _READ_ONLY:
            return 0
        # A command that acts may have stopped before it finished: say so, and do not claim success.
        print(f"error: the output of `{args.command}` was closed before it finished; `status` shows what "
              "happened", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The commands that speak to a running supervisor (``status``, ``stop``, ``hardstop``, ``reset-hardstop``,
``fund-dex``), or act on the run directory when none runs, and the offline ones (``report``, ``replay``,
``optimize``). Each prints its result and returns the exit code; a refusal is a ``CliError``."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from hip3.config import Config
from hip3.ops.ctl import CliError, lock_holder, read_status, request
from hip3.runtime.bus import prepare_run_dir
from hip3.runtime.hardstop import Latch, LatchFileError
from hip3.ui.status_text import format_status


def cmd_status(cfg: Config, as_json: bool, watch: bool = False) -> int:
    if watch:
        from hip3.ui.live import watch as live_watch

        return live_watch(lambda: read_status(cfg))
    status = read_status(cfg)
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
        return stop_session(lambda body: request(cfg, body), lambda: lock_holder(run_dir), run_dir, flatten,
                            timeout_s, cfg.supervisor.stop_timeout_ms / 1000 + 10, print)
    except StopTimeout as e:
        raise CliError(str(e)) from None


def cmd_hardstop(cfg: Config, reason: str) -> int:
    run_dir = cfg.run_path
    if lock_holder(run_dir) is None:
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
    if lock_holder(run_dir) is None:
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
        if lock_holder(cfg.run_path) is None:
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

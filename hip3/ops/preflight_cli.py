"""``python supervisor.py check`` and the same check in ``start``, before any actor starts.

* ``start``: the exchange is known by then (paper mode: the supervisor's simulator has just started, its
  session key made), so the check runs against exactly what the actors will use. A ``fatal`` finding
  refuses the start, one ``error:`` line each, before any actor or socket exists: nothing latches.
  The others are logged (the console shows them) and the start goes on: the actors refuse entries for
  those reasons themselves, and in paper mode ``fund-dex`` needs the running supervisor.
* ``check``: every finding, one line each, and the exit code: 0 when hip3 would start and send entries,
  1 when it would refuse to start or refuse entries, 130 when interrupted. Paper mode checks against the
  simulator of the supervisor running on the run directory, else against a simulator started for the
  check in a temporary directory (the run directory is left alone) and stopped after it.

A SIGTERM or Ctrl-C ends the check at once (a blocked request included) with one line naming what it
was waiting for; nothing has been started then.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from hip3.config import ENV_EXCHANGE_URL, Config, account_address, exchange_urls
from hip3.ops.preflight import Finding, PreflightInterrupted, Retry, run_checks
from hip3.runtime.logs import Log
from hip3.runtime.paper import PaperExchangeError

__all__ = ["EXIT_TRANSIENT", "PreflightFailed", "cmd_check", "preflight_for_start"]

ATTEMPTS = 3  # per request: about 1.5 s of waits in all, plus the requests' own timeouts
WAIT_S = 0.5
INTERRUPTED_EXIT = 130


# The start was refused only because a host did not answer (EX_TEMPFAIL): a service manager restarts on
# it (deploy/hip3.service refuses to restart only on 2, a refusal that a restart cannot mend).
EXIT_TRANSIENT = 75


class PreflightFailed(Exception):
    """The start is refused; ``str`` is the problems, one ``error:`` line each (the CLI adds the first).
    ``transient``: every problem was a host that did not answer (worth starting again soon)."""

    def __init__(self, lines: list[str], transient: bool = False) -> None:
        super().__init__("\nerror: ".join(lines))
        self.lines = lines
        self.transient = transient


@contextmanager
def interruptible(retry: Retry) -> Iterator[None]:
    """SIGTERM and SIGINT end the check at once, a blocked request included, naming what it waited for (in
    the main thread; elsewhere only ``retry.stop`` does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        retry.stop.set()
        raise PreflightInterrupted(f"{signal.Signals(signum).name} while waiting for {retry.current}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _log_findings(log: Log, findings: list[Finding], ms: float) -> None:
    for f in findings:
        if f.severity == "ok":
            log.info("preflight", topic=f.topic, detail=f.text)
        elif f.severity == "fatal":
            log.error("preflight_failed", topic=f.topic, detail=f.text)
        else:
            log.warning("preflight_" + f.severity, topic=f.topic, detail=f.text)
    log.info("preflight_done", ms=round(ms, 1), problems=sum(f.severity != "ok" for f in findings))


def preflight_for_start(cfg: Config, log: Log, key_address: str | None, key_source: str) -> list[Finding]:
    """The check in ``start``, once the exchange and the key are known and before any actor starts;
    ``PreflightFailed`` when the start must be refused."""
    rest_url, ws_url = exchange_urls(cfg)
    stop = threading.Event()
    retry = Retry(ATTEMPTS, WAIT_S, stop, note=lambda text: log.warning("preflight_retry", detail=text))
    t0 = time.monotonic()
    log.info("preflight_started", rest_url=rest_url, ws_url=ws_url, markets=len(cfg.markets))
    try:
        with interruptible(retry):
            findings = run_checks(cfg, rest_url, ws_url, key_address, key_source, account_address(cfg), log, retry)
    except PreflightInterrupted as e:
        raise PreflightFailed([f"preflight check interrupted by {e}: nothing was started"]) from None
    _log_findings(log, findings, (time.monotonic() - t0) * 1000)
    fatal = [f for f in findings if f.severity == "fatal"]
    if fatal:
        raise PreflightFailed([*(f.text for f in fatal), "nothing was started; `python supervisor.py check` repeats "
                               "the check"], transient=all(f.transient for f in fatal))
    return findings


def _quiet_log() -> Log:
    """The check's own log: nowhere (its findings are printed); never Python's last-resort stderr handler."""
    logger = logging.getLogger("hip3.check")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return Log("check")


def _live_key(cfg: Config) -> tuple[str | None, str]:
    from hip3.runtime.secrets import SecretError, check_signer, load_signing_key

    try:
        key = load_signing_key()
        if key is None:
            return None, "no key: set HIP3_PRIVATE_KEY or HIP3_KEYSTORE (+ HIP3_KEYSTORE_PASSWORD[_FILE])"
        check_signer(key, cfg.exchange.signer_address)
    except SecretError as e:
        return None, str(e)
    return key.address, "the key from the environment" + (" (keystore)" if os.environ.get("HIP3_KEYSTORE") else "")


def cmd_check(cfg: Config, config_path: Path, running: Callable[[], dict[str, Any] | None],
              say: Callable[[str], None] = print) -> int:
    """The ``check`` command (see the module docstring); ``running`` is the running supervisor's status on
    this run directory, or None."""
    log = _quiet_log()
    stop = threading.Event()
    retry = Retry(ATTEMPTS, WAIT_S, stop, note=lambda text: say(f"...   {text}"))
    exchange = None
    tmp: str | None = None
    try:
        with interruptible(retry):
            key_address: str | None = None
            key_source = ""
            where = ""
            if cfg.exchange.network == "sim":
                st = running()
                ex = (st or {}).get("exchange")
                if ex:
                    os.environ[ENV_EXCHANGE_URL] = ex["url"]
                    os.environ["HIP3_ACCOUNT_ADDRESS"] = ex["account"]
                    key_address, key_source = ex["account"], "the running paper session's key"
                    where = f" (the simulator of the supervisor running on {cfg.run_path})"
                else:
                    from hip3.runtime.paper import PaperExchange

                    retry.current = "the built-in simulator to start"
                    tmp = tempfile.mkdtemp(prefix="hip3-check-")
                    os.environ["HIP3_RUN_DIR"] = tmp  # the simulator's files and the specs' cache go there
                    exchange = PaperExchange(cfg, config_path, log)
                    exchange.start()
                    key_address, key_source = exchange.key.address, "paper: a key made up for the session"
                    where = " (a simulator started for this check)"
            elif cfg.mode == "live":
                key_address, key_source = _live_key(cfg)
            rest_url, ws_url = exchange_urls(cfg)
            say(f"hip3 check: {cfg.mode} mode, config {config_path}, exchange {rest_url}{where}")
            findings = run_checks(cfg, rest_url, ws_url, key_address, key_source, account_address(cfg), log, retry)
    except PreflightInterrupted as e:
        say(f"check interrupted by {e}")
        return INTERRUPTED_EXIT
    except PaperExchangeError as e:
        say(f"FAIL  simulator   cannot start the built-in simulator for the check: {e}")
        return 1
    finally:
        if exchange is not None:
            exchange.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    for f in findings:
        say(f.line())
    fatal = sum(f.severity == "fatal" for f in findings)
    block = sum(f.severity == "block" for f in findings)
    if fatal:
        say(f"{fatal} FAIL: `start` would refuse to start" + (f"; {block} BLOCK: entries would be refused" if block
                                                              else ""))
    elif block:
        say(f"{block} BLOCK: hip3 would start but refuse entries until fixed")
    else:
        say("all checks passed")
    return 1 if fatal or block else 0

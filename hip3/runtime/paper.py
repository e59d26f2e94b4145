"""Paper mode's exchange: the built-in simulator as a supervised child process, and its account.

The supervisor starts ``python -m hip3.sim`` on 127.0.0.1 (never beyond loopback), with its order log
at ``<run_dir>/sim/orders.jsonl`` and a throwaway account funded with ``PAPER_FUNDS_USD``: a fresh random
key made for this session (a paper session never uses a real key, whatever the environment holds).
Actors learn the simulator's address and the account from ``HIP3_EXCHANGE_URL`` and
``HIP3_ACCOUNT_ADDRESS``, which are set before any actor starts; only the executor gets the key.

``fund-dex`` in paper mode (``python supervisor.py fund-dex``) comes here through the supervisor, which
alone holds the session's key: the same signed ``sendAsset`` as on the real exchange (``hip3.account.funding``).

With ``exchange.rest_url`` set, the simulator is not the supervisor's: it runs as its own process
(``python -m hip3.sim --fund ADDRESS:USD``: its own unit or container, or a test's), and outlives a
supervisor that dies, as a real exchange would, with the positions it holds (``open_paper_exchange``).

If the simulator dies it is restarted on the same port with a fresh state (a paper exchange has no
durable state), and the event is logged as critical: positions at the "exchange" are gone, and the
position tracker's resync will show it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

from hip3.config import ENV_ACCOUNT_ADDRESS, ENV_EXCHANGE_URL, REPO_ROOT, Config, exchange_urls
from hip3.runtime.logs import Log
from hip3.runtime.sched import background_priority
from hip3.runtime.secrets import ENV_SIM_KEY, SecretError, SigningKey

PAPER_FUNDS_USD = Decimal(100_000)
_READY_PREFIX = "SIM READY port="


class PaperExchangeError(Exception):
    """The simulator could not be started."""


def _child_setup() -> None:  # runs in the child between fork and exec
    # Its own process group: Ctrl-C on the terminal reaches the supervisor, not the simulator, which the
    # supervisor stops after the actors (a simulator gone first made every connected actor log a
    # disconnect warning on the way out). It still dies with the supervisor (the signal below).
    os.setpgid(0, 0)
    # A remote exchange never runs on our cores: keep the simulator from preempting the executor's send
    # (hip3.runtime.sched).
    background_priority(nice=0)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass


class PaperExchange:
    """The simulator process for one supervisor session."""

    def __init__(self, cfg: Config, config_path: Path, log: Log, seed: int = 1) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.log = log
        self.seed = seed
        self.dir = cfg.run_path / "sim"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.order_log = self.dir / "orders.jsonl"
        self.key = SigningKey("0x" + secrets.token_hex(32))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the simulator and wait for its READY line; export its address and the account."""
        out_path = self.dir / "stdout.log"
        out = open(out_path, "ab")  # noqa: SIM115 - handed to the child
        start_at = out.tell()
        cmd = [sys.executable, "-m", "hip3.sim", "--host", "127.0.0.1", "--port", str(self.port),
               "--seed", str(self.seed), "--order-log", str(self.order_log),
               "--fund", f"{self.key.address}:{PAPER_FUNDS_USD}"]
        if self.cfg.sim:
            cmd += ["--config", str(self.config_path)]
        # The simulator imports hip3 exactly as this process does, wherever it was started from.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        env.pop(self.cfg.alerts.urls_env, None)  # the alerts' destinations hold tokens: not the simulator's
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                     preexec_fn=_child_setup)
        out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = out_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise PaperExchangeError(f"the simulator exited with code {self.proc.returncode}: {' | '.join(tail)}")
            with open(out_path, "rb") as f:
                f.seek(start_at)
                for line in f.read().decode(errors="replace").splitlines():
                    if line.startswith(_READY_PREFIX):
                        self.port = int(line[len(_READY_PREFIX):].split()[0])
                        os.environ[ENV_EXCHANGE_URL] = self.url
                        os.environ[ENV_ACCOUNT_ADDRESS] = self.key.address
                        self.log.info("paper_exchange_ready", url=self.url, account=self.key.address,
                                      order_log=str(self.order_log), pid=self.proc.pid)
                        return
            time.sleep(0.05)
        self.stop()
        raise PaperExchangeError(f"the simulator did not report READY within {timeout_s:g} s")

    def fund_dex(self, amount: Decimal) -> str:
        """Move ``amount`` USDC from the paper account's perp balance to the traded dex (a signed
        ``sendAsset``); the result line. ``FundingError`` if refused."""
        from hip3.account.funding import move_to_dex, resolve_dex
        from hip3.hyperliquid.rest import RestClient

        rest = RestClient(self.url, timeout_s=3.0, info_retries=0)
        dex = resolve_dex(rest, self.cfg.exchange.dex_pattern)
        res = move_to_dex(rest, self.key, self.key.address, dex, amount, is_mainnet=False,
                          nonce_ms=time.time_ns() // 1_000_000)
        return res.line()

    def check(self) -> None:
        """Restart the simulator if it died (called from the supervisor's loop)."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self.restarts += 1
            self.log.critical("paper_exchange_died", exitcode=code, restarts=self.restarts,
                              note="restarting with a fresh state: simulated positions are gone")
            self.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(2)


def open_paper_exchange(cfg: Config, config_path: Path, log: Log, secrets: Mapping[str, str]
                        ) -> tuple[PaperExchange | None, SigningKey]:
    """Paper mode's exchange and the key of its account.

    Without ``exchange.rest_url``: the supervisor's own simulator (started here, its child) and the
    throwaway key it funds. With it: no simulator is started; the account's key is ``HIP3_SIM_KEY`` (taken
    from ``secrets``, the variables scrubbed from the environment), never ``HIP3_PRIVATE_KEY``: paper mode
    does not read the live key, whatever the environment holds. ``PaperExchangeError`` (one line) if it
    is missing or malformed, or the simulator cannot be started.
    """
    if not cfg.exchange.rest_url:
        exchange = PaperExchange(cfg, config_path, log)
        exchange.start()
        return exchange, exchange.key
    url = exchange_urls(cfg)[0]
    raw = secrets.get(ENV_SIM_KEY, "").strip()
    if not raw:
        raise PaperExchangeError(f"paper mode against the simulator at {url} (exchange.rest_url): set {ENV_SIM_KEY} "
                                 "to the key of the account it funds (python -m hip3.sim --fund ADDRESS:USD)")
    try:
        key = SigningKey(raw)
    except SecretError:
        raise PaperExchangeError(f"{ENV_SIM_KEY} is not a 32-byte hex key") from None
    if not cfg.exchange.account_address:
        os.environ[ENV_ACCOUNT_ADDRESS] = key.address
    log.info("paper_exchange_external", url=url, account=cfg.exchange.account_address.lower() or key.address)
    return None, key

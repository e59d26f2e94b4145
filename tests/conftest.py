"""Shared fixtures: short run directories (ipc socket paths are limited to ~100 bytes) and configs."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hip3.config import Config, parse_config

BASE_TOML = """
mode = "paper"
[exchange]
network = "sim"
[[markets]]
coin = "xyz:GOLD"
[[markets]]
coin = "xyz:SILVER"
[logging]
stderr = false
"""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="h3t", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def make_config(run_dir: Path, extra: str = "", base: str = BASE_TOML) -> Config:
    return parse_config(f'run_dir = "{run_dir}"\n' + base + extra, "test.toml")


# -------------------------------------------------------------------------------------------------
# A running simulator with a funded account, for integration tests of the actors.
# -------------------------------------------------------------------------------------------------

SIM_TOML = """
mode = "paper"
[exchange]
network = "sim"
[bus]
transport = "inproc"
[logging]
stderr = false
"""


@pytest.fixture
def paper_key() -> str:
    """A fresh key for the simulated account (test only; never a real key)."""
    import secrets

    return "0x" + secrets.token_hex(32)


@pytest.fixture
def sim_server(paper_key: str, run_dir: Path) -> Iterator[object]:
    """The exchange simulator on 127.0.0.1 with a fast market model and the paper key's account funded."""
    from decimal import Decimal

    from eth_account import Account

    from hip3.sim.app import SimServer
    from hip3.sim.params import ModelParams, SimParams

    # The dead man's switch's volume gate is off here (the executor tests arm it); tests of the gate set
    # their own simulator (tests/actors/test_admission.py).
    params = SimParams(model=ModelParams(tick_ms=20, oracle_interval_ms=300, refresh_ms=200, maker_lag_ms=400),
                       schedule_cancel_min_volume_usd=0.0)
    address = Account.from_key(paper_key).address.lower()
    server = SimServer(params, seed=11, funds={address: Decimal(100_000)},
                       order_log=str(run_dir / "orders.jsonl"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def sim_config(run_dir: Path, sim_url: str, account: str, markets: tuple[str, ...] = ("xyz:GOLD", "xyz:SILVER"),
               extra: str = "") -> Config:
    """A paper config pointing at a running simulator, inproc transport (actors as threads)."""
    text = f'run_dir = "{run_dir}"\n' + SIM_TOML
    exchange = f'network = "sim"\nrest_url = "{sim_url}"\naccount_address = "{account}"\n'
    text = text.replace('network = "sim"\n', exchange)
    text += "".join(f'[[markets]]\ncoin = "{m}"\n' for m in markets)
    return parse_config(text + extra, "test.toml")


def stop_process(proc: subprocess.Popen[Any], grace_s: float) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL: a test's child process, bounded in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)

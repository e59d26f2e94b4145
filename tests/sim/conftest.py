"""Fixtures for the simulator tests: a fast market model, a funded wallet, a running server."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import eth_account
import pytest
from eth_account.signers.local import LocalAccount

from hip3.sim.app import SimServer
from hip3.sim.params import ModelParams, SimParams

FAST = SimParams(model=ModelParams(tick_ms=20, oracle_interval_ms=200, refresh_ms=100, maker_lag_ms=300))


@pytest.fixture
def wallet() -> LocalAccount:
    return eth_account.Account.create()


@pytest.fixture
def sim(wallet: LocalAccount, tmp_path: Path) -> Iterator[SimServer]:
    s = SimServer(
        FAST,
        seed=7,
        funds={wallet.address.lower(): Decimal(100_000)},
        order_log=str(tmp_path / "orders.jsonl"),
    )
    s.start()
    yield s
    s.stop()

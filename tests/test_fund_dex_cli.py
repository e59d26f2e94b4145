"""``python supervisor.py fund-dex`` outside paper mode: the account's own key from the environment signs one
sendAsset; a wrong key, a missing amount or mainnet without ``--yes`` are refused with one line, before
anything is sent, and the key never shows. Against the simulator on loopback (its rest_url in the config)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import eth_account
import pytest
from eth_account.signers.local import LocalAccount

import supervisor
from hip3.sim.app import SimServer
from hip3.sim.params import SimParams
from tests.sim.conftest import FAST


@pytest.fixture
def perp_only(wallet: LocalAccount, tmp_path: Path) -> Iterator[SimServer]:
    s = SimServer(SimParams(model=FAST.model, funds_on="perp"), seed=1, funds={wallet.address.lower(): Decimal(500)},
                  order_log=str(tmp_path / "orders.jsonl"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def wallet() -> LocalAccount:
    return eth_account.Account.create()


def _config(tmp_path: Path, sim: SimServer, account: str, network: str = "testnet", extra: str = "") -> Path:
    path = tmp_path / "live.toml"
    path.write_text(f'''mode = "observe"
run_dir = "{tmp_path / "run"}"
[exchange]
network = "{network}"
rest_url = "{sim.url}"
account_address = "{account}"
[logging]
stderr = false
''' + extra)
    return path


def _run(args: list[str], key: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
         ) -> tuple[int, str]:
    monkeypatch.delenv("HIP3_KEYSTORE", raising=False)
    if key is None:
        monkeypatch.delenv("HIP3_PRIVATE_KEY", raising=False)
    else:
        monkeypatch.setenv("HIP3_PRIVATE_KEY", key)
    umask = os.umask(0o022)  # main() sets the session's 077: keep this test process's own
    try:
        rc = supervisor.main(args)
    finally:
        os.umask(umask)
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_fund_dex_moves_usdc_with_the_accounts_key(perp_only: SimServer, wallet: LocalAccount, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, perp_only, wallet.address.lower(), extra="[collateral]\ntransfer_usd = 120.0\n")
    key = wallet.key.hex()
    rc, out = _run(["fund-dex", "--config", str(cfg)], key, monkeypatch, capsys)  # the configured amount
    assert rc == 0, out
    assert "moved 120 USDC from the perp balance to dex 'xyz'" in out and "withdrawable 120" in out
    assert key.removeprefix("0x") not in out
    acct = perp_only.state()["accounts"][wallet.address.lower()]
    assert Decimal(acct["balance"]) == 120 and Decimal(acct["perp_balance"]) == 380


def test_fund_dex_refuses_what_cannot_work_before_sending(perp_only: SimServer, wallet: LocalAccount,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    account = wallet.address.lower()
    agent = eth_account.Account.create()
    cfg = _config(tmp_path, perp_only, account)
    rc, out = _run(["fund-dex", "--config", str(cfg)], wallet.key.hex(), monkeypatch, capsys)
    assert rc == 2 and "no amount to move" in out  # transfer_usd defaults to 0: nothing configured
    rc, out = _run(["fund-dex", "--usd", "50", "--config", str(cfg)], agent.key.hex(), monkeypatch, capsys)
    assert rc == 2 and "an API wallet cannot move funds" in out and agent.key.hex().removeprefix("0x") not in out
    rc, out = _run(["fund-dex", "--usd", "501", "--config", str(cfg)], wallet.key.hex(), monkeypatch, capsys)
    assert rc == 2 and "can release 500 USDC, less than 501" in out
    rc, out = _run(["fund-dex", "--usd", "50", "--config", str(cfg)], None, monkeypatch, capsys)
    assert rc == 2 and "needs the account's own key" in out
    mainnet = _config(tmp_path, perp_only, account, network="mainnet")
    rc, out = _run(["fund-dex", "--usd", "50", "--config", str(mainnet)], wallet.key.hex(), monkeypatch, capsys)
    assert rc == 2 and "real money on mainnet: add --yes" in out
    acct = perp_only.state()["accounts"][account]
    assert Decimal(acct["balance"]) == 0 and Decimal(acct["perp_balance"]) == 500  # nothing moved
    assert perp_only.state()["actions_logged"] == 0

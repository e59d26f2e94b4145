"""The simulator keeps a balance per perp dex, refuses orders on an unfunded dex with the exchange's margin
error, and moves USDC with a signature-checked ``sendAsset`` (the official SDK is the signing oracle)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import eth_account
import pytest
from eth_account.signers.local import LocalAccount
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info

from hip3.account.funding import FundingError, move_to_dex, read_collateral
from hip3.hyperliquid.errors import ERR_MUST_DEPOSIT, ERR_PERP_MARGIN
from hip3.hyperliquid.rest import RestClient
from hip3.hyperliquid.user_signed import SEND_ASSET_PRIMARY, SEND_ASSET_TYPES, send_asset_action, sign_user_signed
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from hip3.sim.params import SimParams
from hip3.sim.transfers import ERR_TRANSFER_BALANCE
from tests.sim.conftest import FAST


@pytest.fixture
def perp_only(wallet: LocalAccount, tmp_path: Path) -> Any:
    """A simulator where the wallet's deposit sits on the validator perp dex, as on the real exchange."""
    params = SimParams(model=FAST.model, funds_on="perp")
    s = SimServer(params, seed=7, funds={wallet.address.lower(): Decimal(1000)},
                  order_log=str(tmp_path / "orders.jsonl"))
    s.start()
    yield s
    s.stop()


def _ioc_buy(ex: Exchange, coin: str, usd: float) -> Any:
    info = Info(ex.base_url, skip_ws=True, perp_dexs=["xyz"])
    mid = float(info.all_mids("xyz")[coin])
    sz = round(usd / mid, 3)
    return ex.order(coin, True, sz, round(mid * 1.01, 1), {"limit": {"tif": "Ioc"}})


def test_funds_on_perp_reports_per_dex_balances_and_refuses_orders_on_the_dex(
    perp_only: SimServer, wallet: LocalAccount
) -> None:
    info = Info(perp_only.url, skip_ws=True, perp_dexs=["xyz"])
    assert info.user_state(wallet.address)["withdrawable"] == "1000.0"  # the validator perp dex ("")
    dex_state = info.user_state(wallet.address, "xyz")
    assert dex_state["marginSummary"]["accountValue"] == "0.0" and dex_state["withdrawable"] == "0.0"
    ex = Exchange(wallet, perp_only.url, perp_dexs=["xyz"])
    r = _ioc_buy(ex, "xyz:GOLD", 50)
    assert r["status"] == "ok" and r["response"]["data"]["statuses"] == [{"error": ERR_PERP_MARGIN}], r


def test_the_official_sdk_send_asset_funds_the_dex_then_orders_trade(
    perp_only: SimServer, wallet: LocalAccount, tmp_path: Path
) -> None:
    ex = Exchange(wallet, perp_only.url, perp_dexs=["xyz"])
    r = ex.send_asset(wallet.address, "", "xyz", "USDC", 250.0)
    assert r == {"status": "ok", "response": {"type": "default"}}, r
    info = Info(perp_only.url, skip_ws=True, perp_dexs=["xyz"])
    assert info.user_state(wallet.address, "xyz")["withdrawable"] == "250.0"
    assert info.user_state(wallet.address)["withdrawable"] == "750.0"
    r = _ioc_buy(ex, "xyz:GOLD", 50)
    assert "filled" in r["response"]["data"]["statuses"][0], r
    log = [json.loads(x) for x in (tmp_path / "orders.jsonl").read_text().splitlines()]
    sent = [x for x in log if x["action_type"] == "sendAsset"]
    assert len(sent) == 1 and sent[0]["transfer"] == {"from": "", "to": "xyz", "destination": wallet.address.lower(),
                                                      "amount": "250.0"}


def test_hip3_move_to_dex_matches_the_sdk_signature_and_reads_back(perp_only: SimServer, wallet: LocalAccount) -> None:
    key = SigningKey(wallet.key.hex())
    # The SDK's signature over the same action (deterministic RFC 6979).
    from hyperliquid.utils.signing import sign_send_asset_action

    action = send_asset_action(destination=wallet.address, source_dex="", destination_dex="xyz", token="USDC",
                               amount=Decimal("12.5"), nonce=1_700_000_000_123, is_mainnet=False)
    sdk_action = {k: v for k, v in action.items() if k not in ("signatureChainId", "hyperliquidChain")}
    ours = sign_user_signed(key.reveal(), action, SEND_ASSET_TYPES, SEND_ASSET_PRIMARY)
    sdk = sign_send_asset_action(wallet, sdk_action, False)
    # The SDK writes r/s as minimal hex, hip3 zero-pads to 64 digits (both accepted): compare the numbers.
    assert (int(ours["r"], 16), int(ours["s"], 16), ours["v"]) == (int(sdk["r"], 16), int(sdk["s"], 16), sdk["v"])

    rest = RestClient(perp_only.url)
    res = move_to_dex(rest, key, wallet.address, "xyz", Decimal("300"), is_mainnet=False,
                      nonce_ms=int(time.time() * 1000))
    assert res.before.withdrawable == 0 and res.before.perp_withdrawable == 1000
    assert res.after is not None and res.after.withdrawable == 300 and res.after.perp_withdrawable == 700
    assert "moved 300 USDC from the perp balance to dex 'xyz'" in res.line()
    # More than the perp balance can release: refused before anything is signed or sent.
    with pytest.raises(FundingError, match="can release 700 USDC, less than 701"):
        move_to_dex(rest, key, wallet.address, "xyz", Decimal("701"), is_mainnet=False,
                    nonce_ms=int(time.time() * 1000))
    assert read_collateral(rest, wallet.address, "xyz").withdrawable == 300


def test_an_api_wallet_cannot_move_funds(perp_only: SimServer, wallet: LocalAccount) -> None:
    agent = eth_account.Account.create()
    perp_only.approve_agent(wallet.address, agent.address)
    rest = RestClient(perp_only.url)
    # hip3 refuses before sending: the key is not the account's.
    with pytest.raises(FundingError, match="an API wallet cannot move funds"):
        move_to_dex(rest, SigningKey(agent.key.hex()), wallet.address, "xyz", Decimal(10), is_mainnet=False,
                    nonce_ms=int(time.time() * 1000))
    # And the exchange refuses it if sent anyway: the recovered signer is not an account.
    nonce = int(time.time() * 1000)
    action = send_asset_action(destination=wallet.address, source_dex="", destination_dex="xyz", token="USDC",
                               amount=Decimal(10), nonce=nonce, is_mainnet=False)
    sig = sign_user_signed(agent.key.hex(), action, SEND_ASSET_TYPES, SEND_ASSET_PRIMARY)
    resp = rest.exchange({"action": action, "nonce": nonce, "signature": sig, "vaultAddress": None})
    assert not resp.ok and resp.error == f"{ERR_MUST_DEPOSIT} {agent.address.lower()}"


@pytest.mark.parametrize(("change", "error"), [
    ({"hyperliquidChain": "Mainnet"}, "Invalid hyperliquidChain"),
    ({"destinationDex": "abc"}, "Invalid dex"),
    ({"token": "HYPE"}, "collateral token"),
    ({"amount": "5000"}, ERR_TRANSFER_BALANCE),
    ({"amount": "0.0000001"}, "Invalid amount"),
])
def test_a_bad_transfer_is_refused_and_moves_nothing(perp_only: SimServer, wallet: LocalAccount,
                                                     change: dict[str, str], error: str) -> None:
    nonce = int(time.time() * 1000)
    action = {**send_asset_action(destination=wallet.address, source_dex="", destination_dex="xyz", token="USDC",
                                  amount=Decimal(10), nonce=nonce, is_mainnet=False), **change}
    sig = sign_user_signed(wallet.key.hex(), action, SEND_ASSET_TYPES, SEND_ASSET_PRIMARY)
    body = {"action": action, "nonce": nonce, "signature": sig, "vaultAddress": None}
    resp = RestClient(perp_only.url).exchange(body)
    assert not resp.ok and error in (resp.error or ""), resp
    acct = perp_only.state()["accounts"][wallet.address.lower()]
    assert acct["perp_balance"] == "1000" and acct["balance"] == "0"


def test_a_tampered_transfer_recovers_another_signer(perp_only: SimServer, wallet: LocalAccount) -> None:
    nonce = int(time.time() * 1000)
    action = send_asset_action(destination=wallet.address, source_dex="", destination_dex="xyz", token="USDC",
                               amount=Decimal(10), nonce=nonce, is_mainnet=False)
    sig = sign_user_signed(wallet.key.hex(), action, SEND_ASSET_TYPES, SEND_ASSET_PRIMARY)
    resp = RestClient(perp_only.url).exchange(
        {"action": {**action, "amount": "999"}, "nonce": nonce, "signature": sig, "vaultAddress": None})
    assert not resp.ok and (resp.error or "").startswith(ERR_MUST_DEPOSIT), resp

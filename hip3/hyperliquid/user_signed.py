"""User-signed actions: ``sendAsset``, the transfer that funds a HIP-3 dex.

Transfers are not L1 ("phantom agent") actions: the account's own key signs an EIP-712 message that a
wallet can display, domain ``HyperliquidSignTransaction`` v1 with the chain id of ``signatureChainId``,
primary type ``HyperliquidTransaction:<Name>``, fields listed per action. The action carries
``hyperliquidChain`` ("Mainnet"/"Testnet", part of the signed message: a testnet transfer cannot be
replayed on mainnet) and its own ``nonce``, equal to the envelope's. An API wallet cannot sign these: the
exchange recovers the signer from the signature and an agent is not an account, so the request is
refused. ``expiresAfter`` and ``vaultAddress`` are not part of them (the envelope carries ``null``).

Why hip3 needs it: each HIP-3 dex margins separately, and a deposit lands on the validator perp dex
(``""``); ``sendAsset`` with ``sourceDex ""`` and ``destinationDex <dex>`` moves USDC to where the bot
trades. hip3 only ever sends it when the operator runs ``python supervisor.py fund-dex``.

Signing uses eth-account's typed-data path (a transfer is rare; speed does not matter here); the official
SDK's ``sign_send_asset_action`` is the test oracle (deterministic RFC 6979 signatures compare equal).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from eth_account import Account as _EthAccount
from eth_account.messages import encode_typed_data

__all__ = [
    "SEND_ASSET_PRIMARY",
    "SEND_ASSET_TYPES",
    "SIGNATURE_CHAIN_ID",
    "amount_str",
    "recover_user_signed",
    "send_asset_action",
    "sign_user_signed",
]

# The chain id a wallet signs with (any chain works; the SDK uses Arbitrum Sepolia's, 421614).
SIGNATURE_CHAIN_ID = "0x66eee"
SEND_ASSET_PRIMARY = "HyperliquidTransaction:SendAsset"
SEND_ASSET_TYPES: tuple[tuple[str, str], ...] = (
    ("hyperliquidChain", "string"),
    ("destination", "string"),
    ("sourceDex", "string"),
    ("destinationDex", "string"),
    ("token", "string"),
    ("amount", "string"),
    ("fromSubAccount", "string"),
    ("nonce", "uint64"),
)
_DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


def amount_str(amount: Decimal) -> str:
    """A positive amount as a plain decimal string (no exponent, no trailing zeros)."""
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"amount must be a positive number, got {amount}")
    s = format(amount.normalize(), "f")
    return s


def send_asset_action(*, destination: str, source_dex: str, destination_dex: str, token: str, amount: Decimal,
                      nonce: int, is_mainnet: bool, from_sub_account: str = "") -> dict[str, Any]:
    """The ``sendAsset`` action (the SDK's key order). ``token`` is ``"USDC"`` for perp collateral."""
    return {
        "type": "sendAsset",
        "destination": destination.lower(),
        "sourceDex": source_dex,
        "destinationDex": destination_dex,
        "token": token,
        "amount": amount_str(amount),
        "fromSubAccount": from_sub_account.lower(),
        "nonce": nonce,
        "signatureChainId": SIGNATURE_CHAIN_ID,
        "hyperliquidChain": "Mainnet" if is_mainnet else "Testnet",
    }


def _typed_data(action: dict[str, Any], types: tuple[tuple[str, str], ...], primary: str) -> Any:
    message: dict[str, Any] = {}
    for name, kind in types:
        value = action[name]
        message[name] = int(value) if kind.startswith("uint") else value
    return encode_typed_data(full_message={
        "domain": {"name": "HyperliquidSignTransaction", "version": "1",
                   "chainId": int(str(action["signatureChainId"]), 16),
                   "verifyingContract": "0x0000000000000000000000000000000000000000"},
        "types": {primary: [{"name": n, "type": t} for n, t in types], "EIP712Domain": _DOMAIN_TYPES},
        "primaryType": primary,
        "message": message,
    })


def sign_user_signed(private_key: str, action: dict[str, Any], types: tuple[tuple[str, str], ...],
                     primary: str) -> dict[str, Any]:
    """``{"r", "s", "v"}`` over the action's typed data (r/s as 0x hex, v 27/28, as the SDK writes them)."""
    signed = _EthAccount.sign_message(_typed_data(action, types, primary), private_key=private_key)
    return {"r": f"0x{signed.r:064x}", "s": f"0x{signed.s:064x}", "v": int(signed.v)}


def recover_user_signed(action: dict[str, Any], signature: dict[str, Any], types: tuple[tuple[str, str], ...],
                        primary: str) -> str:
    """The lower-case address that signed ``action``. ValueError if the action or signature is malformed."""
    try:
        data = _typed_data(action, types, primary)
        r = int(str(signature["r"]), 16)
        s = int(str(signature["s"]), 16)
        v = int(signature["v"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed {primary.rsplit(':', 1)[-1]}: {e}") from None
    try:
        addr = _EthAccount.recover_message(data, vrs=(v, r, s))
    except Exception as e:  # eth-account raises several types on a bad signature
        raise ValueError(f"bad signature: {e}") from None
    return str(addr).lower()

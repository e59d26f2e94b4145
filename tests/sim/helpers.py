"""Signing helpers for engine-level tests (the protocol library's signer, testnet source)."""

from __future__ import annotations

from typing import Any

from hip3.hyperliquid.signing import sign_l1_action


def signed(
    key: str, action: dict[str, Any], nonce: int, vault: str | None = None, expires_after: int | None = None
) -> dict[str, Any]:
    sig = sign_l1_action(key, action, vault, nonce, False, expires_after)
    return {
        "action": action,
        "nonce": nonce,
        "signature": sig,
        "vaultAddress": vault,
        "expiresAfter": expires_after,
    }


def order(
    asset: int,
    is_buy: bool,
    px: str,
    sz: str,
    tif: str = "Gtc",
    reduce_only: bool = False,
    cloid: str | None = None,
) -> dict[str, Any]:
    w: dict[str, Any] = {
        "a": asset,
        "b": is_buy,
        "p": px,
        "s": sz,
        "r": reduce_only,
        "t": {"limit": {"tif": tif}},
    }
    if cloid is not None:
        w["c"] = cloid
    return {"type": "order", "orders": [w], "grouping": "na"}

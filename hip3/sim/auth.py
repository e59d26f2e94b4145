"""Authentication as the exchange does it: recover the signer, map it to an account, check its nonce.

* L1 actions (orders, cancels, scheduleCancel, noop, ...) are recovered with
  ``hip3.hyperliquid.signing.recover_l1_signer`` over the action *as received* (key order kept), so any
  client-side key-order, trailing-zero or ``null``-vs-omitted mistake recovers a different address and is
  refused with ``L1 error: User or API Wallet 0x… does not exist.``, as on the exchange.
* The signature source is one flavour per simulator (``SimParams.is_mainnet``; default testnet "b",
  which is what the official SDK signs for any base URL other than https://api.hyperliquid.xyz).
* A signer is accepted if it is an account or an agent approved for one (``approve_agent``, or the
  real user-signed ``approveAgent`` action, EIP-712 ``HyperliquidTransaction:ApproveAgent``).
* Nonces are per signer: the 100 highest are kept; a new one must be unused and greater
  than the smallest kept one once 100 are kept, and within (T − 2 days, T + 1 day).
"""

from __future__ import annotations

import heapq
from typing import Any

from eth_account import Account as _EthAccount
from eth_account.messages import encode_typed_data

from hip3.hyperliquid.errors import ERR_USER_NOT_EXIST_PREFIX, duplicate_nonce_error, nonce_too_low_error
from hip3.hyperliquid.nonce import DAY_MS

_APPROVE_AGENT_TYPES = [
    {"name": "hyperliquidChain", "type": "string"},
    {"name": "agentAddress", "type": "address"},
    {"name": "agentName", "type": "string"},
    {"name": "nonce", "type": "uint64"},
]


def user_not_exist_error(address: str) -> str:
    return f"{ERR_USER_NOT_EXIST_PREFIX} {address} does not exist."


class NonceStore:
    """The exchange's per-signer nonce set: the ``window`` highest nonces, a min-heap plus a set."""

    def __init__(self, window: int = 100) -> None:
        self.window = window
        self._heaps: dict[str, list[int]] = {}
        self._sets: dict[str, set[int]] = {}

    def check_and_use(self, signer: str, nonce: int, now_ms: int) -> str | None:
        """Record ``nonce`` for ``signer``; return the exchange's error text instead if it is not acceptable."""
        if not now_ms - 2 * DAY_MS < nonce < now_ms + DAY_MS:
            # [UNVERIFIED] wording; the prefix "Invalid nonce" is what clients match on.
            return f"Invalid nonce: nonce {nonce} is outside ({now_ms - 2 * DAY_MS}, {now_ms + DAY_MS})"
        heap = self._heaps.setdefault(signer, [])
        seen = self._sets.setdefault(signer, set())
        if nonce in seen:
            return duplicate_nonce_error(nonce)
        if len(heap) >= self.window and nonce <= heap[0]:
            return nonce_too_low_error(nonce, heap[0])
        heapq.heappush(heap, nonce)
        seen.add(nonce)
        if len(heap) > self.window:
            seen.discard(heapq.heappop(heap))
        return None


def recover_approve_agent(action: dict[str, Any], signature: dict[str, Any]) -> str:
    """Signer of a user-signed ``approveAgent`` action (lower case). ValueError if malformed.

    The SDK signs ``agentName: ""`` and then drops the key when it is empty, so an absent name is ``""``.
    """
    try:
        chain_id = int(str(action["signatureChainId"]), 16)
        message = {
            "hyperliquidChain": str(action["hyperliquidChain"]),
            "agentAddress": str(action["agentAddress"]),
            "agentName": str(action.get("agentName", "")),
            "nonce": int(action["nonce"]),
        }
        r = int(str(signature["r"]), 16)
        s = int(str(signature["s"]), 16)
        v = int(signature["v"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed approveAgent: {e}") from None
    typed = {
        "domain": {
            "name": "HyperliquidSignTransaction",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": "0x0000000000000000000000000000000000000000",
        },
        "types": {
            "HyperliquidTransaction:ApproveAgent": _APPROVE_AGENT_TYPES,
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
        },
        "primaryType": "HyperliquidTransaction:ApproveAgent",
        "message": message,
    }
    try:
        addr = _EthAccount.recover_message(encode_typed_data(full_message=typed), vrs=(v, r, s))
    except Exception as e:  # eth-account raises several types on a bad signature
        raise ValueError(f"bad approveAgent signature: {e}") from None
    return str(addr).lower()


class Authority:
    """Which signer may act for which account."""

    def __init__(self) -> None:
        self.agents: dict[str, str] = {}  # agent address -> master address

    def approve(self, master: str, agent: str) -> None:
        self.agents[agent.lower()] = master.lower()

    def account_for(self, signer: str, vault: str | None, accounts: set[str] | dict[str, Any]) -> str | None:
        """The account the signer acts for, or None if the signer is unknown / not allowed for ``vault``.

        With ``vaultAddress`` the signer must be that account or an agent approved for it.
        """
        master = signer if signer in accounts else self.agents.get(signer)
        if master is None:
            return None
        if vault is not None:
            if vault not in accounts:
                return None
            if master != vault and self.agents.get(signer) != vault:
                return None
            return vault
        return master

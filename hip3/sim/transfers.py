"""``sendAsset``: the user-signed transfer between perp dexes, as the exchange checks it.

* The signer is recovered from the EIP-712 ``HyperliquidTransaction:SendAsset`` signature over the action
  as received; it must be an account itself. An approved agent (API wallet) is not one, so its transfer is
  refused like any unknown user's (``Must deposit before performing actions. User: 0x…``): agents cannot
  move funds.
* ``hyperliquidChain`` must be this exchange's ("Testnet" unless ``SimParams.is_mainnet``); the action's
  ``nonce`` must equal the envelope's and pass the signer's nonce window (the exchange's time).
* ``sourceDex``/``destinationDex``: ``""`` (the validator perp dex) or the builder dex; ``token`` the
  collateral, ``USDC`` (or ``USDC:0x<tokenId>``); ``fromSubAccount`` empty (no sub-accounts here). The
  amount must be at most what the source can release: the perp balance, or the builder dex's free
  collateral (balance + unrealised PnL − margin of positions and resting orders).

Refusal texts the docs do not give are marked [UNVERIFIED] (the prefix is what a client can match).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from hip3.hyperliquid.errors import ERR_MUST_DEPOSIT
from hip3.hyperliquid.user_signed import SEND_ASSET_PRIMARY, SEND_ASSET_TYPES, recover_user_signed
from hip3.sim.market import OK_DEFAULT, BadRequest, Exchange, err
from hip3.sim.orders import available_margin

if TYPE_CHECKING:
    from hip3.sim.accounts import Account

__all__ = ["ERR_TRANSFER_BALANCE", "send_asset"]

# [UNVERIFIED] wordings.
ERR_TRANSFER_BALANCE = "Insufficient balance for asset transfer"
_ERR_CHAIN = "Invalid hyperliquidChain"
_ERR_DEX = "Invalid dex"
_ERR_TOKEN = "Token must match the collateral token of the perp dex"
_ERR_AMOUNT = "Invalid amount"
_ERR_SUB = "Sub-account transfers are not supported by the simulator"
_USDC_DECIMALS = Decimal("0.000001")


def _available(eng: Exchange, acct: Account, dex: str) -> Decimal:
    if dex == "":
        return max(Decimal(0), acct.perp_balance)
    return max(Decimal(0), min(acct.balance, available_margin(eng, acct)))


def _amount(v: Any) -> Decimal | None:
    if not isinstance(v, str) or any(ch in v for ch in "eE") or len(v) > 40:
        return None
    try:
        d = Decimal(v)
    except InvalidOperation:
        return None
    if not d.is_finite() or d <= 0 or d != d.quantize(_USDC_DECIMALS):
        return None
    return d


def send_asset(eng: Exchange, action: dict[str, Any], nonce: int, sig: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Answer a ``sendAsset`` action (raises BadRequest where the exchange fails to deserialize it)."""
    try:
        signer = recover_user_signed(action, sig, SEND_ASSET_TYPES, SEND_ASSET_PRIMARY)
        dest = str(action["destination"]).lower()
        src_dex, dst_dex = str(action["sourceDex"]), str(action["destinationDex"])
        token, sub = str(action["token"]), str(action["fromSubAccount"])
    except (ValueError, KeyError) as e:
        raise BadRequest(f"Failed to deserialize the JSON body into the target type: {e}") from None
    acct = eng.accounts.get(signer)
    if acct is None:
        return err(f"{ERR_MUST_DEPOSIT} {signer}")
    if action.get("nonce") != nonce:
        return err("Invalid nonce: action nonce does not match the envelope nonce")  # [UNVERIFIED] wording
    if action.get("hyperliquidChain") != ("Mainnet" if eng.p.is_mainnet else "Testnet"):
        return err(_ERR_CHAIN)
    nerr = eng.nonces.check_and_use(signer, nonce, now_ms)
    if nerr is not None:
        return err(nerr)
    if sub:
        return err(_ERR_SUB)
    dexes = ("", eng.p.dex)
    if src_dex not in dexes or dst_dex not in dexes:
        return err(f"{_ERR_DEX}: {src_dex if src_dex not in dexes else dst_dex!r}")
    if token != "USDC" and not token.startswith("USDC:"):
        return err(_ERR_TOKEN)
    amount = _amount(action.get("amount"))
    if amount is None or not (isinstance(dest, str) and len(dest) == 42 and dest.startswith("0x")):
        return err(_ERR_AMOUNT if amount is None else "Invalid destination")
    if amount > _available(eng, acct, src_dex):
        return err(ERR_TRANSFER_BALANCE)
    target = eng.accounts.get(dest) or eng.fund(dest, Decimal(0), "dex")
    if src_dex == "":
        acct.perp_balance -= amount
    else:
        acct.balance -= amount
    if dst_dex == "":
        target.perp_balance += amount
    else:
        target.balance += amount
    eng.order_log.write({"time_ms": now_ms, "nonce": nonce, "signer": signer, "account": signer,
                         "action_type": "sendAsset", "cloids": [], "statuses": [], "status": "ok",
                         "transfer": {"from": src_dex, "to": dst_dex, "destination": dest, "amount": str(amount)}})
    return OK_DEFAULT

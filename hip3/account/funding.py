"""The opt-in transfer that funds the traded HIP-3 dex: ``python supervisor.py fund-dex``.

Each HIP-3 dex has its own margin and a deposit lands on the validator perp dex, so a fresh account
refuses every entry on the builder dex until USDC is moved there (``hip3.account.collateral`` says so). This moves
a stated amount with one user-signed ``sendAsset`` (``sourceDex ""`` → ``destinationDex <dex>``, token
``USDC``, to the account itself), and only when the operator runs the command: hip3 never moves money on
its own, and nothing is configured to by default (``[collateral] transfer_usd = 0``).

The account's own key must sign it: an API wallet (agent), the key hip3 normally trades with, cannot move
funds, and the exchange would refuse it. So the command checks first that the key is the account's and
that the perp balance can release the amount, and says which one is wrong instead of sending a doomed
request. It reads the dex's collateral before and after, to show what moved.
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import msgspec

from hip3.account.collateral import collateral_from_states, describe
from hip3.config import Config, exchange_urls
from hip3.hyperliquid.assets import AssetError, AssetRegistry
from hip3.hyperliquid.rest import RestClient, RestError
from hip3.hyperliquid.user_signed import SEND_ASSET_PRIMARY, SEND_ASSET_TYPES, send_asset_action, sign_user_signed
from hip3.messages import DexCollateral
from hip3.runtime.secrets import SecretError, SigningKey, load_signing_key

if TYPE_CHECKING:
    pass

__all__ = ["FundResult", "FundingError", "fund_with_own_key", "move_to_dex", "parse_amount",
           "read_collateral", "resolve_dex"]


class FundingError(Exception):
    """The transfer was not made (or refused). The message is one line for the operator, never the key."""


class FundResult(msgspec.Struct, frozen=True):
    dex: str
    amount: Decimal
    before: DexCollateral
    after: DexCollateral | None

    def line(self) -> str:
        after = describe(self.after) if self.after is not None else "not read back"
        return (f"moved {self.amount.normalize():f} USDC from the perp balance to dex {self.dex!r}; before: "
                f"{describe(self.before)}; after: {after}")


def parse_amount(cli_usd: str | None, configured_usd: float) -> Decimal:
    """``--usd`` if given, else ``[collateral] transfer_usd``; a positive amount or FundingError."""
    raw = cli_usd if cli_usd is not None else repr(configured_usd)
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise FundingError(f"--usd must be a number, got {cli_usd!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise FundingError("no amount to move: pass --usd N or set [collateral] transfer_usd (0 = none configured)")
    if amount != amount.quantize(Decimal("0.000001")):
        raise FundingError(f"amount {amount} has more than 6 decimals (USDC)")
    return amount


def resolve_dex(rest: RestClient, pattern: str) -> str:
    """The builder dex's name: the first ``perpDexs`` entry containing ``pattern`` (as the actors find it)."""
    try:
        return AssetRegistry.find_dex(rest.perp_dexs(), pattern)[1]
    except (AssetError, RestError) as e:
        raise FundingError(f"cannot find the dex: {e}") from None


def read_collateral(rest: RestClient, account: str, dex: str) -> DexCollateral:
    try:
        return collateral_from_states(dex, rest.clearinghouse_state(account, dex),
                                      rest.clearinghouse_state(account, ""))
    except RestError as e:
        raise FundingError(f"cannot read the account's collateral: {e}") from None


def move_to_dex(rest: RestClient, key: SigningKey, account: str, dex: str, amount: Decimal, *,
                is_mainnet: bool, nonce_ms: int) -> FundResult:
    """Move ``amount`` USDC from the account's perp balance to ``dex`` (one signed ``sendAsset``)."""
    account = account.lower()
    if key.address != account:
        raise FundingError(
            f"sendAsset must be signed by the account's own key ({account}); the key given belongs to "
            f"{key.address} (an API wallet cannot move funds): set HIP3_PRIVATE_KEY / HIP3_KEYSTORE to the "
            "account's key for this command only")
    before = read_collateral(rest, account, dex)
    if before.perp_withdrawable < amount:
        raise FundingError(
            f"the perp balance can release {max(before.perp_withdrawable, Decimal(0)).normalize():f} USDC, less "
            f"than {amount.normalize():f}: deposit first ({describe(before)})")
    action = send_asset_action(destination=account, source_dex="", destination_dex=dex, token="USDC",
                               amount=amount, nonce=nonce_ms, is_mainnet=is_mainnet)
    signature = sign_user_signed(key.reveal(), action, SEND_ASSET_TYPES, SEND_ASSET_PRIMARY)
    # User-signed actions carry neither a vault nor expiresAfter (the envelope's are null).
    body = {"action": action, "nonce": nonce_ms, "signature": signature, "vaultAddress": None,
            "expiresAfter": None}
    try:
        resp = rest.exchange(body)
    except RestError as e:
        raise FundingError(f"the transfer's outcome is unknown ({e}): check the balances before retrying") from None
    if not resp.ok:
        raise FundingError(f"the exchange refused the transfer: {resp.error}")
    try:
        after: DexCollateral | None = read_collateral(rest, account, dex)
    except FundingError:
        after = None
    return FundResult(dex=dex, amount=amount, before=before, after=after)


def fund_with_own_key(cfg: Config, amount: Decimal, yes: bool) -> str:
    """``fund-dex`` on the real exchange: the account's own key from ``HIP3_PRIVATE_KEY`` /
    ``HIP3_KEYSTORE`` (for this command only), ``--yes`` on mainnet. The result line, or FundingError."""
    account = cfg.exchange.account_address.lower()
    if not account:
        raise FundingError("fund-dex needs exchange.account_address (the account whose dex to fund)")
    if cfg.exchange.vault_address:
        raise FundingError("fund-dex does not move funds for a sub-account or vault (exchange.vault_address): "
                           "use the app")
    mainnet = cfg.exchange.network == "mainnet"
    if mainnet and not yes:
        raise FundingError(f"this moves {amount} USDC of real money on mainnet: add --yes")
    try:
        key = load_signing_key()
    except SecretError as e:
        raise FundingError(str(e)) from None
    if key is None:
        raise FundingError("fund-dex needs the account's own key in HIP3_PRIVATE_KEY or HIP3_KEYSTORE (+ password)")
    rest = RestClient(exchange_urls(cfg)[0], timeout_s=cfg.exchange.request_timeout_ms / 1000)
    dex = resolve_dex(rest, cfg.exchange.dex_pattern)
    res = move_to_dex(rest, key, account, dex, amount, is_mainnet=mainnet, nonce_ms=time.time_ns() // 1_000_000)
    return res.line()

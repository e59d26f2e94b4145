"""REST client for ``POST /info`` reads and ``POST /exchange``, on stdlib urllib.

Guards against:

* HIP-3 positions are invisible without ``"dex"`` in ``clearinghouseState``; every per-dex query here
  requires the dex argument.
* ``withdrawable`` is top-level and older captures lack ``maxLeverage``/``cumFunding``/``time``:
  the schemas are tolerant (optional fields, extra fields ignored), as a strict one failed to parse
  the real answer.
* double execution: ``/exchange`` is NEVER retried automatically (a retried order could fill twice; the
  nonce makes a resend of the same payload a duplicate, but a timeout leaves the outcome unknown).
  ``/info`` reads are retried on network errors, 5xx and 429, with bounded backoff.
* clear failures: ``RestError`` carries the HTTP status and the body text (429 → ``RateLimited``).
* non-finite numbers (``"NaN"``, ``"Infinity"``) in positions, orders and margins are a malformed answer
  (``RestError``), never a value: a NaN size crashed the position book's comparisons (found by fuzzing).
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from .responses import ExchangeResponse, parse_exchange_response

__all__ = [
    "AssetPosition",
    "ClearinghouseState",
    "MarginSummary",
    "OpenOrder",
    "Position",
    "RateLimited",
    "RestClient",
    "RestError",
    "UserRateLimit",
]


class RestError(RuntimeError):
    """An HTTP/network failure; ``status`` is None for network errors, ``body`` the response text."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class RateLimited(RestError):
    """HTTP 429: the IP weight budget (1200/min) is exhausted."""


def _finite(*values: Decimal | None) -> None:
    for v in values:
        if v is not None and not v.is_finite():
            raise ValueError(f"non-finite number {v}")


class MarginSummary(msgspec.Struct, frozen=True, rename="camel"):
    account_value: Decimal = Decimal(0)
    total_margin_used: Decimal = Decimal(0)
    total_ntl_pos: Decimal = Decimal(0)
    total_raw_usd: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _finite(self.account_value, self.total_margin_used, self.total_ntl_pos, self.total_raw_usd)


class Position(msgspec.Struct, frozen=True, rename="camel"):
    coin: str
    szi: Decimal  # signed: positive = long
    entry_px: Decimal | None = None
    liquidation_px: Decimal | None = None
    margin_used: Decimal | None = None
    position_value: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    return_on_equity: Decimal | None = None
    leverage: dict[str, Any] | None = None
    max_leverage: int | None = None
    cum_funding: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _finite(self.szi, self.entry_px, self.liquidation_px, self.margin_used, self.position_value,
                self.unrealized_pnl, self.return_on_equity)


class AssetPosition(msgspec.Struct, frozen=True):
    position: Position
    type: str = "oneWay"


class ClearinghouseState(msgspec.Struct, frozen=True, rename="camel"):
    asset_positions: list[AssetPosition] = []
    margin_summary: MarginSummary | None = None
    cross_margin_summary: MarginSummary | None = None
    cross_maintenance_margin_used: Decimal | None = None
    withdrawable: Decimal | None = None  # top-level, not under marginSummary
    time: int | None = None

    def __post_init__(self) -> None:
        _finite(self.cross_maintenance_margin_used, self.withdrawable)


class OpenOrder(msgspec.Struct, frozen=True, rename="camel"):
    """``openOrders`` entry; the ``frontendOpenOrders`` extras are optional."""

    coin: str
    limit_px: Decimal
    oid: int
    side: str
    sz: Decimal
    timestamp: int
    orig_sz: Decimal | None = None
    cloid: str | None = None
    order_type: str | None = None
    tif: str | None = None
    reduce_only: bool | None = None
    is_trigger: bool | None = None
    trigger_px: Decimal | None = None

    def __post_init__(self) -> None:
        _finite(self.limit_px, self.sz, self.orig_sz, self.trigger_px)


class UserRateLimit(msgspec.Struct, frozen=True, rename="camel"):
    """``userRateLimit``: the address's action request budget."""

    cum_vlm: Decimal
    n_requests_used: int
    n_requests_cap: int
    n_requests_surplus: int = 0

    def __post_init__(self) -> None:
        _finite(self.cum_vlm)


_ENC = msgspec.json.Encoder()
_DEC_CH = msgspec.json.Decoder(ClearinghouseState)
_DEC_OO = msgspec.json.Decoder(list[OpenOrder])
_DEC_RL = msgspec.json.Decoder(UserRateLimit)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RestClient:
    """Blocking REST client (startup, resync, tools; never on the hot path).

    ``base_url`` is e.g. ``https://api.hyperliquid.xyz``. ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 10.0,
        info_retries: int = 2,
        retry_backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.info_retries = info_retries
        self.retry_backoff_s = retry_backoff_s
        self._sleep = sleep

    # ---------------------------------------------------------------- transport

    def _post(self, route: str, body: dict[str, Any]) -> bytes:
        req = urllib.request.Request(
            self.base_url + route,
            data=_ENC.encode(body),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            try:
                text = exc.read().decode("utf-8", "replace")[:2000]
            except (OSError, http.client.HTTPException):
                text = "(error body unreadable)"
            cls = RateLimited if exc.code == 429 else RestError
            raise cls(f"POST {route} -> HTTP {exc.code}: {text[:300]}", exc.code, text) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise RestError(f"POST {route} failed: {reason}") from None

    def info_raw(self, body: dict[str, Any]) -> bytes:
        """POST /info with retries on network errors, 429 and 5xx (reads are idempotent)."""
        attempt = 0
        while True:
            try:
                return self._post("/info", body)
            except RestError as exc:
                retryable = exc.status is None or exc.status in _RETRY_STATUSES
                if not retryable or attempt >= self.info_retries:
                    raise
                self._sleep(self.retry_backoff_s * (2**attempt))
                attempt += 1

    def info(self, body: dict[str, Any]) -> Any:
        raw = self.info_raw(body)
        try:
            return msgspec.json.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, absurd nesting
            raise RestError(
                f"/info {body.get('type')} returned non-JSON: {exc}", 200, raw[:300].decode("utf-8", "replace")
            ) from None

    def _typed(self, body: dict[str, Any], decoder: msgspec.json.Decoder[Any]) -> Any:
        raw = self.info_raw(body)
        try:
            return decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
            raise RestError(
                f"/info {body.get('type')} has an unexpected shape: {exc}", 200, raw[:300].decode("utf-8", "replace")
            ) from None

    # ---------------------------------------------------------------- reads

    def perp_dexs(self) -> list[Any]:
        out = self.info({"type": "perpDexs"})
        if not isinstance(out, list):
            raise RestError(f"perpDexs is not an array: {str(out)[:200]}")
        return out

    def meta(self, dex: str) -> dict[str, Any]:
        out = self.info({"type": "meta", "dex": dex})
        if not isinstance(out, dict):
            raise RestError(f"meta is not an object: {str(out)[:200]}")
        return out

    def meta_and_asset_ctxs(self, dex: str) -> list[Any]:
        out = self.info({"type": "metaAndAssetCtxs", "dex": dex})
        if not isinstance(out, list) or len(out) != 2:
            raise RestError(f"metaAndAssetCtxs is not [meta, ctxs]: {str(out)[:200]}")
        return out

    def clearinghouse_state(self, user: str, dex: str) -> ClearinghouseState:
        """Positions and margin on ``dex`` (required: without it HIP-3 positions are invisible)."""
        body = {"type": "clearinghouseState", "user": user.lower(), "dex": dex}
        state: ClearinghouseState = self._typed(body, _DEC_CH)
        return state

    def open_orders(self, user: str, dex: str) -> list[OpenOrder]:
        orders: list[OpenOrder] = self._typed({"type": "openOrders", "user": user.lower(), "dex": dex}, _DEC_OO)
        return orders

    def frontend_open_orders(self, user: str, dex: str) -> list[OpenOrder]:
        body = {"type": "frontendOpenOrders", "user": user.lower(), "dex": dex}
        orders: list[OpenOrder] = self._typed(body, _DEC_OO)
        return orders

    def user_fees(self, user: str) -> dict[str, Any]:
        """The account's fee rates (``userCrossRate``, ``userAddRate``, ``activeReferralDiscount``, ...)."""
        out = self.info({"type": "userFees", "user": user.lower()})
        if not isinstance(out, dict):
            raise RestError(f"userFees is not an object: {str(out)[:200]}")
        return out

    def perp_dex_limits(self, dex: str) -> dict[str, Any] | None:
        """``{totalOiCap, oiSzCapPerPerp, maxTransferNtl, coinToOiCap}`` of ``dex``; None: no limits."""
        out = self.info({"type": "perpDexLimits", "dex": dex})
        if out is not None and not isinstance(out, dict):
            raise RestError(f"perpDexLimits is not an object: {str(out)[:200]}")
        return out

    def perps_at_open_interest_cap(self, dex: str) -> list[Any]:
        """The coins of ``dex`` at their open-interest cap now."""
        out = self.info({"type": "perpsAtOpenInterestCap", "dex": dex})
        if not isinstance(out, list):
            raise RestError(f"perpsAtOpenInterestCap is not an array: {str(out)[:200]}")
        return out

    def user_rate_limit(self, user: str) -> UserRateLimit:
        """The address's request budget: used, cap (10,000 + 1 per USDC traded) and lifetime volume."""
        out: UserRateLimit = self._typed({"type": "userRateLimit", "user": user.lower()}, _DEC_RL)
        return out

    def active_asset_data(self, user: str, coin: str) -> dict[str, Any]:
        """The account on one market: the leverage in force (``{"type": "cross"|"isolated", "value": n}``),
        ``maxTradeSzs`` and ``availableToTrade`` ([long, short]) and ``markPx``. A HIP-3 market is named by
        its full coin (``xyz:GOLD``)."""
        out = self.info({"type": "activeAssetData", "user": user.lower(), "coin": coin})
        if not isinstance(out, dict):
            raise RestError(f"activeAssetData is not an object: {str(out)[:200]}")
        return out

    def user_fills(self, user: str, aggregate_by_time: bool = False) -> list[dict[str, Any]]:
        """Recent fills, newest first (at most 2000); no dex parameter exists."""
        body: dict[str, Any] = {"type": "userFills", "user": user.lower()}
        if aggregate_by_time:
            body["aggregateByTime"] = True
        out = self.info(body)
        if not isinstance(out, list):
            raise RestError(f"userFills is not an array: {str(out)[:200]}")
        return out

    # ---------------------------------------------------------------- actions

    def exchange(self, payload: dict[str, Any]) -> ExchangeResponse:
        """POST /exchange once: never retried (a timeout's outcome is unknown; reconcile instead)."""
        raw = self._post("/exchange", payload)
        try:
            return parse_exchange_response(raw)
        except ValueError as exc:
            raise RestError(
                f"/exchange returned an unparseable body: {exc}", 200, raw[:300].decode("utf-8", "replace")
            ) from None

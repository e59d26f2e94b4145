"""Market terms: this account's fee per market and the markets' open-interest caps, from the exchange.

Two halves, both pure (no sockets, no clock; ``now_ms`` comes in):

* **Building** a ``MarketTerms`` state message from the exchange's answers (``userFees``, ``perpDexs``,
  ``metaAndAssetCtxs`` with the dex, ``perpDexLimits``, ``perpsAtOpenInterestCap``): ``build_terms`` for a
  full read, ``apply_at_cap`` for the frequent "which markets are at their cap" read. The position
  tracker runs the reads in a worker thread (``hip3.runtime.terms_poller``) and publishes the result as
  state on ``positions``.
* **Using** it: ``TermsView`` answers the detector (the per-leg taker fee in its threshold; a round trip
  pays it twice) and the executor (may an entry go to this market now?).

What it guards against:

* An entry threshold built on a constant fee. The real HIP-3 taker fee is the account's tier rate
  times the deployer scale's multiplier (2x at scale 1, 6x at 3), a tenth of that in growth mode
  (``hip3.hyperliquid.fees``).
* Trading on fees nobody knows. Fail closed: until a read succeeded, and once the last success is older
  than ``max_age_s`` (``at_cap_max_age_s`` for the cap list), no entry is sent (``entry_block``); the fee
  used meanwhile for signal records is the stated worst case (tier-0 base rate, scale 3), never a guess.
* Entries sent into a market at its open-interest cap: the exchange refuses them ("Order would increase
  open interest while open interest is capped"). They are refused before signing when the exchange lists
  the market at its cap, when the live open interest (market stream) reaches the per-asset cap, and for
  ``cap_refusal_block_ms`` after the exchange refused one for the cap. Exits are never blocked here.

Everything the exchange's documentation leaves open is in ``UNVERIFIED`` below, in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from hip3.hyperliquid.fees import (
    TIER0_USER_ADD_RATE,
    TIER0_USER_CROSS_RATE,
    FeeError,
    hip3_fee_rates,
    to_decimal,
)
from hip3.hyperliquid.wire import round_price
from hip3.messages import MarketTerm, MarketTerms

__all__ = [
    "UNVERIFIED",
    "WORST_CASE_TAKER_BPS",
    "MarketTermsParams",
    "RawTerms",
    "TermsError",
    "TermsView",
    "apply_at_cap",
    "build_terms",
    "clamp_to_oracle",
    "fee_mismatch",
]

# ---- [UNVERIFIED] facts about the exchange, in one place (change them after the first live session) ----
UNVERIFIED: dict[str, object] = {
    # Where the deployer fee scale lives: a per-asset ``deployerFeeScale`` in meta(dex).universe has been
    # seen in third-party captures, and a dex-level one in perpDexs. The per-asset one wins; without
    # either, the worst case below is assumed (and reported as the fee's source).
    "scale_precedence": ("meta", "perpDexs"),
    # The largest scale a deployer may set outside growth mode ("0.0".."3.0", docs): the worst case.
    "worst_case_deployer_fee_scale": Decimal(3),
    # userCrossRate is the tiered base rate with staking applied; the referral discount is applied on
    # top (docs' formula). A missing activeReferralDiscount is taken as 0 (the higher fee).
    "referral_missing_means": Decimal(0),
    # Growth mode is on when meta's ``growthMode`` is exactly "enabled" (docs example).
    "growth_mode_value": "enabled",
    # perpsAtOpenInterestCap(dex) lists full "dex:COIN" names (a bare name is prefixed with the dex).
    "at_cap_names_may_be_bare": True,
    # The dex's total notional cap (perpDexLimits.totalOiCap) is compared with the sum of
    # openInterest x markPx over the dex's universe (metaAndAssetCtxs); reached, every market counts as
    # at its cap (whether the exchange then lists every market in perpsAtOpenInterestCap is not known).
    "dex_total_cap_caps_every_market": True,
    # At the cap the exchange also refuses orders priced more aggressively than the oracle; whether
    # reduce-only orders are included is not documented. Assumed yes: flattens are priced no more
    # aggressively than the oracle while the market is at its cap (``clamp_to_oracle``); the simulator
    # refuses them the same way.
    "too_aggressive_applies_to_reduce_only": True,
    # An opening order that would take the open interest past the cap (not at it yet): the simulator
    # refuses it whole with the cap's text; the exchange may fill it up to the cap instead.
    "order_past_cap_refused_whole": True,
    # The deployer scale's upper bound the fee model accepts (hip3.hyperliquid.fees.MAX_DEPLOYER_FEE_SCALE,
    # 10): "0.0".."3.0" per the docs, up to 10 in growth mode per a third-party SDK.
}
_WORST_SCALE: Decimal = UNVERIFIED["worst_case_deployer_fee_scale"]  # type: ignore[assignment]
_SCALE_PRECEDENCE: tuple[str, ...] = UNVERIFIED["scale_precedence"]  # type: ignore[assignment]
# The stated worst case: tier-0 base rate (the highest), no discount, the largest deployer scale.
WORST_CASE_TAKER_BPS = float(hip3_fee_rates(TIER0_USER_CROSS_RATE, TIER0_USER_ADD_RATE,
                                            deployer_fee_scale=_WORST_SCALE).taker_bps)


class MarketTermsParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[market_terms]``: how often fees and open-interest caps are read from the exchange, and when
    entries stop because the last read is too old (the position tracker reads them; fail closed)."""

    # userFees, perpDexs, metaAndAssetCtxs, perpDexLimits and perpsAtOpenInterestCap: fees and caps
    # change rarely (5 reads of weight 20 each time, against the IP's 1200 a minute).
    refresh_interval_s: Annotated[float, msgspec.Meta(ge=5.0, le=3600.0)] = 120.0
    # perpsAtOpenInterestCap: which markets are at their cap now (weight 20).
    at_cap_refresh_interval_s: Annotated[float, msgspec.Meta(ge=1.0, le=600.0)] = 15.0
    # No entry once the last successful full read (fees) or "at cap" read is older than these.
    max_age_s: Annotated[float, msgspec.Meta(gt=0.0, le=86_400.0)] = 900.0
    at_cap_max_age_s: Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)] = 90.0
    # After the exchange refused an entry for the open-interest cap, no entry in that market for this long.
    cap_refusal_block_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 30_000
    # A fill whose fee differs from the model by more than this fraction is reported (WARNING, at most once
    # per market between two full reads).
    fee_mismatch_tolerance: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.25

    def __post_init__(self) -> None:
        if self.max_age_s < self.refresh_interval_s:
            raise ValueError("max_age_s must be >= refresh_interval_s (entries would stop between reads)")
        if self.at_cap_max_age_s < self.at_cap_refresh_interval_s:
            raise ValueError("at_cap_max_age_s must be >= at_cap_refresh_interval_s")


class TermsError(ValueError):
    """An exchange answer the terms cannot be built from (one line naming the answer and field)."""


class RawTerms(msgspec.Struct, kw_only=True):
    """The exchange's answers of one full read (parsed JSON). ``user_fees`` None: no account (observe)."""

    perp_dexs: Any
    meta_and_ctxs: Any
    dex_limits: Any
    at_cap: Any
    user_fees: Any = None


# ------------------------------------------------------------------------------------ building


def _dec(value: object, field: str) -> Decimal:
    try:
        return to_decimal(value, field)
    except FeeError as e:
        raise TermsError(str(e)) from None


def _coin_name(name: object, dex: str, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise TermsError(f"{where}: coin name must be a non-empty string, got {name!r}")
    return name if ":" in name else f"{dex}:{name}"


def _at_cap_set(at_cap: Any, dex: str) -> set[str]:
    if at_cap is None:
        return set()
    if not isinstance(at_cap, list):
        raise TermsError(f"perpsAtOpenInterestCap is not an array: {str(at_cap)[:120]}")
    names = {_coin_name(c, dex, "perpsAtOpenInterestCap") for c in at_cap}
    if not UNVERIFIED["at_cap_names_may_be_bare"]:
        names &= {c for c in at_cap if isinstance(c, str)}
    return names


def _dex_full(total_cap: float, dex_oi: float) -> bool:
    return bool(UNVERIFIED["dex_total_cap_caps_every_market"]) and total_cap > 0.0 and dex_oi >= total_cap


def _user_rates(user_fees: Any) -> tuple[Decimal, Decimal, Decimal, str]:
    """(userCrossRate, userAddRate, referral discount, fee source)."""
    if user_fees is None:
        return TIER0_USER_CROSS_RATE, TIER0_USER_ADD_RATE, Decimal(0), "tier0_assumed"
    if not isinstance(user_fees, dict):
        raise TermsError(f"userFees is not an object: {str(user_fees)[:120]}")
    if "userCrossRate" not in user_fees or "userAddRate" not in user_fees:
        raise TermsError("userFees has no userCrossRate/userAddRate")
    cross = _dec(user_fees["userCrossRate"], "userFees.userCrossRate")
    add = _dec(user_fees["userAddRate"], "userFees.userAddRate")
    ref_raw = user_fees.get("activeReferralDiscount")
    ref = UNVERIFIED["referral_missing_means"] if ref_raw is None else _dec(ref_raw, "userFees.activeReferralDiscount")
    assert isinstance(ref, Decimal)
    return cross, add, ref, "exchange"


def _dex_entry(perp_dexs: Any, dex: str) -> dict[str, Any]:
    if not isinstance(perp_dexs, list):
        raise TermsError(f"perpDexs is not an array: {str(perp_dexs)[:120]}")
    for e in perp_dexs:
        if isinstance(e, dict) and e.get("name") == dex:
            return e
    raise TermsError(f"perpDexs has no dex named {dex!r}")


def _limits(dex_limits: Any, dex: str) -> tuple[float, dict[str, float]]:
    """(dex total notional cap, per-asset notional caps); (0, {}) when the dex has no limits (null)."""
    if dex_limits is None:
        return 0.0, {}
    if not isinstance(dex_limits, dict):
        raise TermsError(f"perpDexLimits is not an object: {str(dex_limits)[:120]}")
    total = float(_dec(dex_limits.get("totalOiCap", "0"), "perpDexLimits.totalOiCap"))
    caps: dict[str, float] = {}
    rows = dex_limits.get("coinToOiCap") or []
    if not isinstance(rows, list):
        raise TermsError("perpDexLimits.coinToOiCap is not an array")
    for row in rows:
        if not isinstance(row, list) or len(row) != 2:
            raise TermsError(f"perpDexLimits.coinToOiCap entry is not [coin, cap]: {row!r}")
        caps[_coin_name(row[0], dex, "perpDexLimits.coinToOiCap")] = float(_dec(row[1], "perpDexLimits.coinToOiCap"))
    return total, caps


def _universe(meta_and_ctxs: Any) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    if not (isinstance(meta_and_ctxs, list) and len(meta_and_ctxs) == 2 and isinstance(meta_and_ctxs[0], dict)):
        raise TermsError("metaAndAssetCtxs is not [meta, ctxs]")
    uni = meta_and_ctxs[0].get("universe")
    ctxs = meta_and_ctxs[1]
    if not isinstance(uni, list) or not isinstance(ctxs, list):
        raise TermsError("metaAndAssetCtxs has no universe/ctx arrays")
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for i, entry in enumerate(uni):
        if not isinstance(entry, dict):
            raise TermsError(f"metaAndAssetCtxs universe[{i}] is not an object")
        c = ctxs[i] if i < len(ctxs) and isinstance(ctxs[i], dict) else None
        out.append((entry, c))
    return out


def _oi_usd(ctx: dict[str, Any] | None, where: str) -> float:
    if ctx is None:
        return 0.0
    oi, mark = ctx.get("openInterest"), ctx.get("markPx")
    if oi is None or mark is None:
        return 0.0
    return float(_dec(oi, f"{where}.openInterest") * _dec(mark, f"{where}.markPx"))


def build_terms(raw: RawTerms, dex: str, coins: Sequence[str], now_ms: int) -> MarketTerms:
    """A full read -> the terms of ``coins`` (all read at ``now_ms``). Raises ``TermsError``."""
    cross, add, ref, user_source = _user_rates(raw.user_fees)
    dex_entry = _dex_entry(raw.perp_dexs, dex)
    dex_scale_raw = dex_entry.get("deployerFeeScale")
    dex_scale = None if dex_scale_raw is None else _dec(dex_scale_raw, "perpDexs.deployerFeeScale")
    total_cap, caps = _limits(raw.dex_limits, dex)
    listed = _at_cap_set(raw.at_cap, dex)
    by_name: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
    dex_oi = 0.0
    for entry, ctx in _universe(raw.meta_and_ctxs):
        name = _coin_name(entry.get("name"), dex, "metaAndAssetCtxs universe")
        by_name[name] = (entry, ctx)
        dex_oi += _oi_usd(ctx, name)
    dex_full = _dex_full(total_cap, dex_oi)
    growth_value = UNVERIFIED["growth_mode_value"]
    out: list[MarketTerm] = []
    for coin in coins:
        found = by_name.get(coin)
        if found is None:
            raise TermsError(f"metaAndAssetCtxs(dex={dex}) has no market {coin!r}")
        entry, ctx = found
        meta_raw = entry.get("deployerFeeScale")
        reported = {"meta": None if meta_raw is None else _dec(meta_raw, f"{coin}.deployerFeeScale"),
                    "perpDexs": dex_scale}
        scale, scale_source = _WORST_SCALE, "worst_case"
        for where in _SCALE_PRECEDENCE:
            found_scale = reported.get(where)
            if found_scale is not None:
                scale, scale_source = found_scale, where
                break
        growth = entry.get("growthMode") == growth_value
        try:
            rates = hip3_fee_rates(cross, add, referral_discount=ref, deployer_fee_scale=scale, growth_mode=growth)
        except FeeError as e:
            raise TermsError(f"{coin}: {e}") from None
        source = user_source if scale_source != "worst_case" else f"{user_source}_worst_scale"
        out.append(MarketTerm(
            coin=coin, taker_fee_bps=float(rates.taker_bps), maker_fee_bps=float(rates.maker_bps),
            deployer_fee_scale=float(scale), scale_source=scale_source, growth_mode=growth, fee_source=source,
            oi_cap_usd=caps.get(coin, 0.0), oi_usd=_oi_usd(ctx, coin), at_oi_cap=coin in listed or dex_full))
    return MarketTerms(fees_ms=now_ms, caps_ms=now_ms, user_cross_rate=float(cross), user_add_rate=float(add),
                       referral_discount=float(ref), dex_oi_cap_usd=total_cap, dex_oi_usd=dex_oi,
                       markets=tuple(out))


def apply_at_cap(terms: MarketTerms, at_cap: Any, dex: str, now_ms: int) -> MarketTerms:
    """A fresh "at cap" list applied to the last full read. Raises ``TermsError`` on a malformed list."""
    listed = _at_cap_set(at_cap, dex)
    dex_full = _dex_full(terms.dex_oi_cap_usd, terms.dex_oi_usd)
    markets = tuple(msgspec.structs.replace(m, at_oi_cap=m.coin in listed or dex_full) for m in terms.markets)
    return msgspec.structs.replace(terms, markets=markets, caps_ms=now_ms, error="")


def fee_mismatch(term: MarketTerm, px: Decimal, sz: Decimal, fee: Decimal, crossed: bool,
                 tolerance: float) -> str | None:
    """A fill's fee against the model: a one-line description when they differ by more than
    ``tolerance`` (a fraction of the model's fee), else None. A fill too small to carry a fee is skipped."""
    model_bps = term.taker_fee_bps if crossed else term.maker_fee_bps
    ntl = float(px * sz)
    if ntl <= 0.0:
        return None
    model = ntl * model_bps / 1e4
    paid = float(fee)
    if abs(model) < 0.0001 and abs(paid) < 0.0001:
        return None
    if abs(paid - model) <= abs(model) * tolerance + 0.000001:
        return None
    paid_bps = paid / ntl * 1e4
    return (f"{term.coin}: a {'taker' if crossed else 'maker'} fill paid {paid_bps:.3f} bps, the fee model says "
            f"{model_bps:.3f} bps (scale {term.deployer_fee_scale} from {term.scale_source}, "
            f"growth mode {'on' if term.growth_mode else 'off'})")


def clamp_to_oracle(px: Decimal, is_buy: bool, oracle_px: float, sz_decimals: int) -> Decimal:
    """A price no more aggressive than the oracle (a buy at most, a sell at least the oracle), on a
    valid tick; ``px`` itself when it already is, or when the oracle is unknown."""
    if not oracle_px > 0.0:
        return px
    oracle = Decimal(repr(oracle_px))
    if is_buy and px > oracle:
        return round_price(oracle, sz_decimals, is_buy=False)
    if not is_buy and px < oracle:
        return round_price(oracle, sz_decimals, is_buy=True)
    return px


# ------------------------------------------------------------------------------------ using


class _Live:
    __slots__ = ("oi_usd", "refused_until_ms")

    def __init__(self) -> None:
        self.oi_usd = 0.0
        self.refused_until_ms = 0


class TermsView:
    """The latest ``MarketTerms`` as the detector and the executor use them.

    ``static``: terms read once and never refreshed (observe mode: nothing trades, so age does not
    block anything). ``update`` ignores a message older than the one it has (a replayed state).
    """

    def __init__(self, params: MarketTermsParams, coins: Iterable[str] = (), *, static: bool = False) -> None:
        self.params = params
        self.static = static
        self.terms: MarketTerms | None = None
        self._by_coin: dict[str, MarketTerm] = {}
        self._live: dict[str, _Live] = {c: _Live() for c in coins}
        self._max_age_ms = int(params.max_age_s * 1000)
        self._cap_max_age_ms = int(params.at_cap_max_age_s * 1000)

    def update(self, msg: MarketTerms) -> bool:
        """Take a new state message; False if it is older than the one held (nothing changes)."""
        old = self.terms
        if old is not None and (msg.fees_ms, msg.caps_ms) < (old.fees_ms, old.caps_ms):
            return False  # an older read (e.g. a restarted tracker's first, failed one): keep what we have
        self.terms = msg
        self._by_coin = {m.coin: m for m in msg.markets}
        return True

    def term(self, coin: str) -> MarketTerm | None:
        return self._by_coin.get(coin)

    def _stale(self, now_ms: int) -> str | None:
        t = self.terms
        if t is None or t.fees_ms <= 0:
            return None
        if self.static:
            return ""
        # Stable texts (no running age): they are READY details, logged when they change.
        if now_ms - t.fees_ms > self._max_age_ms:
            return f"the last fee read is older than max_age_s ({self.params.max_age_s:g} s)"
        if now_ms - t.caps_ms > self._cap_max_age_ms:
            return ("the last open-interest cap read is older than at_cap_max_age_s "
                    f"({self.params.at_cap_max_age_s:g} s)")
        return ""

    def taker_fee_bps(self, coin: str, now_ms: int) -> tuple[float, str]:
        """(per-leg taker fee in bps, its source) for the threshold; the stated worst case when the terms
        are unknown or too old."""
        m = self._by_coin.get(coin)
        if m is None or self._stale(now_ms) != "":
            return WORST_CASE_TAKER_BPS, "worst_case"
        return m.taker_fee_bps, m.fee_source

    def user_cross_bps(self) -> float:
        """The account's base taker rate (bps) before the HIP-3 multipliers; the tier-0 rate if unknown."""
        t = self.terms
        return t.user_cross_rate * 1e4 if t is not None and t.fees_ms > 0 else float(TIER0_USER_CROSS_RATE) * 1e4

    def on_ctx(self, coin: str, open_interest: float, mark_px: float) -> None:
        """The market stream's open interest (base units) and mark: the live check against the cap."""
        live = self._live.get(coin)
        if live is not None and open_interest >= 0.0 and mark_px > 0.0:
            live.oi_usd = open_interest * mark_px

    def on_cap_refusal(self, coin: str, now_ms: int) -> None:
        """The exchange refused an order of ours for the open-interest cap: no entry there for a while."""
        live = self._live.setdefault(coin, _Live())
        live.refused_until_ms = now_ms + self.params.cap_refusal_block_ms

    def at_cap_reason(self, coin: str, now_ms: int | None) -> str | None:
        """Why ``coin`` counts as at its open-interest cap now, or None (``now_ms`` None: the refusal
        window is not considered)."""
        m = self._by_coin.get(coin)
        if m is not None and m.at_oi_cap:
            return "listed at its open-interest cap by the exchange"
        live = self._live.get(coin)
        if live is None:
            return None
        if m is not None and m.oi_cap_usd > 0.0 and live.oi_usd >= m.oi_cap_usd:
            return f"open interest ${live.oi_usd:,.0f} >= its cap ${m.oi_cap_usd:,.0f}"
        if now_ms is not None and now_ms < live.refused_until_ms:
            return f"the exchange refused an order for the cap ({(live.refused_until_ms - now_ms) // 1000} s left)"
        return None

    def terms_block(self, now_ms: int) -> tuple[str, str] | None:
        """(reason code, one-line detail) when the terms as a whole are unknown or too old, else None."""
        t = self.terms
        if t is None or t.fees_ms <= 0:
            err = f" (last read: {t.error})" if t is not None and t.error else ""
            return "MarketTermsUnknown", f"no fees or open-interest caps read from the exchange yet{err}"
        stale = self._stale(now_ms)
        if stale:
            err = f"; last read failed: {t.error}" if t.error else ""
            return "MarketTermsStale", stale + err
        return None

    def entry_block(self, coin: str, now_ms: int) -> tuple[str, str] | None:
        """(reason code, one-line detail) when no entry may go to ``coin`` now, else None."""
        block = self.terms_block(now_ms)
        if block is not None:
            return block
        if coin not in self._by_coin:
            return "MarketTermsUnknown", f"the exchange's terms do not cover {coin}"
        reason = self.at_cap_reason(coin, now_ms)
        if reason is not None:
            return "OpenInterestCap", f"{coin} {reason}"
        return None

    def summary(self, now_ms: int) -> Mapping[str, int]:
        """Levels for heartbeats and ``status``: age of the reads (s, -1 never) and markets at their cap."""
        t = self.terms
        if t is None or t.fees_ms <= 0:
            return {"terms_fees_age_s": -1, "terms_caps_age_s": -1, "markets_at_oi_cap": 0}
        at_cap = sum(1 for c in self._by_coin if self.at_cap_reason(c, now_ms) is not None)
        return {"terms_fees_age_s": (now_ms - t.fees_ms) // 1000, "terms_caps_age_s": (now_ms - t.caps_ms) // 1000,
                "markets_at_oi_cap": at_cap}

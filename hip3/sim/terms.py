"""The simulator's market terms: fees charged per fill and open-interest caps, modelled on the exchange.

* **Fees.** Every fill costs the exchange's formula (``hip3.hyperliquid.fees.hip3_fee_rates``) of the
  configured inputs (``SimParams.fees``): the account's base rates (``userFees``), each market's deployer
  fee scale (per market in ``meta``, the dex's in ``perpDexs``) and growth mode (``meta``). hip3 reads the
  same answers, so the fee it assumes and the fee the simulator charges come from the same inputs.
* **Open interest.** A market's open interest is the other traders' (``oi.other_oi_usd``, base units at
  the start price) plus every account's absolute position, valued at the mark. At or above the market's
  notional cap (or the dex's total cap) an order that opens or flips a position is refused ("Order would
  increase open interest while open interest is capped"), and so is any order priced more aggressively
  than the oracle ("... while at open interest cap"; whether the exchange applies that to reduce-only
  orders is [UNVERIFIED], modelled as yes). An opening order that would take the open interest past the
  cap is refused with the first text too [UNVERIFIED: the exchange may fill up to the cap]. Both
  assumptions are switches in ``hip3.account.market_terms.UNVERIFIED``, shared with hip3's own logic. Markets in
  ``oi.increase_too_quickly`` refuse opening orders with the rate rule's text.
* Reported like the exchange: ``perpDexLimits`` (``coinToOiCap``, ``totalOiCap``), ``perpsAtOpenInterestCap``
  (full ``dex:COIN`` names), ``perpDexs.assetToStreamingOiCap`` and ``openInterest`` in the asset contexts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from hip3.account.market_terms import UNVERIFIED
from hip3.hyperliquid.errors import ERR_OI_CAP, ERR_OI_INCREASE, ERR_TOO_AGGRESSIVE_AT_OI_CAP
from hip3.hyperliquid.fees import FeeRates, hip3_fee_rates
from hip3.sim.accounts import dstr
from hip3.sim.params import FeeParams, OiParams

if TYPE_CHECKING:
    from hip3.sim.market import Exchange, Market

__all__ = ["SimTerms"]

_SIZE_CAP = "1000000000.0"  # the exchange's constant per-asset size cap (base units)
_CHANGE_TIME = "2025-11-23T17:21:40.390706535"


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


class SimTerms:
    def __init__(self, eng: Exchange, fees: FeeParams, oi: OiParams) -> None:
        self._eng = eng
        self.fees = fees
        self.oi = oi
        self._rates: dict[str, FeeRates] = {}
        self._other_lots: dict[str, int] = {}
        for m in eng.markets:
            usd = oi.other_oi_usd.get(m.coin, 0.0)
            self._other_lots[m.coin] = int(usd / m.spec.start_px * 10**m.szd)
        self._compute_rates()

    # ---- fees ---------------------------------------------------------------------------------------

    def scale(self, coin: str) -> float:
        return self.fees.deployer_fee_scale.get(coin, self.fees.dex_deployer_fee_scale)

    def _compute_rates(self) -> None:
        f = self.fees
        self._rates = {
            m.coin: hip3_fee_rates(_d(f.user_cross_rate), _d(f.user_add_rate),
                                   referral_discount=_d(f.referral_discount),
                                   deployer_fee_scale=_d(self.scale(m.coin)), growth_mode=m.coin in f.growth_mode)
            for m in self._eng.markets
        }

    def rate(self, m: Market, crossed: bool) -> Decimal:
        r = self._rates[m.coin]
        return r.taker if crossed else r.maker

    # ---- open interest ------------------------------------------------------------------------------

    def oi_lots(self, m: Market) -> int:
        held = sum(abs(p.szi) for a in self._eng.accounts.values() if (p := a.positions.get(m.asset)) is not None)
        return self._other_lots[m.coin] + held

    def _ntl(self, m: Market, lots: int) -> Decimal:
        return Decimal(lots).scaleb(-m.szd) * m.mark_dec()

    def cap_usd(self, coin: str) -> float:
        return self.oi.caps_usd.get(coin, self.oi.cap_usd)

    def dex_oi_usd(self) -> Decimal:
        return sum((self._ntl(m, self.oi_lots(m)) for m in self._eng.markets), Decimal(0))

    def at_cap(self, m: Market) -> bool:
        return (self._ntl(m, self.oi_lots(m)) >= _d(self.cap_usd(m.coin))
                or self.dex_oi_usd() >= _d(self.oi.total_cap_usd))

    def check_order(self, m: Market, is_buy: bool, px: int, opening_lots: int) -> str | None:
        """The exchange's open-interest refusal for this order, or None. ``opening_lots``: the part that
        opens or increases a position (a flip's remainder included)."""
        if opening_lots > 0 and m.coin in self.oi.increase_too_quickly:
            return ERR_OI_INCREASE
        at_cap = self.at_cap(m)
        if opening_lots > 0:
            if at_cap:
                return ERR_OI_CAP
            add = self._ntl(m, opening_lots)
            if UNVERIFIED["order_past_cap_refused_whole"] and (
                    self._ntl(m, self.oi_lots(m)) + add > _d(self.cap_usd(m.coin))
                    or self.dex_oi_usd() + add > _d(self.oi.total_cap_usd)):
                return ERR_OI_CAP
            return None
        oracle = m.model.oracle_px
        if at_cap and UNVERIFIED["too_aggressive_applies_to_reduce_only"] and (px > oracle if is_buy else px < oracle):
            return ERR_TOO_AGGRESSIVE_AT_OI_CAP
        return None

    # ---- what /info reports -------------------------------------------------------------------------

    def universe_fields(self, coin: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.fees.meta_reports_scale:
            out["deployerFeeScale"] = dstr(_d(self.scale(coin)))
            out["lastFeeScaleChangeTime"] = _CHANGE_TIME
        if coin in self.fees.growth_mode:
            out["growthMode"] = "enabled"
            out["lastGrowthModeChangeTime"] = _CHANGE_TIME
        return out

    def perp_dex_fields(self) -> dict[str, Any]:
        markets = sorted(self._eng.markets, key=lambda m: m.coin)
        out: dict[str, Any] = {"assetToStreamingOiCap": [[m.coin, dstr(_d(self.cap_usd(m.coin)))] for m in markets]}
        if self.fees.perp_dexs_reports_scale:
            out["deployerFeeScale"] = dstr(_d(self.fees.dex_deployer_fee_scale))
            out["lastDeployerFeeScaleChangeTime"] = _CHANGE_TIME
        return out

    def perp_dex_limits(self) -> dict[str, Any]:
        markets = sorted(self._eng.markets, key=lambda m: m.coin)
        return {
            "totalOiCap": dstr(_d(self.oi.total_cap_usd)),
            "oiSzCapPerPerp": _SIZE_CAP,
            "maxTransferNtl": dstr(_d(self.oi.total_cap_usd)),
            "coinToOiCap": [[m.coin, dstr(_d(self.cap_usd(m.coin)))] for m in markets],
        }

    def at_cap_list(self) -> list[str]:
        return [m.coin for m in self._eng.markets if self.at_cap(m)]

    def user_fees(self) -> dict[str, Any]:
        f = self.fees
        return {
            "dailyUserVlm": [],
            "feeSchedule": {},
            "userCrossRate": dstr(_d(f.user_cross_rate)),
            "userAddRate": dstr(_d(f.user_add_rate)),
            "userSpotCrossRate": "0.0007",
            "userSpotAddRate": "0.0004",
            "activeReferralDiscount": dstr(_d(f.referral_discount)),
            "trial": None,
            "feeTrialEscrow": "0.0",
            "nextTrialAvailableTimestamp": None,
            "stakingLink": None,
            "activeStakingDiscount": {"bpsOfMaxSupply": "0.0", "discount": "0.0"},
        }

    # ---- operator control ---------------------------------------------------------------------------

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change fee or open-interest inputs at run time (the ``terms`` control command). Keys of
        ``FeeParams`` and ``OiParams``; ``other_oi_usd`` is converted at the current mark. ValueError on a
        bad key or value; nothing changes then."""
        fee_keys = set(FeeParams.__struct_fields__)
        oi_keys = set(OiParams.__struct_fields__)
        unknown = [k for k in changes if k not in fee_keys | oi_keys]
        if unknown:
            raise ValueError(f"unknown terms keys {unknown}")
        known = {m.coin for m in self._eng.markets}
        try:
            fees = msgspec.convert({**msgspec.structs.asdict(self.fees),
                                    **{k: v for k, v in changes.items() if k in fee_keys}}, FeeParams)
            oi = msgspec.convert({**msgspec.structs.asdict(self.oi),
                                  **{k: v for k, v in changes.items() if k in oi_keys}}, OiParams)
        except msgspec.ValidationError as e:
            raise ValueError(f"terms: {e}") from None
        named = [*fees.deployer_fee_scale, *fees.growth_mode, *oi.caps_usd, *oi.other_oi_usd, *oi.increase_too_quickly]
        if any(c not in known for c in named):
            raise ValueError(f"terms: unknown markets {[c for c in named if c not in known]}")
        self.fees, self.oi = fees, oi
        for coin, usd in changes.get("other_oi_usd", {}).items():
            m = self._eng.by_coin[coin]
            self._other_lots[coin] = int(usd / float(m.mark_dec()) * 10**m.szd)
            self._eng.outbox.ctxs.add(m.index)
        self._compute_rates()
        return {"at_cap": self.at_cap_list()}

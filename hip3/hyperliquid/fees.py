"""The exchange's fee model for HIP-3 (builder-deployed) perps: what one fill costs this account.

Pure ``Decimal`` arithmetic, no I/O. It follows the formula of the exchange's fee page ("fee formula for
developers"): the account's base rates (``userFees``: ``userCrossRate`` taker, ``userAddRate`` maker, already
tiered by 14-day volume and staking) are scaled by the market's deployer fee scale, cut by 90 % in growth
mode, and reduced by the active referral discount::

    hip3_mult      = scale + 1            if scale < 1 else 2 * scale
    deployer_share = scale / (1 + scale)  if scale < 1 else 0.5
    growth_mult    = 0.1 if growth mode else 1
    taker          = userCrossRate * hip3_mult * growth_mult * (1 - activeReferralDiscount)
    maker (> 0)    = userAddRate   * hip3_mult * growth_mult * (1 - activeReferralDiscount)
    maker (<= 0)   = userAddRate   * growth_mult                      (a rebate is not scaled up)

An aligned quote collateral lowers both (``aligned_quote=True``); leaving it out over-states the fee, the
safe side for an entry threshold. The docs' worked example, tier 0 without discounts and scale 1.0: taker
0.090 %, maker 0.030 %; in growth mode 0.009 % and 0.003 % (``tests/hyperliquid/test_fees.py``).

What it guards against: an entry threshold built on a constant fee. HIP-3 takers pay at least twice the
validator-perp fee (scale 1.0), up to six times with a deployer scale of 3, and a tenth of that in growth
mode; a taker round trip pays it twice.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = [
    "MAX_DEPLOYER_FEE_SCALE",
    "TIER0_USER_ADD_RATE",
    "TIER0_USER_CROSS_RATE",
    "FeeError",
    "FeeRates",
    "hip3_fee_rates",
    "to_decimal",
]

ONE = Decimal(1)
_ZERO = Decimal(0)
_GROWTH_MULT = Decimal("0.1")
_HALF = Decimal("0.5")
# The base (validator-perp) rates of fee tier 0, the highest tier: ``userFees`` of a new account.
TIER0_USER_CROSS_RATE = Decimal("0.00045")
TIER0_USER_ADD_RATE = Decimal("0.00015")
# The deployer's setFeeScale takes "0.0".."3.0"; a growth-mode scale above 3 has been reported by a
# third-party SDK (below 10). Anything at or above this is refused as a malformed answer.
MAX_DEPLOYER_FEE_SCALE = Decimal(10)
# A base rate above 1 % per fill is not a fee schedule the exchange has; refuse it as malformed.
_MAX_BASE_RATE = Decimal("0.01")


class FeeError(ValueError):
    """A fee input the model refuses (negative, non-finite, out of the exchange's range)."""


class FeeRates:
    """The effective rates of one market for one account, as fractions of notional (0.0009 = 0.090 %)."""

    __slots__ = ("maker", "taker")

    def __init__(self, taker: Decimal, maker: Decimal) -> None:
        self.taker = taker
        self.maker = maker

    @property
    def taker_bps(self) -> Decimal:
        return self.taker * 10_000

    @property
    def maker_bps(self) -> Decimal:
        return self.maker * 10_000

    def __repr__(self) -> str:
        return f"FeeRates(taker={self.taker}, maker={self.maker})"


def to_decimal(value: object, field: str) -> Decimal:
    """A decimal string or number from an exchange answer; ``FeeError`` naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise FeeError(f"{field}: expected a decimal string, got {value!r}")
    try:
        d = Decimal(value if not isinstance(value, float) else repr(value))
    except (InvalidOperation, ValueError):
        raise FeeError(f"{field}: not a decimal: {value!r}") from None
    if not d.is_finite():
        raise FeeError(f"{field}: not finite: {value!r}")
    return d


def hip3_fee_rates(
    user_cross_rate: Decimal,
    user_add_rate: Decimal,
    *,
    referral_discount: Decimal = _ZERO,
    deployer_fee_scale: Decimal = ONE,
    growth_mode: bool = False,
    aligned_quote: bool = False,
) -> FeeRates:
    """The taker and maker rates of one HIP-3 market for an account with these ``userFees`` rates.

    Raises ``FeeError`` for inputs outside what the exchange can answer (a negative taker rate, a referral
    discount of 100 % or more, a scale outside [0, 10)).
    """
    if not (_ZERO <= user_cross_rate <= _MAX_BASE_RATE):
        raise FeeError(f"userCrossRate {user_cross_rate} outside [0, {_MAX_BASE_RATE}]")
    if not (-_MAX_BASE_RATE <= user_add_rate <= _MAX_BASE_RATE):
        raise FeeError(f"userAddRate {user_add_rate} outside [-{_MAX_BASE_RATE}, {_MAX_BASE_RATE}]")
    if not (_ZERO <= referral_discount < ONE):
        raise FeeError(f"activeReferralDiscount {referral_discount} outside [0, 1)")
    if not (_ZERO <= deployer_fee_scale < MAX_DEPLOYER_FEE_SCALE):
        raise FeeError(f"deployerFeeScale {deployer_fee_scale} outside [0, {MAX_DEPLOYER_FEE_SCALE})")
    scale = deployer_fee_scale
    if scale < ONE:
        hip3_mult = scale + ONE
        share = scale / (ONE + scale)
    else:
        hip3_mult = 2 * scale
        share = _HALF
    growth = _GROWTH_MULT if growth_mode else ONE
    keep = ONE - referral_discount
    taker = user_cross_rate * hip3_mult * growth * keep
    # A rebate (negative maker rate) is cut by growth mode but not scaled up by the deployer's multiplier.
    maker = user_add_rate * hip3_mult * growth * keep if user_add_rate > 0 else user_add_rate * growth
    if aligned_quote:
        taker *= (ONE - share) * Decimal("0.8") + share
        if maker <= 0:
            maker *= (ONE - share) * Decimal("1.5") + share
    return FeeRates(taker=taker, maker=maker)

"""The HIP-3 fee model (hip3/hyperliquid/fees.py) against the exchange's documented formula and worked
example: tier 0 without discounts, deployer scale 1.0 -> taker 0.090 %, maker 0.030 %; in growth mode
0.009 % and 0.003 %."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hip3.hyperliquid.fees import (
    TIER0_USER_ADD_RATE,
    TIER0_USER_CROSS_RATE,
    FeeError,
    hip3_fee_rates,
    to_decimal,
)

D = Decimal


def tier0(**kw: object) -> tuple[Decimal, Decimal]:
    r = hip3_fee_rates(TIER0_USER_CROSS_RATE, TIER0_USER_ADD_RATE, **kw)  # type: ignore[arg-type]
    return r.taker, r.maker


def test_docs_worked_example_scale_one() -> None:
    taker, maker = tier0()
    assert taker * 100 == D("0.090") and maker * 100 == D("0.030")  # percent, as the docs write them
    assert hip3_fee_rates(TIER0_USER_CROSS_RATE, TIER0_USER_ADD_RATE).taker_bps == D("9")


def test_docs_worked_example_growth_mode() -> None:
    taker, maker = tier0(growth_mode=True)
    assert taker * 100 == D("0.009") and maker * 100 == D("0.003")


@pytest.mark.parametrize(
    ("scale", "growth", "taker_bps"),
    [
        ("0", False, "4.5"),  # scale 0: the validator-perp fee, hip3_mult = 1
        ("0.5", False, "6.75"),  # scale < 1: x (1 + scale)
        ("1", False, "9"),
        ("2", False, "18"),  # scale >= 1: x 2 * scale
        ("3", False, "27"),  # the largest scale outside growth mode
        ("0.5", True, "0.675"),
        ("1", True, "0.9"),
    ],
)
def test_deployer_scale_and_growth_mode(scale: str, growth: bool, taker_bps: str) -> None:
    r = hip3_fee_rates(TIER0_USER_CROSS_RATE, TIER0_USER_ADD_RATE, deployer_fee_scale=D(scale), growth_mode=growth)
    assert r.taker_bps == D(taker_bps)


def test_referral_discount_and_higher_tiers() -> None:
    r = hip3_fee_rates(D("0.00045"), D("0.00015"), referral_discount=D("0.04"))
    assert r.taker == D("0.00045") * 2 * D("0.96") and r.maker == D("0.00015") * 2 * D("0.96")
    assert hip3_fee_rates(D("0.00024"), D("0")).taker_bps == D("4.8")  # tier 6: 0.024 % x 2


def test_a_maker_rebate_is_not_scaled_up_but_is_cut_in_growth_mode() -> None:
    rebate = D("-0.00003")
    assert hip3_fee_rates(D("0.00024"), rebate, deployer_fee_scale=D(3)).maker == rebate
    assert hip3_fee_rates(D("0.00024"), rebate, growth_mode=True).maker == rebate * D("0.1")


def test_aligned_quote_collateral_lowers_the_fee() -> None:
    plain = hip3_fee_rates(TIER0_USER_CROSS_RATE, TIER0_USER_ADD_RATE, deployer_fee_scale=D("0.5"))
    aligned = hip3_fee_rates(TIER0_USER_CROSS_RATE, TIER0_USER_ADD_RATE, deployer_fee_scale=D("0.5"),
                             aligned_quote=True)
    share = D("0.5") / D("1.5")
    assert aligned.taker == plain.taker * ((1 - share) * D("0.8") + share) < plain.taker


@pytest.mark.parametrize(
    "kw",
    [
        {"user_cross_rate": D("-0.0001")},
        {"user_cross_rate": D("0.5")},
        {"referral_discount": D("1")},
        {"referral_discount": D("-0.1")},
        {"deployer_fee_scale": D("10")},
        {"deployer_fee_scale": D("-1")},
    ],
)
def test_out_of_range_inputs_are_refused(kw: dict[str, Decimal]) -> None:
    args = {"user_cross_rate": TIER0_USER_CROSS_RATE, "user_add_rate": TIER0_USER_ADD_RATE, **kw}
    cross, add = args.pop("user_cross_rate"), args.pop("user_add_rate")
    with pytest.raises(FeeError):
        hip3_fee_rates(cross, add, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "abc", None, True, [], {}])
def test_to_decimal_refuses_non_numbers(bad: object) -> None:
    with pytest.raises(FeeError, match="userCrossRate"):
        to_decimal(bad, "userCrossRate")


def test_to_decimal_reads_strings_exactly() -> None:
    assert to_decimal("0.00045", "x") == D("0.00045") and to_decimal(0.1, "x") == D("0.1")

"""Error strings and status classification (unknown statuses terminal; routine rejections benign)."""

from __future__ import annotations

import pytest

from hip3.hyperliquid import errors as E


@pytest.mark.parametrize(
    "text",
    [
        "iocCancelRejected",
        "reduceOnlyRejected",
        "minTradeNtlRejected",
        E.ERR_IOC_CANCEL,
        E.ERR_IOC_CANCEL + " asset=110027",
        E.ERR_REDUCE_ONLY,
        "Reduce only order would increase position. asset=110027",
        "Order has zero size.",
        E.ERR_MIN_TRADE_NTL + " asset=110027",
        # The dex's collateral is short, not the order: never toward the hard stop's rejection trigger
        # (an unfunded HIP-3 dex refuses every entry this way); entries stop on the collateral check.
        E.ERR_PERP_MARGIN,
        E.ERR_PERP_MARGIN + " asset=110027",
        "perpMarginRejected",
    ],
)
def test_benign(text: str) -> None:
    assert E.is_benign_rejection(text)


@pytest.mark.parametrize(
    "text",
    [
        E.ERR_TICK,
        E.ERR_ORACLE,
        "tickRejected",
        "oracleRejected",
        E.rate_limit_error(97460, 97456, "87457.46"),
        E.duplicate_nonce_error(5),
        "",
        None,
    ],
)
def test_not_benign(text: str) -> None:
    assert not E.is_benign_rejection(text)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("open", "open"),
        ("triggered", "open"),
        ("filled", "filled"),
        ("canceled", "cancelled"),
        ("marginCanceled", "cancelled"),
        ("vaultWithdrawalCanceled", "cancelled"),
        ("openInterestCapCanceled", "cancelled"),
        ("selfTradeCanceled", "cancelled"),
        ("reduceOnlyCanceled", "cancelled"),
        ("siblingFilledCanceled", "cancelled"),
        ("delistedCanceled", "cancelled"),
        ("liquidatedCanceled", "cancelled"),
        ("scheduledCancel", "cancelled"),
        ("rejected", "rejected"),
        ("tickRejected", "rejected"),
        ("minTradeNtlRejected", "rejected"),
        ("perpMarginRejected", "rejected"),
        ("reduceOnlyRejected", "rejected"),
        ("badAloPxRejected", "rejected"),
        ("iocCancelRejected", "rejected"),
        ("badTriggerPxRejected", "rejected"),
        ("marketOrderNoLiquidityRejected", "rejected"),
        ("positionIncreaseAtOpenInterestCapRejected", "rejected"),
        ("positionFlipAtOpenInterestCapRejected", "rejected"),
        ("tooAggressiveAtOpenInterestCapRejected", "rejected"),
        ("openInterestIncreaseRejected", "rejected"),
        ("insufficientSpotBalanceRejected", "rejected"),
        ("oracleRejected", "rejected"),
        ("perpMaxPositionRejected", "rejected"),
        ("someFutureStatus", "cancelled"),
        ("", "cancelled"),
    ],
)
def test_order_status_kind(status: str, kind: str) -> None:
    assert E.order_status_kind(status) == kind


def test_formatters() -> None:
    assert E.rate_limit_error(97460, 97456, "87457.46") == (
        "Too many cumulative requests sent (97460 > 97456) for cumulative volume traded $87457.46. "
        "Place taker orders to free up 1 request per USDC traded."
    )
    assert E.is_rate_limit_error(E.rate_limit_error(1, 0, "0"))
    assert E.nonce_too_low_error(5, 7) == "Invalid nonce: nonce too low 5 < 7"
    assert E.is_nonce_error(E.duplicate_nonce_error(3))
    assert E.bad_alo_px_error("(1.0, 1.1)") == "Post only order would have immediately matched, bbo was (1.0, 1.1)."


@pytest.mark.parametrize(
    "text",
    [
        E.ERR_OI_CAP,
        E.ERR_OI_CAP + " asset=110027",
        E.ERR_TOO_AGGRESSIVE_AT_OI_CAP,
        E.ERR_OI_INCREASE,
        "exchange: " + E.ERR_OI_CAP,
        "positionIncreaseAtOpenInterestCapRejected",
        "positionFlipAtOpenInterestCapRejected",
        "tooAggressiveAtOpenInterestCapRejected",
        "openInterestIncreaseRejected",
        "openInterestCapCanceled",
    ],
)
def test_open_interest_cap_refusals_are_benign_for_the_hard_stop(text: str) -> None:
    """The market's cap, not a fault of the order: never counted toward the HardStop."""
    assert E.is_oi_cap_rejection(text) and E.is_benign_rejection(text)


@pytest.mark.parametrize("text", [E.ERR_PERP_MARGIN, E.ERR_ORACLE, "perpMaxPositionRejected", "", None, 5])
def test_other_refusals_are_not_cap_refusals(text: object) -> None:
    assert not E.is_oi_cap_rejection(text)


def test_margin_and_min_value_rejections_are_recognised_whatever_the_source() -> None:
    for text in (E.ERR_PERP_MARGIN, "exchange: " + E.ERR_PERP_MARGIN + " asset=110027", "exchange: perpMarginRejected"):
        assert E.is_margin_rejection(text)
    for text in (E.ERR_MIN_TRADE_NTL, "exchange: " + E.ERR_MIN_TRADE_NTL + " asset=1", "exchange: minTradeNtlRejected"):
        assert E.is_min_value_rejection(text)
    for text in (E.ERR_TICK, E.ERR_IOC_CANCEL, "", None):
        assert not E.is_margin_rejection(text) and not E.is_min_value_rejection(text)

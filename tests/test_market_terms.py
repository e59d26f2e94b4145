"""Market terms (hip3/account/market_terms.py): the exchange's answers become per-market fees and open-interest
caps; the view the detector and the executor use fails closed (no terms, old terms, a market at its cap)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from hip3.account.market_terms import (
    WORST_CASE_TAKER_BPS,
    MarketTermsParams,
    RawTerms,
    TermsError,
    TermsView,
    apply_at_cap,
    build_terms,
    clamp_to_oracle,
    fee_mismatch,
)
from hip3.sim.engine import Engine
from hip3.sim.info import handle_info
from hip3.sim.params import FeeParams, OiParams, SimParams
from tests.terms_helpers import terms_msg

T0 = 1_769_594_000_000
USER = "0x" + "11" * 20
COINS = ("xyz:GOLD", "xyz:TSLA")


def raw_from(eng: Engine, *, with_user: bool = True) -> RawTerms:
    """A full read, answered by the simulator (the exchange's shapes)."""
    def q(body: dict[str, Any]) -> Any:
        return msgspec.json.decode(msgspec.json.encode(handle_info(eng, body, T0)))  # through JSON, as on the wire

    return RawTerms(perp_dexs=q({"type": "perpDexs"}), meta_and_ctxs=q({"type": "metaAndAssetCtxs", "dex": "xyz"}),
                    dex_limits=q({"type": "perpDexLimits", "dex": "xyz"}),
                    at_cap=q({"type": "perpsAtOpenInterestCap", "dex": "xyz"}),
                    user_fees=q({"type": "userFees", "user": USER}) if with_user else None)


def build(params: SimParams | None = None, **kw: Any) -> Any:
    eng = Engine(params or SimParams(), seed=3, now_ms=T0)
    t = build_terms(raw_from(eng, **kw), "xyz", COINS, T0)
    return {m.coin: m for m in t.markets}, t


def test_default_exchange_answers_give_nine_bps_a_leg() -> None:
    by, t = build()
    assert by["xyz:GOLD"].taker_fee_bps == pytest.approx(9.0) and by["xyz:GOLD"].maker_fee_bps == pytest.approx(3.0)
    assert by["xyz:GOLD"].scale_source == "meta" and by["xyz:GOLD"].fee_source == "exchange"
    assert t.fees_ms == t.caps_ms == T0 and t.user_cross_rate == 0.00045 and t.error == ""
    assert by["xyz:GOLD"].oi_cap_usd == 50_000_000.0 and not by["xyz:GOLD"].at_oi_cap
    assert t.dex_oi_cap_usd == 1_000_000_000.0


def test_per_market_scale_wins_then_the_dex_scale_then_the_worst_case() -> None:
    fees = FeeParams(deployer_fee_scale={"xyz:TSLA": 3.0}, dex_deployer_fee_scale=0.5, growth_mode=("xyz:GOLD",))
    by, _ = build(SimParams(fees=fees))
    assert by["xyz:TSLA"].taker_fee_bps == pytest.approx(27.0) and by["xyz:TSLA"].scale_source == "meta"
    assert by["xyz:GOLD"].taker_fee_bps == pytest.approx(0.675) and by["xyz:GOLD"].growth_mode  # 4.5 x 1.5 x 0.1
    by, _ = build(SimParams(fees=FeeParams(meta_reports_scale=False, dex_deployer_fee_scale=2.0)))
    assert by["xyz:GOLD"].taker_fee_bps == pytest.approx(18.0) and by["xyz:GOLD"].scale_source == "perpDexs"
    by, _ = build(SimParams(fees=FeeParams(meta_reports_scale=False, perp_dexs_reports_scale=False)))
    assert by["xyz:GOLD"].taker_fee_bps == pytest.approx(WORST_CASE_TAKER_BPS) == pytest.approx(27.0)
    assert by["xyz:GOLD"].scale_source == "worst_case" and by["xyz:GOLD"].fee_source == "exchange_worst_scale"


def test_user_rates_and_referral_and_no_account() -> None:
    by, t = build(SimParams(fees=FeeParams(user_cross_rate=0.0003, referral_discount=0.1)))
    assert by["xyz:GOLD"].taker_fee_bps == pytest.approx(0.0003 * 2 * 0.9 * 1e4)
    assert t.referral_discount == pytest.approx(0.1)
    by, _ = build(SimParams(fees=FeeParams(user_cross_rate=0.0003)), with_user=False)
    assert by["xyz:GOLD"].taker_fee_bps == pytest.approx(9.0) and by["xyz:GOLD"].fee_source == "tier0_assumed"


def test_caps_and_at_cap_list() -> None:
    oi = OiParams(caps_usd={"xyz:TSLA": 100_000.0}, other_oi_usd={"xyz:TSLA": 150_000.0})
    by, t = build(SimParams(oi=oi))
    assert by["xyz:TSLA"].at_oi_cap and by["xyz:TSLA"].oi_cap_usd == 100_000.0 and by["xyz:TSLA"].oi_usd > 100_000
    assert not by["xyz:GOLD"].at_oi_cap
    later = apply_at_cap(t, [], "xyz", T0 + 15_000)  # the market left its cap
    assert later.caps_ms == T0 + 15_000 and later.fees_ms == T0 and not any(m.at_oi_cap for m in later.markets)
    bare = apply_at_cap(t, ["GOLD"], "xyz", T0 + 1)  # a bare name is taken with the dex prefix
    assert [m.coin for m in bare.markets if m.at_oi_cap] == ["xyz:GOLD"]


def test_dex_total_reached_caps_every_market() -> None:
    oi = OiParams(total_cap_usd=1_000_000.0, other_oi_usd={"xyz:NVDA": 2_000_000.0})
    by, t = build(SimParams(oi=oi))
    assert all(m.at_oi_cap for m in by.values()) and t.dex_oi_usd > t.dex_oi_cap_usd
    assert all(m.at_oi_cap for m in apply_at_cap(t, [], "xyz", T0 + 1).markets)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("user_fees", {"userAddRate": "0.0001"}, "userCrossRate"),
        ("user_fees", {"userCrossRate": "NaN", "userAddRate": "0"}, "userCrossRate"),
        ("user_fees", {"userCrossRate": "0.00045", "userAddRate": "0", "activeReferralDiscount": "1.5"}, "Referral"),
        ("perp_dexs", [None], "no dex named"),
        ("perp_dexs", {"x": 1}, "perpDexs"),
        ("meta_and_ctxs", [{"universe": []}, []], "no market"),
        ("meta_and_ctxs", {}, "metaAndAssetCtxs"),
        ("dex_limits", {"coinToOiCap": [["xyz:GOLD"]]}, "coinToOiCap"),
        ("dex_limits", "nope", "perpDexLimits"),
        ("at_cap", {"coins": []}, "perpsAtOpenInterestCap"),
        ("at_cap", [5], "coin name"),
    ],
)
def test_malformed_answers_are_refused_with_one_line(field: str, value: Any, match: str) -> None:
    eng = Engine(SimParams(), seed=3, now_ms=T0)
    raw = msgspec.structs.replace(raw_from(eng), **{field: value})
    with pytest.raises(TermsError, match=match) as e:
        build_terms(raw, "xyz", COINS, T0)
    assert "\n" not in str(e.value)


def test_no_limits_means_no_cap() -> None:
    eng = Engine(SimParams(), seed=3, now_ms=T0)
    t = build_terms(msgspec.structs.replace(raw_from(eng), dex_limits=None), "xyz", COINS, T0)
    assert all(m.oi_cap_usd == 0.0 for m in t.markets) and t.dex_oi_cap_usd == 0.0


# ---- the view ----------------------------------------------------------------------------------------


P = MarketTermsParams(refresh_interval_s=60, at_cap_refresh_interval_s=10, max_age_s=300, at_cap_max_age_s=30,
                      cap_refusal_block_ms=5000)


def test_unknown_terms_block_entries_and_use_the_worst_case_fee() -> None:
    v = TermsView(P, COINS)
    assert v.entry_block("xyz:GOLD", T0) == ("MarketTermsUnknown", "no fees or open-interest caps read from the "
                                                                    "exchange yet")
    assert v.taker_fee_bps("xyz:GOLD", T0) == (WORST_CASE_TAKER_BPS, "worst_case")
    failed = msgspec.structs.replace(terms_msg(COINS, fees_ms=0), error="full read failed: HTTP 429")
    v.update(failed)
    code, detail = v.entry_block("xyz:GOLD", T0) or ("", "")
    assert code == "MarketTermsUnknown" and "HTTP 429" in detail


def test_fresh_terms_allow_entries_and_give_the_market_fee() -> None:
    v = TermsView(P, COINS)
    assert v.update(terms_msg(COINS, 9.0, fees_ms=T0))
    assert v.entry_block("xyz:GOLD", T0 + 1000) is None
    assert v.taker_fee_bps("xyz:GOLD", T0 + 1000) == (9.0, "exchange")
    assert v.entry_block("xyz:NVDA", T0) == ("MarketTermsUnknown", "the exchange's terms do not cover xyz:NVDA")


def test_old_terms_block_entries_fees_and_caps_separately() -> None:
    v = TermsView(P, COINS)
    v.update(terms_msg(COINS, 9.0, fees_ms=T0, caps_ms=T0 + 280_000))
    assert v.entry_block("xyz:GOLD", T0 + 299_000) is None
    code, detail = v.entry_block("xyz:GOLD", T0 + 301_000) or ("", "")
    assert code == "MarketTermsStale" and "max_age_s (300 s)" in detail
    assert v.taker_fee_bps("xyz:GOLD", T0 + 301_000) == (WORST_CASE_TAKER_BPS, "worst_case")
    v.update(terms_msg(COINS, 9.0, fees_ms=T0 + 290_000, caps_ms=T0 + 290_000))
    code, detail = v.entry_block("xyz:GOLD", T0 + 321_000) or ("", "")
    assert code == "MarketTermsStale" and "at_cap_max_age_s (30 s)" in detail
    assert v.terms_block(T0 + 321_000) is not None


def test_an_older_state_message_is_ignored() -> None:
    v = TermsView(P, COINS)
    v.update(terms_msg(COINS, 9.0, fees_ms=T0 + 10))
    assert not v.update(terms_msg(COINS, 1.0, fees_ms=T0))  # e.g. a restarted tracker's failed first read
    assert v.taker_fee_bps("xyz:GOLD", T0 + 20)[0] == 9.0


def test_a_market_at_its_cap_blocks_entries_three_ways() -> None:
    v = TermsView(P, COINS)
    v.update(terms_msg(COINS, fees_ms=T0, at_cap=["xyz:TSLA"], oi_cap_usd=1_000_000.0))
    assert v.entry_block("xyz:TSLA", T0) == ("OpenInterestCap", "xyz:TSLA listed at its open-interest cap by the "
                                                                "exchange")
    assert v.entry_block("xyz:GOLD", T0) is None
    v.on_ctx("xyz:GOLD", 250.0, 4000.0)  # the market stream: $1,000,000 of open interest
    code, detail = v.entry_block("xyz:GOLD", T0) or ("", "")
    assert code == "OpenInterestCap" and "$1,000,000 >= its cap $1,000,000" in detail
    v.on_ctx("xyz:GOLD", 200.0, 4000.0)
    assert v.entry_block("xyz:GOLD", T0) is None
    v.on_cap_refusal("xyz:GOLD", T0)  # the exchange refused one of ours for the cap
    assert (v.entry_block("xyz:GOLD", T0 + 4999) or ("",))[0] == "OpenInterestCap"
    assert v.entry_block("xyz:GOLD", T0 + 5000) is None
    assert v.at_cap_reason("xyz:GOLD", None) is None  # no time: the refusal window is not considered
    assert v.summary(T0 + 1000) == {"terms_fees_age_s": 1, "terms_caps_age_s": 1, "markets_at_oi_cap": 2}
    assert v.summary(T0 + 6000) == {"terms_fees_age_s": 6, "terms_caps_age_s": 6, "markets_at_oi_cap": 1}


def test_static_terms_never_grow_old() -> None:
    v = TermsView(P, COINS, static=True)
    v.update(terms_msg(COINS, 9.0, fees_ms=T0))
    assert v.entry_block("xyz:GOLD", T0 + 10**9) is None and v.taker_fee_bps("xyz:GOLD", T0 + 10**9)[0] == 9.0


def test_params_refuse_ages_shorter_than_the_reads() -> None:
    with pytest.raises(ValueError, match="max_age_s"):
        MarketTermsParams(refresh_interval_s=600, max_age_s=300)
    with pytest.raises(ValueError, match="at_cap_max_age_s"):
        MarketTermsParams(at_cap_refresh_interval_s=60, at_cap_max_age_s=30)


def test_fee_mismatch() -> None:
    term = terms_msg(["xyz:GOLD"], 9.0).markets[0]
    d = Decimal
    assert fee_mismatch(term, d("4000"), d("0.01"), d("0.036"), True, 0.25) is None  # 9 bps of $40
    text = fee_mismatch(term, d("4000"), d("0.01"), d("0.108"), True, 0.25)  # 27 bps: a scale of 3?
    assert text is not None and "paid 27.000 bps" in text and "9.000 bps" in text
    assert fee_mismatch(term, d("4000"), d("0.01"), d("0.012"), False, 0.25) is None  # maker 3 bps


@pytest.mark.parametrize(
    ("px", "is_buy", "oracle", "want"),
    [
        ("101.5", True, 100.0, "100"),  # a buy above the oracle comes down to it
        ("99.5", True, 100.0, "99.5"),  # already below: unchanged
        ("98.5", False, 100.0, "100"),  # a sell below the oracle comes up to it
        ("100.25", False, 100.0, "100.25"),
        ("101.5", True, 100.123456, "100.12"),  # on a valid tick, rounded away from aggressive (szd 2: 4 dp)
        ("99", False, 99.876543, "99.877"),
        ("101.5", True, 0.0, "101.5"),  # no oracle: unchanged
    ],
)
def test_clamp_to_oracle(px: str, is_buy: bool, oracle: float, want: str) -> None:
    assert clamp_to_oracle(Decimal(px), is_buy, oracle, 2) == Decimal(want)

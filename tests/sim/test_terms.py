"""The simulator's market terms (hip3/sim/terms.py): fees charged from the exchange's inputs, and the
open-interest cap enforced and reported the way the exchange does (perpsAtOpenInterestCap, perpDexLimits,
perpDexs, the refusal texts). Engine-level, on a virtual clock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hip3.hyperliquid.errors import ERR_OI_CAP, ERR_OI_INCREASE, ERR_TOO_AGGRESSIVE_AT_OI_CAP
from hip3.hyperliquid.fees import hip3_fee_rates
from hip3.sim.engine import Engine
from hip3.sim.info import handle_info
from hip3.sim.params import FeeParams, OiParams, SimParams, SimParamsError
from tests.sim.helpers import order
from tests.sim.test_engine import T0, TSLA, Trader, best

D = Decimal
GOLD = 110003  # xyz:GOLD is universe[3], szDecimals 4


def info(eng: Engine, body: dict[str, Any]) -> Any:
    return handle_info(eng, body, T0)


def fee_of(eng: Engine, t: Trader) -> Decimal:
    return Decimal(eng.accounts[t.address].fills[-1]["fee"])


def test_default_fee_is_tier0_at_scale_one_and_served_as_the_exchange_does() -> None:
    eng = Engine(SimParams(), seed=3, now_ms=T0)
    t = Trader(eng)
    _, ask = best(eng)
    t.status(order(TSLA, True, ask, "0.1", "Ioc"))
    assert fee_of(eng, t) == (D(ask) * D("0.1") * D("0.0009")).quantize(D("0.000001"))
    fees = info(eng, {"type": "userFees", "user": t.address})
    assert (fees["userCrossRate"], fees["userAddRate"], fees["activeReferralDiscount"]) == ("0.00045", "0.00015",
                                                                                          "0.0")
    tsla = next(u for u in info(eng, {"type": "meta", "dex": "xyz"})["universe"] if u["name"] == "xyz:TSLA")
    assert tsla["deployerFeeScale"] == "1.0" and "growthMode" not in tsla
    dex = info(eng, {"type": "perpDexs"})[1]
    assert dex["deployerFeeScale"] == "1.0" and ["xyz:TSLA", "50000000.0"] in dex["assetToStreamingOiCap"]


def test_fees_follow_scale_growth_mode_and_referral() -> None:
    fees = FeeParams(user_cross_rate=0.0004, user_add_rate=0.00012, referral_discount=0.04,
                     deployer_fee_scale={"xyz:TSLA": 3.0}, growth_mode=("xyz:GOLD",))
    eng = Engine(SimParams(fees=fees), seed=3, now_ms=T0)
    t = Trader(eng)
    _, ask = best(eng)
    t.status(order(TSLA, True, ask, "0.1", "Ioc"))
    want = hip3_fee_rates(D("0.0004"), D("0.00012"), referral_discount=D("0.04"), deployer_fee_scale=D(3)).taker
    assert want == D("0.0004") * 6 * D("0.96")
    assert fee_of(eng, t) == (D(ask) * D("0.1") * want).quantize(D("0.000001"))
    _, gask = best(eng, "xyz:GOLD")
    t.status(order(GOLD, True, gask, "0.01", "Ioc"))
    growth = hip3_fee_rates(D("0.0004"), D("0.00012"), referral_discount=D("0.04"), growth_mode=True).taker
    assert fee_of(eng, t) == (D(gask) * D("0.01") * growth).quantize(D("0.000001"))
    uni = {u["name"]: u for u in info(eng, {"type": "meta", "dex": "xyz"})["universe"]}
    assert uni["xyz:TSLA"]["deployerFeeScale"] == "3.0" and uni["xyz:GOLD"]["growthMode"] == "enabled"
    assert info(eng, {"type": "userFees", "user": t.address})["activeReferralDiscount"] == "0.04"


def test_scale_reported_only_by_perp_dexs_when_meta_does_not() -> None:
    eng = Engine(SimParams(fees=FeeParams(meta_reports_scale=False, dex_deployer_fee_scale=2.0)), seed=3, now_ms=T0)
    assert all("deployerFeeScale" not in u for u in info(eng, {"type": "meta", "dex": "xyz"})["universe"])
    assert info(eng, {"type": "perpDexs"})[1]["deployerFeeScale"] == "2.0"


def at_cap_engine(**oi: Any) -> Engine:
    return Engine(SimParams(oi=OiParams(caps_usd={"xyz:TSLA": 100_000.0}, **oi)), seed=3, now_ms=T0)


def test_opening_orders_are_refused_at_the_cap_and_it_is_reported() -> None:
    eng = at_cap_engine(other_oi_usd={"xyz:TSLA": 200_000.0})
    t = Trader(eng)
    bid, ask = best(eng)
    assert t.status(order(TSLA, True, ask, "0.1", "Ioc")) == {"error": ERR_OI_CAP}
    assert t.status(order(TSLA, False, bid, "0.1", "Ioc")) == {"error": ERR_OI_CAP}
    assert info(eng, {"type": "perpsAtOpenInterestCap", "dex": "xyz"}) == ["xyz:TSLA"]
    assert info(eng, {"type": "perpsAtOpenInterestCap", "dex": ""}) == []
    limits = info(eng, {"type": "perpDexLimits", "dex": "xyz"})
    assert ["xyz:TSLA", "100000.0"] in limits["coinToOiCap"] and limits["totalOiCap"] == "1000000000.0"
    assert info(eng, {"type": "perpDexLimits", "dex": ""}) is None
    ctx = info(eng, {"type": "metaAndAssetCtxs", "dex": "xyz"})[1][1]  # TSLA
    assert D(ctx["openInterest"]) * D(ctx["markPx"]) >= 100_000


def test_exits_are_allowed_at_the_cap_unless_priced_beyond_the_oracle() -> None:
    eng = at_cap_engine()
    t = Trader(eng)
    _, ask = best(eng)
    assert "filled" in t.status(order(TSLA, True, ask, "0.2", "Ioc"))  # a long, before the cap
    eng.terms.update({"other_oi_usd": {"xyz:TSLA": 200_000.0}})
    m = eng.by_coin["xyz:TSLA"]
    oracle = m.px_str(m.model.oracle_px)
    assert t.status(order(TSLA, True, ask, "0.1", "Ioc")) == {"error": ERR_OI_CAP}  # adding to it: no
    far = str(D(oracle) - D("10"))  # a sell far below the oracle: more aggressive than the oracle
    assert t.status(order(TSLA, False, far, "0.1", "Ioc", reduce_only=True)) == {"error": ERR_TOO_AGGRESSIVE_AT_OI_CAP}
    # A reduce-only sell at the oracle or above is allowed (it fills if the book is there, here it rests
    # as GTC to show it was accepted).
    st = t.status(order(TSLA, False, str(D(oracle) + D("1")), "0.1", "Gtc", reduce_only=True))
    assert "resting" in st


def test_an_order_that_would_pass_the_cap_is_refused() -> None:
    eng = at_cap_engine(other_oi_usd={"xyz:TSLA": 99_990.0})
    t = Trader(eng)
    _, ask = best(eng)
    assert t.status(order(TSLA, True, ask, "0.1", "Ioc")) == {"error": ERR_OI_CAP}  # ~$43 more: past $100k
    assert info(eng, {"type": "perpsAtOpenInterestCap", "dex": "xyz"}) == []


def test_the_dex_total_cap_caps_every_market() -> None:
    eng = Engine(SimParams(oi=OiParams(total_cap_usd=1_000_000.0, other_oi_usd={"xyz:GOLD": 2_000_000.0})),
                 seed=3, now_ms=T0)
    t = Trader(eng)
    _, ask = best(eng)
    assert t.status(order(TSLA, True, ask, "0.1", "Ioc")) == {"error": ERR_OI_CAP}
    assert len(info(eng, {"type": "perpsAtOpenInterestCap", "dex": "xyz"})) == len(eng.markets)


def test_increase_too_quickly_refuses_opening_orders_only() -> None:
    eng = Engine(SimParams(oi=OiParams(increase_too_quickly=("xyz:TSLA",))), seed=3, now_ms=T0)
    t = Trader(eng)
    _, ask = best(eng)
    assert t.status(order(TSLA, True, ask, "0.1", "Ioc")) == {"error": ERR_OI_INCREASE}


def test_open_interest_counts_every_account() -> None:
    eng = Engine(SimParams(), seed=3, now_ms=T0)
    a, b = Trader(eng), Trader(eng)
    bid, ask = best(eng)
    a.status(order(TSLA, True, ask, "0.2", "Ioc"))
    b.status(order(TSLA, False, bid, "0.1", "Ioc"))
    assert eng.terms.oi_lots(eng.by_coin["xyz:TSLA"]) == 300  # 0.3 in lots of 0.001
    a.status(order(TSLA, False, bid, "0.2", "Ioc", reduce_only=True))
    assert eng.terms.oi_lots(eng.by_coin["xyz:TSLA"]) == 100


def test_runtime_control_and_bad_config() -> None:
    eng = Engine(SimParams(), seed=3, now_ms=T0)
    assert eng.terms.update({"caps_usd": {"xyz:TSLA": 1.0}}) == {"at_cap": []}  # no open interest yet
    with pytest.raises(ValueError, match="unknown markets"):
        eng.terms.update({"growth_mode": ["xyz:NOPE"]})
    with pytest.raises(ValueError, match="unknown terms keys"):
        eng.terms.update({"taker_fee_rate": 0.1})
    with pytest.raises(SimParamsError, match=r"oi\.caps_usd"):
        SimParams.from_dict({"oi": {"caps_usd": {"xyz:NOPE": 5.0}}})

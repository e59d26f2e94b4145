"""The detector's threshold pays the exchange's fee on both legs (hip3/strategy/detector_core.py with
hip3/account/market_terms.py): a round trip of taker IOCs costs twice the market's taker fee; without known
terms the stated worst case is used and no intent is built; a market at its open-interest cap gets no
intent; the assumed fee travels with the signal and the intent."""

from __future__ import annotations

import pytest

from hip3.account.market_terms import WORST_CASE_TAKER_BPS, MarketTermsParams, TermsView
from hip3.config import ConfigError, MarketConfig, parse_config
from hip3.strategy.detector_core import DetectorCore
from hip3.strategy.params import DetectorParams, GateParams, OracleTrackerParams
from tests.terms_helpers import T0_MS as TERMS_MS
from tests.terms_helpers import known_terms, terms_msg

from .helpers import T0_MS, T0_NS, bbo, ctx

G = "xyz:G"
GATES = GateParams(max_mark_mid_divergence_bps=0)


def make(terms: TermsView, *, trading: bool = True, threshold: float | None = None) -> DetectorCore:
    return DetectorCore(OracleTrackerParams(), GATES, DetectorParams(), [MarketConfig(coin=G, threshold_bps=threshold)],
                        trading=trading, sz_decimals={G: 2}, assets={G: 110000}, id_prefix="t", terms=terms)


def dislocate(core: DetectorCore, edge_bps: float) -> None:
    """Two 10 bps oracle moves up, then an ask ``edge_bps`` under the oracle."""
    px = 100.0
    core.on_ctx(ctx(G, px), T0_NS)
    for _ in range(2):
        px = round(px * 1.001, 6)
        core.on_ctx(ctx(G, px), T0_NS)
    core.on_bbo(bbo(G, px * (1 - (edge_bps + 1) / 1e4), px * (1 - edge_bps / 1e4), ask_sz=100.0), T0_NS)


@pytest.mark.parametrize(("fee", "edge", "signal"), [
    (9.0, 24.5, False),  # tier 0 at scale 1: 9 + 9 + slippage 2 + min edge 5 = 25 bps
    (9.0, 25.5, True),
    (27.0, 60.0, False),  # scale 3: 27 + 27 + 7 = 61
    (0.9, 9.0, True),  # growth mode: 0.9 + 0.9 + 7 = 8.8
])
def test_threshold_pays_the_fee_on_both_legs(fee: float, edge: float, signal: bool) -> None:
    core = make(known_terms([G], fee))
    assert core.threshold_bps(G, True, T0_MS) == pytest.approx(2 * fee + 7.0)
    dislocate(core, edge)
    out = core.evaluate(T0_NS, T0_MS)
    assert (len(out) == 1) is signal
    if signal:
        d = out[0]
        assert d.signal.taker_fee_bps == fee and d.signal.fee_source == "exchange"
        assert d.record.effective_fee_bps == fee and d.record.total_cost_bps == pytest.approx(2 * fee + 7.0)
        assert d.intent is not None and d.intent.taker_fee_bps == fee and d.intent.fee_source == "exchange"


def test_a_configured_threshold_never_goes_below_the_round_trip_fee() -> None:
    core = make(known_terms([G], 9.0), threshold=10.0)
    assert core.threshold_bps(G, True, T0_MS) == 18.0
    core = make(known_terms([G], 2.0), threshold=10.0)
    assert core.threshold_bps(G, True, T0_MS) == 10.0


def test_unknown_terms_use_the_worst_case_and_build_no_intent() -> None:
    core = make(TermsView(MarketTermsParams(), [G]))
    assert core.threshold_bps(G, True, T0_MS) == pytest.approx(2 * WORST_CASE_TAKER_BPS + 7.0)
    assert core.terms_blocked(T0_MS).startswith("market terms: no fees or open-interest caps read")
    dislocate(core, 70.0)  # past even the worst case (61 bps): a signal, recorded, but no order
    (d,) = core.evaluate(T0_NS, T0_MS)
    assert d.intent is None and d.signal.fee_source == "worst_case" and core.counts["entry_blocked_terms"] == 1


def test_terms_that_grow_old_stop_entries() -> None:
    view = TermsView(MarketTermsParams(max_age_s=300, at_cap_max_age_s=90), [G])
    view.update(terms_msg([G], 9.0, fees_ms=TERMS_MS))
    core = make(view)
    assert core.terms_blocked(TERMS_MS + 80_000) == ""
    assert "at_cap_max_age_s" in core.terms_blocked(TERMS_MS + 91_000)
    assert core.threshold_bps(G, True, TERMS_MS + 91_000) == pytest.approx(2 * WORST_CASE_TAKER_BPS + 7.0)


def test_no_intent_into_a_market_at_its_cap() -> None:
    core = make(known_terms([G], 9.0, at_cap=[G]))
    assert core.terms_blocked(T0_MS) == ""  # the terms are fine: this one market is capped
    dislocate(core, 30.0)
    (d,) = core.evaluate(T0_NS, T0_MS)
    assert d.intent is None and core.counts["entry_blocked_oi_cap"] == 1


def test_observe_mode_records_with_the_fee_and_never_blocks() -> None:
    core = make(known_terms([G], 9.0, source="tier0_assumed"), trading=False)
    dislocate(core, 30.0)
    (d,) = core.evaluate(T0_NS, T0_MS)
    assert d.intent is None and d.signal.fee_source == "tier0_assumed" and core.terms_blocked(T0_MS) == ""


def test_the_old_constant_fee_key_is_refused_with_its_reason() -> None:
    text = ('mode = "paper"\n[exchange]\nnetwork = "sim"\n[[markets]]\ncoin = "xyz:GOLD"\n'
            '[detector]\ntaker_fee_bps = 4.0\n')
    with pytest.raises(ConfigError, match=r"detector\.taker_fee_bps is no longer used") as e:
        parse_config(text, "old.toml")
    assert "\n" not in str(e.value)

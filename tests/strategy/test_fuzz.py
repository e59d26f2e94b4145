"""Property: arbitrary (including garbage) market data never raises in the detector or exit watcher."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hip3.config import MarketConfig
from hip3.messages import AssetCtx, Bbo
from hip3.strategy.detector_core import DetectorCore
from hip3.strategy.exit_watcher_core import ExitWatcherCore
from hip3.strategy.params import DetectorParams, ExitParams, GateParams, OracleTrackerParams
from tests.terms_helpers import known_terms

from .helpers import T0_MS, T0_NS, position, snapshot

COINS = ["xyz:A", "xyz:B"]
px = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=0.5, max_value=2.0))
coin = st.sampled_from([*COINS, "xyz:Z", ""])
bbos = st.builds(Bbo, coin=coin, bid_px=px, bid_sz=px, ask_px=px, ask_sz=px,
                 exch_ms=st.integers(0, 10), recv_ns=st.integers(0, 10**9))
ctxs = st.builds(AssetCtx, coin=coin, oracle_px=px, mark_px=px, mid_px=px, funding=px, open_interest=px,
                 recv_ns=st.integers(0, 10**9))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(bbos, ctxs), max_size=40), st.integers(0, 60_000))
def test_garbage_never_raises(msgs: list[Bbo | AssetCtx], dt_ms: int) -> None:
    loose = DetectorParams(min_consecutive_oracle_moves=0, oracle_direction_filter=False, min_oracle_change_bps=0.0,
                           min_book_notional_usd=0.0)
    det = DetectorCore(OracleTrackerParams(), GateParams(max_bbo_age_ms=0), loose,
                       [MarketConfig(coin=c) for c in COINS], trading=True, sz_decimals=dict.fromkeys(COINS, 2),
                       assets=dict.fromkeys(COINS, 1), terms=known_terms(COINS))
    ex = ExitWatcherCore(ExitParams(), OracleTrackerParams(), dict.fromkeys(COINS, 2))
    ex.on_position_snapshot(snapshot(position("xyz:A"), position("xyz:B", is_long=False)), T0_NS, T0_MS)
    now = T0_NS + dt_ms * 1_000_000
    for m in msgs:
        if isinstance(m, Bbo):
            det.on_bbo(m, now)
            out = ex.on_bbo(m, now)
        else:
            det.on_ctx(m, now)
            out = ex.on_ctx(m, now)
        for d in det.evaluate(now, T0_MS):
            if d.intent is not None:
                assert d.intent.sz > 0 and d.intent.px > 0
        if out is not None:
            assert out.px > 0 and out.sz == Decimal(2) and out.reduce_only
    ex.on_tick(now)
    det.due_followups(now + 10**10, T0_MS)

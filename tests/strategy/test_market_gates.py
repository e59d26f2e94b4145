"""Market state, oracle tracker and pre-trade gates: freshness by receive time, transitions only, state per
market, invalid books never fed to an EWMA, bad frames never raise."""

from __future__ import annotations

import msgspec
import pytest

from hip3.strategy.gates import Gates, GateVerdict
from hip3.strategy.market_state import MarketBook
from hip3.strategy.oracle_tracker import OracleTracker
from hip3.strategy.params import DetectorParams, GateParams, in_window, parse_window

from .helpers import MS, T0_MS, T0_NS, bbo, ctx

A, B = "xyz:A", "xyz:B"


@pytest.mark.parametrize(
    ("bid", "bid_sz", "ask", "ask_sz", "reason"),
    [
        (0.0, 1.0, 100.0, 1.0, "missing_side"),
        (99.0, 1.0, 0.0, 0.0, "missing_side"),
        (-1.0, 1.0, 100.0, 1.0, "bad_price"),
        (float("nan"), 1.0, 100.0, 1.0, "bad_price"),
        (99.0, 1.0, float("inf"), 1.0, "bad_price"),
        (99.0, 0.0, 100.0, 1.0, "bad_size"),
        (99.0, 1.0, 100.0, float("nan"), "bad_size"),
        (100.0, 1.0, 99.0, 1.0, "crossed"),
        (100.0, 1.0, 100.0, 1.0, "crossed"),  # locked: bid < ask is required
    ],
)
def test_bad_bbo_counted_not_raised(bid: float, bid_sz: float, ask: float, ask_sz: float, reason: str) -> None:
    book = MarketBook([A], 2.0)
    book.apply_bbo(bbo(A, 99.0, 100.0), T0_NS)
    assert book.apply_bbo(bbo(A, bid, ask, bid_sz=bid_sz, ask_sz=ask_sz), T0_NS) is None
    assert book.bad_bbo[reason] == 1 and not book.markets[A].bbo_valid


def test_unknown_coin_and_bad_ctx_counted() -> None:
    book = MarketBook([A], 2.0)
    assert book.apply_bbo(bbo("xyz:ZZZ", 1.0, 2.0), T0_NS) is None
    assert book.apply_ctx(ctx("xyz:ZZZ", 1.0), T0_NS) is None
    assert book.apply_ctx(ctx(A, float("nan")), T0_NS) is None
    assert book.apply_ctx(ctx(A, 0.0), T0_NS) is None
    assert book.bad_bbo["unknown_coin"] == 1 and book.bad_ctx == {"unknown_coin": 1, "bad_oracle": 2}
    assert not book.markets[A].has_ctx


@pytest.mark.parametrize(
    ("prices", "up", "down", "vel"),
    [
        ([100.0, 100.1], 1, 0, 10.0),
        ([100.0, 100.1, 100.2], 2, 0, 9.99),
        ([100.0, 100.1, 100.0], 0, 1, 9.99),
        ([100.0, 100.1, 100.101], 1, 0, 0.0),  # small move: counters kept, velocity 0
        ([100.0, 100.01, 100.02, 100.03, 100.04], 0, 0, 0.0),  # slow creep never registers (1 bps steps)
        ([100.0, 100.0, 100.0], 0, 0, 0.0),
    ],
)
def test_oracle_tracker(prices: list[float], up: int, down: int, vel: float) -> None:
    tr = OracleTracker(2.0)
    for px in prices:
        tr.update(px)
    assert (tr.up, tr.down) == (up, down)
    assert tr.velocity_bps == pytest.approx(vel, abs=0.01)
    assert tr.with_count(True) == up and tr.against_count(True) == down


# ---- gates ------------------------------------------------------------------------------------------

def setup(params: GateParams | None = None, *, mark: float = 100.0, oi: float = 0.0) -> tuple[MarketBook, Gates]:
    book = MarketBook([A, B], 2.0)
    gates = Gates(params or GateParams(), [A, B])
    for c in (A, B):
        book.apply_bbo(bbo(c, 99.99, 100.01, exch_ms=1000), T0_NS)
        book.apply_ctx(ctx(c, 100.0, mark=mark, oi=oi), T0_NS)
    return book, gates


def check(book: MarketBook, gates: Gates, coin: str = A, dt_ms: float = 0, now_ms: int = T0_MS) -> GateVerdict:
    return gates.check(book.markets[coin], T0_NS + int(dt_ms * MS), now_ms)


@pytest.mark.parametrize(
    ("params", "dt_ms", "expected"),
    [
        (GateParams(), 2000, GateVerdict.PASS),  # age == max passes
        (GateParams(), 2000.001, GateVerdict.BBO_STALE),
        (GateParams(max_bbo_age_ms=0), 7999, GateVerdict.PASS),  # 0 disables
        (GateParams(max_bbo_age_ms=0), 8000.001, GateVerdict.CTX_STALE),
        (GateParams(max_bbo_age_ms=0), 8000, GateVerdict.PASS),
    ],
)
def test_freshness_gates(params: GateParams, dt_ms: float, expected: GateVerdict) -> None:
    book, gates = setup(params)
    assert check(book, gates, dt_ms=dt_ms) is expected


def test_ctx_freshness_is_receive_time_not_price_change() -> None:
    """An unchanged oracle received recently is fresh, whatever its last price change."""
    book, gates = setup(GateParams(max_bbo_age_ms=0))
    for k in range(1, 20):  # 19 s of identical oracles, received every second
        book.apply_ctx(ctx(A, 100.0, recv_ns=T0_NS + k * 1000 * MS), T0_NS)
    m = book.markets[A]
    assert m.oracle_change_ns == T0_NS
    assert check(book, gates, dt_ms=20_000) is GateVerdict.PASS


def test_ctx_missing_blocks() -> None:
    book = MarketBook([A], 2.0)
    gates = Gates(GateParams(), [A])
    book.apply_bbo(bbo(A, 99.0, 100.0), T0_NS)
    assert check(book, gates) is GateVerdict.CTX_MISSING


def test_time_regression_per_market_until_reconnect() -> None:
    book, gates = setup()
    book.apply_bbo(bbo(A, 99.99, 100.01, exch_ms=999), T0_NS)
    book.apply_bbo(bbo(A, 99.99, 100.01, exch_ms=2000), T0_NS)  # latched: forward again does not clear
    assert check(book, gates) is GateVerdict.TIME_REGRESSION
    assert check(book, gates, B) is GateVerdict.PASS
    assert check(book, Gates(GateParams(time_regression_enabled=False), [A, B])) is GateVerdict.PASS
    book.reset_time_regression()
    assert check(book, gates) is GateVerdict.PASS


@pytest.mark.parametrize(
    ("mark", "expected"),
    [(100.5, GateVerdict.PASS), (100.51, GateVerdict.MARK_MID_DIVERGENCE), (99.49, GateVerdict.MARK_MID_DIVERGENCE),
     (0.0, GateVerdict.MARK_MISSING)],
)
def test_mark_mid_divergence(mark: float, expected: GateVerdict) -> None:
    book, gates = setup(mark=mark)
    assert check(book, gates) is expected
    book2, gates2 = setup(GateParams(max_mark_mid_divergence_bps=0), mark=mark)
    assert check(book2, gates2) is GateVerdict.PASS


def test_spread_shock_per_market_ewma() -> None:
    """Latent 10: each market has its own EWMA; reduce above thr, block above 2·thr."""
    book, gates = setup(GateParams(max_mark_mid_divergence_bps=0))
    assert check(book, gates) is GateVerdict.PASS  # EWMA(A) = 2 bps
    assert gates.states[B].spread_ewma_bps == 0.0  # B untouched
    book.apply_bbo(bbo(A, 99.95, 100.05, exch_ms=1001), T0_NS)  # 10 bps: EWMA 2.4, thr 7.2 → reduce
    assert check(book, gates) is GateVerdict.SPREAD_REDUCE and gates.states[A].size_factor == 0.2
    book.apply_bbo(bbo(A, 99.9, 100.1, exch_ms=1002), T0_NS)  # 20 bps: EWMA 3.28, 2·thr 19.7 → block
    assert check(book, gates) is GateVerdict.SPREAD_SHOCK
    assert check(book, gates, B) is GateVerdict.PASS


def test_invalid_or_blocked_bbo_never_feeds_spread_ewma() -> None:
    """Latent 20: an invalid book, or gates 1–4 blocking, leaves the EWMA untouched."""
    book, gates = setup()
    check(book, gates)
    before = gates.states[A].spread_ewma_bps
    book.apply_bbo(bbo(A, 0.0, 100.01, exch_ms=1001), T0_NS)
    assert check(book, gates) is GateVerdict.BBO_INVALID
    book.apply_bbo(bbo(A, 99.99, 100.01, exch_ms=1002), T0_NS)
    assert check(book, gates, dt_ms=2001) is GateVerdict.BBO_STALE
    assert gates.states[A].spread_ewma_bps == before


def test_oi_param_change_halt_disabled() -> None:
    book, gates = setup(GateParams(max_open_interest_usd=100_000.0), oi=999.0)
    assert check(book, gates) is GateVerdict.PASS
    book.apply_ctx(ctx(A, 100.0, oi=1000.0), T0_NS)  # 1000 × 100 ≥ cap
    assert check(book, gates) is GateVerdict.OI_CAP
    gates.set_halted(B, True)
    assert check(book, gates, B) is GateVerdict.HALTED
    gates.trip_param_change(B)
    assert check(book, gates, B) is GateVerdict.PARAM_CHANGE  # before halt, permanent
    book2, gates2 = setup()
    gates2.set_disabled(A, True)
    assert check(book2, gates2) is GateVerdict.MARKET_DISABLED


@pytest.mark.parametrize(
    ("windows", "hhmm", "blocked"),
    [
        (("09:00-09:15",), "09:00", True),
        (("09:00-09:15",), "09:15", False),  # [start, end)
        (("09:00-09:15",), "08:59", False),
        (("23:50-00:10",), "23:55", True),  # wraps midnight
        (("23:50-00:10",), "00:05", True),
        (("23:50-00:10",), "00:10", False),
        (("09:00-09:15", "14:25-14:40"), "14:30", True),
    ],
)
def test_blackout_windows(windows: tuple[str, ...], hhmm: str, blocked: bool) -> None:
    book, gates = setup(GateParams(blackout_windows_utc=windows))
    h, m = (int(x) for x in hhmm.split(":"))
    day = T0_MS - T0_MS % 86_400_000
    v = check(book, gates, now_ms=day + (h * 60 + m) * 60_000)
    assert (v is GateVerdict.BLACKOUT) is blocked


def test_first_block_wins_and_transitions_only() -> None:
    """The verdict history holds transitions only (the actor logs these)."""
    book, gates = setup(GateParams(blackout_windows_utc=("00:00-23:59",)))
    for _ in range(5):
        assert check(book, gates, dt_ms=3000) is GateVerdict.BBO_STALE  # stale wins over blackout
    for _ in range(5):
        assert check(book, gates) is GateVerdict.BLACKOUT
    assert gates.take_transitions() == [
        (A, GateVerdict.NO_BBO, GateVerdict.BBO_STALE),
        (A, GateVerdict.BBO_STALE, GateVerdict.BLACKOUT),
    ]
    assert gates.take_transitions() == [] and gates.blocked[GateVerdict.BLACKOUT] == 5


@pytest.mark.parametrize("bad", ["9:00-09:15", "09:00-09:00", "25:00-01:00", "09:00", "09:60-10:00"])
def test_bad_windows_refused_at_decode(bad: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"blackout_windows_utc": [bad]}, GateParams)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"market_open_window_utc": bad}, DetectorParams)


def test_window_helpers() -> None:
    assert parse_window("14:30-16:00") == (52_200_000, 57_600_000)
    assert parse_window("21:00-24:00") == (75_600_000, 0)
    assert in_window(80_000_000, parse_window("21:00-24:00"))

"""Per-market state for the detector: latest BBO and ctx with their *receive* times.

Guards against:
* Oracle freshness is the time since the last activeAssetCtx was *received* (monotonic), never
  the time since its price changed (the Rust original measured the latter and blocked markets as "oracle
  stale" in quiet hours). The price-change time is kept
  separately, for the quote-lag filter only.
* An invalid BBO (missing side, zero/negative/NaN price or size, crossed or locked book)
  is counted per reason and marks the market "not evaluable"; it never reaches a computation or an EWMA.
  (Fed to the EWMA, one such book could grow it until the decimal type overflowed.) Bad frames never raise.
* One key per market (a parser and a detector that keyed markets differently saw no signals at all): the
  full coin name exactly as the feed publishes it (``xyz:GOLD``).
* The time-regression gate: the bbo exchange ``time`` is tracked per market; a step backwards latches that
  market's time-regression flag until the next reconnect.
"""

from __future__ import annotations

from collections.abc import Iterable

from hip3.messages import AssetCtx, Bbo
from hip3.strategy.oracle_tracker import OracleTracker

__all__ = ["BAD_BBO_REASONS", "BAD_CTX_REASONS", "MarketBook", "MarketState"]

_INF = float("inf")

BAD_BBO_REASONS = ("unknown_coin", "missing_side", "bad_price", "bad_size", "crossed")
BAD_CTX_REASONS = ("unknown_coin", "bad_oracle")


class MarketState:
    """Everything the gates and the detector read about one market."""

    __slots__ = (
        "ask_px",
        "ask_sz",
        "bbo_exch_ms",
        "bbo_recv_ns",
        "bbo_valid",
        "bid_px",
        "bid_sz",
        "coin",
        "ctx_recv_ns",
        "dirty",
        "funding",
        "has_bbo",
        "has_ctx",
        "last_recv_ns",
        "mark_px",
        "open_interest",
        "oracle_change_ns",
        "oracle_px",
        "time_regressed",
        "tracker",
    )

    def __init__(self, coin: str, min_move_bps: float) -> None:
        self.coin = coin
        self.bid_px = 0.0
        self.bid_sz = 0.0
        self.ask_px = 0.0
        self.ask_sz = 0.0
        self.has_bbo = False
        self.bbo_valid = False
        self.bbo_recv_ns = 0
        self.bbo_exch_ms = 0
        self.time_regressed = False
        self.oracle_px = 0.0
        self.mark_px = 0.0
        self.funding = 0.0
        self.open_interest = 0.0
        self.has_ctx = False
        self.ctx_recv_ns = 0
        self.oracle_change_ns = 0
        self.tracker = OracleTracker(min_move_bps)
        self.dirty = False  # new market data since the last evaluation (EWMAs advance once per update)
        self.last_recv_ns = 0  # receive time of the newest frame (an intent's origin)


def bbo_problem(bid_px: float, bid_sz: float, ask_px: float, ask_sz: float) -> str | None:
    """Why a BBO is unusable, or None if it is valid. NaN fails every comparison, so it lands here."""
    if bid_px == 0.0 or ask_px == 0.0:
        return "missing_side"
    if not (0.0 < bid_px < _INF and 0.0 < ask_px < _INF):
        return "bad_price"
    if not (0.0 < bid_sz < _INF and 0.0 < ask_sz < _INF):
        return "bad_size"
    if not bid_px < ask_px:
        return "crossed"
    return None


class MarketBook:
    """The detector's view of every configured market, keyed by full coin name."""

    __slots__ = ("bad_bbo", "bad_ctx", "markets")

    def __init__(self, coins: Iterable[str], min_move_bps: float) -> None:
        self.markets: dict[str, MarketState] = {c: MarketState(c, min_move_bps) for c in coins}
        self.bad_bbo: dict[str, int] = dict.fromkeys(BAD_BBO_REASONS, 0)
        self.bad_ctx: dict[str, int] = dict.fromkeys(BAD_CTX_REASONS, 0)

    def apply_bbo(self, msg: Bbo, now_ns: int) -> MarketState | None:
        """Store a bbo; returns the market if the new book is valid, else None (counted, not raised)."""
        m = self.markets.get(msg.coin)
        if m is None:
            self.bad_bbo["unknown_coin"] += 1
            return None
        exch_ms = msg.exch_ms
        if exch_ms > 0:
            if exch_ms < m.bbo_exch_ms:
                m.time_regressed = True
            else:
                m.bbo_exch_ms = exch_ms
        m.has_bbo = True
        m.bbo_recv_ns = msg.recv_ns or now_ns
        m.last_recv_ns = m.bbo_recv_ns
        problem = bbo_problem(msg.bid_px, msg.bid_sz, msg.ask_px, msg.ask_sz)
        if problem is not None:
            self.bad_bbo[problem] += 1
            m.bbo_valid = False
            return None
        m.bid_px = msg.bid_px
        m.bid_sz = msg.bid_sz
        m.ask_px = msg.ask_px
        m.ask_sz = msg.ask_sz
        m.bbo_valid = True
        m.dirty = True
        return m

    def apply_ctx(self, msg: AssetCtx, now_ns: int) -> MarketState | None:
        """Store a ctx and advance the oracle tracker; None (counted) for unknown coins or a bad oracle."""
        m = self.markets.get(msg.coin)
        if m is None:
            self.bad_ctx["unknown_coin"] += 1
            return None
        oracle = msg.oracle_px
        if not 0.0 < oracle < _INF:
            self.bad_ctx["bad_oracle"] += 1
            return None
        recv_ns = msg.recv_ns or now_ns
        if oracle != m.oracle_px:  # the first ctx counts as a change
            m.oracle_change_ns = recv_ns
            m.tracker.update(oracle)
        m.oracle_px = oracle
        mark = msg.mark_px
        m.mark_px = mark if 0.0 < mark < _INF else 0.0
        m.funding = msg.funding if msg.funding == msg.funding else 0.0
        oi = msg.open_interest
        m.open_interest = oi if 0.0 <= oi < _INF else 0.0
        m.has_ctx = True
        m.ctx_recv_ns = recv_ns
        m.last_recv_ns = recv_ns
        m.dirty = True
        return m

    def reset_time_regression(self) -> None:
        """Clear every market's time-regression latch (call on a feed reconnect: new ``conn_id``)."""
        for m in self.markets.values():
            m.time_regressed = False
            m.bbo_exch_ms = 0

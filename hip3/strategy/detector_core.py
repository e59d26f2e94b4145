"""The detector actor's decision core: market data in, signals and entry intents out (no sockets).

Per market-data update the actor calls ``on_bbo``/``on_ctx`` (state only), then ``evaluate`` once per
batch of drained messages (one evaluation cycle). Only markets with new data since their last evaluation
are evaluated, so every EWMA advances once per market-data update of *that* market, not once per check
(every message times every market).

Guards against (besides what the modules it composes guard against): a correlation filter that kept a
hard-coded 2 signals per side (it keeps ``correlation_max_simultaneous``); a trading-mode market without
a spec (asset id, szDecimals), which never gets an intent; duplicate market+side within
``persist_dedup_window_ms`` are not persisted again, sizes are floored to the lot and a zero size is
dropped.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from hip3.account.market_terms import MarketTermsParams, TermsView
from hip3.config import MarketConfig
from hip3.messages import AssetCtx, Bbo, EntryIntent, FeedState, MarketTerms, Signal, SignalFollowup
from hip3.strategy.detector import (
    DetectorMarket,
    SideResult,
    Skip,
    base_threshold_bps,
    evaluate_side,
    strength,
)
from hip3.strategy.gates import Gates, GateVerdict
from hip3.strategy.market_state import MarketBook, MarketState
from hip3.strategy.params import (
    MS_PER_DAY,
    DetectorParams,
    GateParams,
    OracleTrackerParams,
    in_window,
    parse_window,
)
from hip3.strategy.pricing import to_valid_price

__all__ = ["Detection", "DetectorCore", "SignalRecord"]


class SignalRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The full signal record (journal/log form; the bus carries the shorter ``messages.Signal``)."""

    signal_id: str
    coin: str
    is_buy: bool
    raw_edge_bps: float
    net_edge_bps: float
    threshold_bps: float
    strength: str
    suggested_sz: float
    oracle_px: float
    best_px: float
    book_sz: float
    recv_ns: int
    time_ms: int
    base_fee_bps: float
    effective_fee_bps: float
    slippage_bps: float
    min_edge_bps: float
    total_cost_bps: float
    oracle_velocity_bps: float
    confidence: float
    baseline_gap_bps: float
    edge_above_baseline_bps: float
    exit_profile: str
    size_factor: float
    fee_source: str = ""


class Detection:
    """One emitted signal: the bus ``Signal``, whether to persist it, and the intent. ``record`` builds the
    full signal record (``SignalRecord``) from them when read: the actor never reads it (the journal keeps
    the bus ``Signal``), so a signal does not pay for a record nobody uses."""

    __slots__ = ("_base_fee_bps", "_params", "_side", "_size_factor", "intent", "persist", "signal")

    def __init__(
        self, side: SideResult, signal: Signal, persist: bool, intent: EntryIntent | None, *,
        params: DetectorParams, base_fee_bps: float, size_factor: float,
    ) -> None:
        self.signal = signal
        self.persist = persist
        self.intent = intent
        self._side = side
        self._params = params
        self._base_fee_bps = base_fee_bps
        self._size_factor = size_factor

    @property
    def record(self) -> SignalRecord:
        r, s, p = self._side, self.signal, self._params
        return SignalRecord(
            signal_id=s.signal_id,
            coin=r.coin,
            is_buy=r.is_buy,
            raw_edge_bps=r.raw_edge_bps,
            net_edge_bps=s.net_edge_bps,
            threshold_bps=r.threshold_bps,
            strength=strength(s.net_edge_bps),
            suggested_sz=s.suggested_sz,
            oracle_px=r.oracle_px,
            best_px=r.best_px,
            book_sz=r.book_sz,
            recv_ns=s.recv_ns,
            time_ms=s.time_ms,
            base_fee_bps=self._base_fee_bps,
            effective_fee_bps=s.taker_fee_bps,
            slippage_bps=p.slippage_bps,
            min_edge_bps=p.min_edge_bps,
            total_cost_bps=2.0 * s.taker_fee_bps + p.slippage_bps + p.min_edge_bps,
            oracle_velocity_bps=r.velocity_bps,
            confidence=r.confidence,
            baseline_gap_bps=r.baseline_gap_bps,
            edge_above_baseline_bps=r.edge_above_baseline_bps,
            exit_profile=r.exit_profile,
            size_factor=self._size_factor,
            fee_source=s.fee_source,
        )


class DetectorCore:
    """Market state + gates + detector for the configured markets.

    ``sz_decimals``/``assets`` map full coin names to the asset's szDecimals and asset id (from
    ``meta(dex)``); they are required per market in trading mode. ``terms``: this account's fees and the
    markets' open-interest caps (``MarketTerms`` from the position tracker, via ``on_terms``); without
    them the threshold uses the stated worst-case fee and no intent is built (fail closed).
    """

    def __init__(
        self,
        oracle: OracleTrackerParams,
        gates: GateParams,
        detector: DetectorParams,
        markets: Sequence[MarketConfig],
        *,
        trading: bool,
        sz_decimals: Mapping[str, int],
        assets: Mapping[str, int],
        id_prefix: str = "d",
        terms: TermsView | None = None,
    ) -> None:
        coins = [mk.coin for mk in markets]
        self.terms = terms if terms is not None else TermsView(MarketTermsParams(), coins)
        self.p = detector
        self.trading = trading
        self.book = MarketBook(coins, oracle.min_move_bps)
        self.gates = Gates(gates, coins)
        self._det = {mk.coin: DetectorMarket(mk.threshold_bps) for mk in markets}
        self._sz_decimals = dict(sz_decimals)
        self._assets = dict(assets)
        self._prefix = id_prefix
        self._n = 0
        self._open_w = parse_window(detector.market_open_window_utc)
        self._active_w = parse_window(detector.us_active_window_utc)
        self._conn_id = -1
        self._followups: list[tuple[int, int, str, str, bool, int, float]] = []
        self.skips: dict[Skip, int] = dict.fromkeys(Skip, 0)
        self.counts: dict[str, int] = {
            "signals": 0,
            "intents": 0,
            "correlation_dropped": 0,
            "persist_dedup": 0,
            "not_ready": 0,
            "no_spec": 0,
            "followups": 0,
            "followup_no_data": 0,
            "entry_blocked_terms": 0,
            "entry_blocked_oi_cap": 0,
        }

    # ---- market data ------------------------------------------------------------------------------

    def on_bbo(self, msg: Bbo, now_ns: int) -> bool:
        """Store a bbo; False if it was unusable (counted in ``book.bad_bbo``)."""
        return self.book.apply_bbo(msg, now_ns) is not None

    def on_ctx(self, msg: AssetCtx, now_ns: int) -> bool:
        """Store a ctx and advance the market's oracle tracker; False if unusable (counted)."""
        self.terms.on_ctx(msg.coin, msg.open_interest, msg.mark_px)
        return self.book.apply_ctx(msg, now_ns) is not None

    def on_terms(self, msg: MarketTerms) -> None:
        """The exchange's fees and open-interest caps (a state message from the position tracker)."""
        self.terms.update(msg)

    def terms_blocked(self, now_ms: int) -> str:
        """Why no entry may go anywhere because of the terms (unknown, too old), "" if none."""
        if not self.trading or self.terms.static:
            return ""
        block = self.terms.terms_block(now_ms)
        return "" if block is None else f"market terms: {block[1]}"

    def on_feed_state(self, msg: FeedState) -> None:
        """A new connection (``conn_id`` changed) clears the per-market time-regression latches."""
        if msg.conn_id != self._conn_id:
            if self._conn_id != -1:
                self.book.reset_time_regression()
            self._conn_id = msg.conn_id

    # ---- evaluation -------------------------------------------------------------------------------

    def session_multipliers(self, now_ms: int) -> tuple[float, float]:
        """(threshold ×, size ×) for the UTC session at ``now_ms`` (1, 1 unless ``session_aware``)."""
        p = self.p
        if p.session_aware:
            tod = now_ms % MS_PER_DAY
            if in_window(tod, self._open_w):
                return p.market_open_threshold_mult, p.market_open_size_mult
            if in_window(tod, self._active_w):
                return p.us_active_threshold_mult, p.us_active_size_mult
        return 1.0, 1.0

    def threshold_bps(self, coin: str, is_buy: bool, now_ms: int) -> float:
        """The threshold T for one market and side (base, adaptive floor, session, short, velocity)."""
        p = self.p
        d = self._det[coin]
        fee_bps, _source = self.terms.taker_fee_bps(coin, now_ms)
        t = base_threshold_bps(p, d.threshold_bps, 2.0 * fee_bps)
        if p.adaptive_threshold and d.spread_ewma_bps > 0.0:
            t = max(t, d.spread_ewma_bps * p.spread_threshold_multiplier)
        t *= self.session_multipliers(now_ms)[0]
        if not is_buy and p.short_throttle:
            t *= p.short_threshold_mult
        if p.velocity_weight:
            v = self.book.markets[coin].tracker.velocity_bps
            t /= min(2.0, max(0.5, v / p.velocity_reference_bps))
        return t

    def evaluate(
        self, now_ns: int, now_ms: int, *, ready: bool = True, coins: Iterable[str] | None = None
    ) -> list[Detection]:
        """One evaluation cycle over the markets with new data (or ``coins``); returns the signals.

        ``ready``: READY-TRADING; in trading mode no intent is built while not ready.
        """
        markets = self.book.markets
        todo = (
            [m for m in markets.values() if m.dirty]
            if coins is None
            else [markets[c] for c in coins if c in markets]
        )
        found: list[SideResult] = []
        for m in todo:
            r = self._evaluate_market(m, now_ns, now_ms)
            if r is not None:
                found.append(r)
        if not found:
            return []
        if self.p.correlation_filter:
            found = self._correlation_filter(found)
        return [self._emit(r, now_ns, now_ms, ready) for r in found]

    def _evaluate_market(self, m: MarketState, now_ns: int, now_ms: int) -> SideResult | None:
        m.dirty = False
        v = self.gates.check(m, now_ns, now_ms)
        if v.blocks:
            return None
        p = self.p
        d = self._det[m.coin]
        o = m.oracle_px
        size_mult = self.session_multipliers(now_ms)[1]
        if v is GateVerdict.SPREAD_REDUCE:
            size_mult *= self.gates.states[m.coin].size_factor
        buy_edge = (o - m.ask_px) / o * 1e4
        sell_edge = (m.bid_px - o) / o * 1e4
        szd = self._sz_decimals.get(m.coin)
        result: SideResult | None = None
        if buy_edge > 0.0:
            out = SideResult(m.coin, True)
            t = self.threshold_bps(m.coin, True, now_ms)
            skip = evaluate_side(m, d, True, buy_edge, t, size_mult, szd, now_ns, p, out)
            result = out if skip is Skip.NONE else None
        elif sell_edge > 0.0:
            out = SideResult(m.coin, False)
            t = self.threshold_bps(m.coin, False, now_ms)
            skip = evaluate_side(m, d, False, sell_edge, t, size_mult, szd, now_ns, p, out)
            result = out if skip is Skip.NONE else None
        else:
            skip = Skip.NO_EDGE
        self.skips[skip] += 1
        d.update_after_decision(m, p)
        return result

    def _correlation_filter(self, found: list[SideResult]) -> list[SideResult]:
        """Correlation filter: per side, keep at most ``correlation_max_simultaneous`` signals, strongest raw
        edge first."""
        n = self.p.correlation_max_simultaneous
        kept: list[SideResult] = []
        for side in (True, False):
            same = [r for r in found if r.is_buy is side]
            if len(same) > n:
                same.sort(key=lambda r: r.raw_edge_bps, reverse=True)
                self.counts["correlation_dropped"] += len(same) - n
                same = same[:n]
            kept.extend(same)
        return kept

    def _emit(self, r: SideResult, now_ns: int, now_ms: int, ready: bool) -> Detection:
        p = self.p
        d = self._det[r.coin]
        m = self.book.markets[r.coin]
        self._n += 1
        signal_id = f"{self._prefix}-s{self._n}"
        if r.is_buy:
            d.last_sig_oracle_buy = r.oracle_px
            persist = now_ns - d.last_persist_ns_buy >= p.persist_dedup_window_ms * 1_000_000
            if persist:
                d.last_persist_ns_buy = now_ns
        else:
            d.last_sig_oracle_sell = r.oracle_px
            persist = now_ns - d.last_persist_ns_sell >= p.persist_dedup_window_ms * 1_000_000
            if persist:
                d.last_persist_ns_sell = now_ns
        self.counts["signals"] += 1
        size_factor = self.gates.states[r.coin].size_factor
        fee_bps, fee_source = self.terms.taker_fee_bps(r.coin, now_ms)
        signal = Signal(
            signal_id=signal_id,
            coin=r.coin,
            is_buy=r.is_buy,
            raw_edge_bps=r.raw_edge_bps,
            net_edge_bps=r.raw_edge_bps - r.threshold_bps,
            threshold_bps=r.threshold_bps,
            oracle_px=r.oracle_px,
            best_px=r.best_px,
            book_sz=r.book_sz,
            suggested_sz=float(r.size),
            confidence=r.confidence,
            recv_ns=m.last_recv_ns,
            time_ms=now_ms,
            taker_fee_bps=fee_bps,
            fee_source=fee_source,
        )
        if persist:
            for off in p.observe_followups_ms:
                heapq.heappush(
                    self._followups,
                    (now_ns + off * 1_000_000, self._n, signal_id, r.coin, r.is_buy, off, r.raw_edge_bps),
                )
        else:
            self.counts["persist_dedup"] += 1
        intent = self._intent(r, signal_id, m, now_ns, now_ms, ready, fee_bps, fee_source) if self.trading else None
        return Detection(r, signal, persist, intent, params=p, base_fee_bps=self.terms.user_cross_bps(),
                         size_factor=size_factor)

    def _intent(
        self, r: SideResult, signal_id: str, m: MarketState, now_ns: int, now_ms: int, ready: bool,
        fee_bps: float, fee_source: str,
    ) -> EntryIntent | None:
        if not ready:
            self.counts["not_ready"] += 1
            return None
        block = self.terms.entry_block(r.coin, now_ms)
        if block is not None:  # the executor would refuse it: do not send it (fail closed, no spam)
            self.counts["entry_blocked_oi_cap" if block[0] == "OpenInterestCap" else "entry_blocked_terms"] += 1
            return None
        szd = self._sz_decimals.get(r.coin)
        asset = self._assets.get(r.coin)
        px = None if szd is None else to_valid_price(r.best_px, szd, r.is_buy)
        if szd is None or asset is None or px is None:
            self.counts["no_spec"] += 1
            return None
        self.counts["intents"] += 1
        return EntryIntent(
            intent_id=f"{signal_id}-e",
            coin=r.coin,
            asset=asset,
            is_buy=r.is_buy,
            px=px,
            sz=r.size,
            reduce_only=False,
            valid_until_ns=now_ns + self.p.entry_ttl_ms * 1_000_000,
            origin_recv_ns=m.last_recv_ns,
            created_ns=now_ns,
            edge_bps=r.raw_edge_bps,
            signal_id=signal_id,
            taker_fee_bps=fee_bps,
            fee_source=fee_source,
        )

    # ---- followups ---------------------------------------------------------------------------------

    def due_followups(self, now_ns: int, now_ms: int) -> list[SignalFollowup]:
        """Snapshots due at +1/+3/+5 s after persisted signals: current oracle, best px and edge."""
        out: list[SignalFollowup] = []
        q = self._followups
        while q and q[0][0] <= now_ns:
            _due, _n, signal_id, coin, is_buy, off, edge0 = heapq.heappop(q)
            m = self.book.markets[coin]
            if not (m.bbo_valid and m.oracle_px > 0.0):
                self.counts["followup_no_data"] += 1
                continue
            o = m.oracle_px
            best = m.ask_px if is_buy else m.bid_px
            edge = (o - best) / o * 1e4 if is_buy else (best - o) / o * 1e4
            self.counts["followups"] += 1
            out.append(
                SignalFollowup(
                    signal_id=signal_id,
                    coin=coin,
                    offset_ms=off,
                    oracle_px=o,
                    best_px=best,
                    edge_bps=edge,
                    edge_change_bps=edge - edge0,
                    time_ms=now_ms,
                    exit_px=m.bid_px if is_buy else m.ask_px,
                )
            )
        return out

    # ---- observability ----------------------------------------------------------------------------

    def take_gate_transitions(self) -> list[tuple[str, GateVerdict, GateVerdict]]:
        """Gate verdict changes since the last call: log these (never a line per message), count the rest."""
        return self.gates.take_transitions()

    def stats(self) -> dict[str, int]:
        """Flat counters for heartbeats/metrics."""
        out = dict(self.counts)
        out.update({f"bad_bbo_{k}": v for k, v in self.book.bad_bbo.items()})
        out.update({f"bad_ctx_{k}": v for k, v in self.book.bad_ctx.items()})
        out.update({f"gate_{k.name.lower()}": v for k, v in self.gates.blocked.items()})
        out.update({f"skip_{k.name.lower()}": v for k, v in self.skips.items()})
        return out


"""The detector actor process. Market state, risk gates and the dislocation detector; emits entry intents.

* Subscribes ``md`` (Bbo, AssetCtx, FeedState) and ``positions`` (PositionSnapshot); PUSHes
  ``EntryIntent`` on ``intents``; publishes ``Signal``/``SignalFollowup`` on ``signals``.
* The decisions are ``hip3.strategy.detector_core.DetectorCore`` (gates, detector, sizing) and
  ``hip3.strategy.entry_readiness.EntryReadiness`` (may entries be sent now?).
* One evaluation per drained batch of messages, not per message.
* Observe mode: signals and followups are published, nothing is sent.
* Logs every emitted intent at INFO (so a session that sends nothing shows why), gate transitions only
  (never a line per message), readiness transitions.

Run alone for debugging: `python -m actors.detector --config configs/default.toml`.
"""

from __future__ import annotations

import os
import sys

from hip3 import clock
from hip3.account.entry_conditions import EntryConditions
from hip3.account.market_terms import TermsError, TermsView, build_terms
from hip3.config import MarketConfig, account_address, exchange_urls
from hip3.hyperliquid.rest import RestClient, RestError
from hip3.messages import (
    AssetCtx,
    Bbo,
    EntryIntent,
    ExchangeClock,
    FeedState,
    MarketTerms,
    MarketView,
    Message,
    PositionSnapshot,
)
from hip3.runtime.actor import Actor
from hip3.runtime.bus import Pusher
from hip3.runtime.markets import load_registry
from hip3.runtime.runner import standalone_main
from hip3.runtime.terms_poller import fetch_raw_terms
from hip3.strategy.detector_core import DetectorCore
from hip3.strategy.entry_readiness import ENTRIES_ALLOWED, ENTRIES_BLOCKED_PREFIX, EntryReadiness, reason_key
from hip3.strategy.market_view import market_lines

FOLLOWUP_MS = 100  # due followups are published from this timer
STATS_MS = 1000
# A blocked reason whose numbers only moved (the measured clock offset, a balance) refreshes the status
# detail at most this often, without a log line.
DETAIL_REFRESH_S = 30.0


class Detector(Actor):
    name = "detector"

    def setup(self) -> None:
        cfg = self.cfg
        self.trading = cfg.mode != "observe"
        registry = load_registry(cfg, self.log)
        markets = cfg.markets or tuple(MarketConfig(coin=s.coin) for s in registry.specs if not s.is_delisted)
        specs = {m.coin: registry.by_coin(m.coin) for m in markets}
        terms = TermsView(cfg.market_terms, [m.coin for m in markets], static=not self.trading)
        if not self.trading:
            self._load_terms_once(terms, registry.dex, [m.coin for m in markets])
        self.core = DetectorCore(
            cfg.oracle, cfg.gates, cfg.detector, markets, trading=self.trading,
            sz_decimals={c: s.sz_decimals for c, s in specs.items()},
            assets={c: s.asset for c, s in specs.items()},
            id_prefix=f"d{os.getpid()}-{clock.time_ns() // 1_000_000}",
            terms=terms,
        )
        self.entry = EntryReadiness(trading=self.trading,
                                    conditions=EntryConditions(cfg.collateral, cfg.clock))
        self.signals = self.publisher("signals")
        self.intents: Pusher | None = self.bus.pusher("intents") if self.trading else None
        self.md = self.bus.subscriber(["md", "positions"])
        self.on_batch(self.md, self._on_batch)
        self.every(FOLLOWUP_MS, self._on_followups)
        self.every(STATS_MS, self._on_stats)
        self._blocked = self._blocked_reason()
        self._detail_at = clock.monotonic()
        self.set_ready(True, self._ready_detail())

    def _load_terms_once(self, terms: TermsView, dex: str, coins: list[str]) -> None:
        """Observe mode (no position tracker to poll them): the fees read once at start, for the signal
        records; the account's own rates when an address is configured, else the tier-0 rate (stated as
        the fee's source). Nothing trades in observe mode, so a failure only means the worst-case fee."""
        base, _ = exchange_urls(self.cfg)
        rest = RestClient(base, timeout_s=self.cfg.exchange.request_timeout_ms / 1000)
        try:
            read = build_terms(fetch_raw_terms(rest, dex, account_address(self.cfg) or None), dex, coins,
                               clock.time_ns() // 1_000_000)
        except (RestError, TermsError) as e:
            self.log.warning("market_terms_unavailable", error=str(e)[:300], fee="worst case")
            return
        terms.update(read)
        self.log.info("market_terms", taker_fee_bps={m.coin: round(m.taker_fee_bps, 4) for m in read.markets},
                      source=sorted({m.fee_source for m in read.markets}))

    def _blocked_reason(self) -> str:
        return (self.entry.blocked_reason(self.hardstop.latched)
                or self.core.terms_blocked(clock.time_ns() // 1_000_000))

    # ---- hot path: one evaluation per drained batch -------------------------------------------------

    def _on_batch(self) -> None:
        now_ns = clock.monotonic_ns()
        core = self.core
        for msg in self.md.drain():
            kind = type(msg)
            if kind is Bbo:
                core.on_bbo(msg, now_ns)  # type: ignore[arg-type]
            elif kind is AssetCtx:
                core.on_ctx(msg, now_ns)  # type: ignore[arg-type]
            else:
                self._on_state(msg)
        blocked = self._blocked_reason()
        if blocked != self._blocked:
            self._on_readiness_change(blocked)
        now_ns = clock.monotonic_ns()
        decisions = core.evaluate(now_ns, clock.time_ns() // 1_000_000, ready=not blocked)
        if decisions:
            # Intents leave first; the signal records and the INFO lines after them (off the order path).
            sent = [(d.intent, self._push(d.intent)) for d in decisions if d.intent is not None]
            for d in decisions:
                if d.persist:
                    self.signals.publish(d.signal)
            for intent, ok in sent:
                self._log_intent(intent, ok)
        for coin, old, new in core.take_gate_transitions():
            # INFO only when entries become blocked or allowed: PASS <-> SPREAD_REDUCE can flap
            # many times a second on a thin book.
            if old.blocks != new.blocks:
                self.log.info("gate", coin=coin, old=old.name.lower(), new=new.name.lower())
            elif self.log.debug_enabled:
                self.log.debug("gate", coin=coin, old=old.name.lower(), new=new.name.lower())

    def _on_state(self, msg: Message) -> None:
        if isinstance(msg, FeedState):
            if self.entry.on_feed_state(msg):
                self.log.info("feed_connection", conn_id=msg.conn_id, state=msg.state)
            self.core.on_feed_state(msg)
        elif isinstance(msg, PositionSnapshot):
            self.entry.on_positions(msg)
        elif isinstance(msg, MarketTerms):
            self.core.on_terms(msg)
        elif isinstance(msg, ExchangeClock):
            self.entry.on_clock(msg)

    def _push(self, intent: EntryIntent) -> bool:
        assert self.intents is not None  # intents exist only in trading modes
        return self.intents.send(intent)

    def _log_intent(self, intent: EntryIntent, sent: bool) -> None:
        self.log.info("entry_intent", sent=sent, intent_id=intent.intent_id, coin=intent.coin,
                      is_buy=intent.is_buy, px=intent.px, sz=intent.sz, edge_bps=round(intent.edge_bps, 2),
                      tick_to_intent_us=(intent.created_ns - intent.origin_recv_ns) // 1000)
        if not sent:
            self.count("intent_send_failed")
            self.log.warning("intent_not_sent", intent_id=intent.intent_id, why="no executor connected")

    def _on_readiness_change(self, blocked: str) -> None:
        same_kind = bool(blocked) and reason_key(blocked) == reason_key(self._blocked)
        self._blocked = blocked
        now = clock.monotonic()
        if same_kind and now - self._detail_at < DETAIL_REFRESH_S:
            return  # only a number moved: no log line, the status detail follows within DETAIL_REFRESH_S
        self._detail_at = now
        if same_kind:
            pass  # the refreshed detail below is enough
        elif blocked:
            self.log.info("entries_blocked", reason=blocked)
        else:
            self.log.info("entries_allowed")
        self.set_ready(True, self._ready_detail())

    def _ready_detail(self) -> str:
        if not self.trading:
            return f"observing {len(self.core.book.markets)} markets"
        return f"{ENTRIES_BLOCKED_PREFIX}{self._blocked}" if self._blocked else ENTRIES_ALLOWED

    # ---- timers -------------------------------------------------------------------------------------

    def _on_followups(self) -> None:
        for f in self.core.due_followups(clock.monotonic_ns(), clock.time_ns() // 1_000_000):
            self.signals.publish(f)
        blocked = self._blocked_reason()
        if blocked != self._blocked:  # e.g. the hard stop latched, or the terms grew too old, with no market data
            self._on_readiness_change(blocked)

    def _on_stats(self) -> None:
        self.stats.update(self.core.stats())
        self.stats.update(self.entry.stats())
        self.stats.update(self.core.terms.summary(clock.time_ns() // 1_000_000))
        if self.intents is not None:
            self.stats["intents_dropped"] = self.intents.dropped
        # The operator's views (status --watch, dashboard): once a second, off the per-batch path.
        self.inbox.send(MarketView(actor=self.name, markets=market_lines(
            self.core.book.markets, self.core.gates.states, clock.monotonic_ns())))


if __name__ == "__main__":
    sys.exit(standalone_main("detector"))

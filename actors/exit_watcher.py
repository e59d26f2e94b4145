"""The exit_watcher actor process. Mirrors positions and decides exits on every market update; emits
flatten intents.

* Subscribes ``md`` (Bbo, AssetCtx), ``positions`` (PositionSnapshot, PositionClosed) and ``exec``
  (order lifecycle: releases flatten claims); PUSHes ``FlattenIntent`` on ``intents``.
* The decisions (exits, one flatten claim per market) are
  ``hip3.strategy.exit_watcher_core.ExitWatcherCore``. Hot path: per market message only the core call.
* A polling tick every ``ExitWatcherCore.poll_interval_ms`` runs the time stop, the fast-exit backup and
  claim expiry. Exits keep working while the hard stop is latched (they are reduce-only).
* Every flatten intent is logged at INFO (at the end of the loop turn, after the burst); a failed send
  releases the claim (the flatten never left, so the next evaluation retries) and is counted, its
  warning rate-limited. Core alerts go to ``alert``.

Run alone for debugging: `python -m actors.exit_watcher --config configs/default.toml`.
"""

from __future__ import annotations

import os
import sys

from hip3 import clock
from hip3.messages import (
    AssetCtx,
    Bbo,
    ExchangeClock,
    FlattenIntent,
    Message,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    PositionClosed,
    PositionSnapshot,
)
from hip3.runtime.actor import Actor
from hip3.runtime.markets import load_registry
from hip3.runtime.runner import standalone_main
from hip3.strategy.exit_watcher_core import ExitWatcherCore

STATS_MS = 1000
SEND_FAIL_LOG_S = 1.0


class ExitWatcher(Actor):
    name = "exit_watcher"

    def setup(self) -> None:
        cfg = self.cfg
        registry = load_registry(cfg, self.log)
        coins = [m.coin for m in cfg.markets]
        self.core = ExitWatcherCore(
            cfg.exits, cfg.oracle, {s.coin: s.sz_decimals for s in registry.specs},
            id_prefix=f"x{os.getpid()}-{clock.time_ns() // 1_000_000}",
        )
        self.core.add_markets(coins)
        self.intents = self.bus.pusher("intents")
        self.subscriber(["md", "positions", "exec"], self.on_message)
        self.every(self.core.poll_interval_ms, self._on_tick)
        self.every(STATS_MS, self._on_stats)
        self._send_fail_logged = 0.0
        self.set_ready(True, f"watching {len(coins)} markets")

    # ---- hot path -----------------------------------------------------------------------------------

    def on_message(self, msg: Message) -> None:
        kind = type(msg)
        if kind is Bbo:
            intent = self.core.on_bbo(msg, clock.monotonic_ns())  # type: ignore[arg-type]
        elif kind is AssetCtx:
            intent = self.core.on_ctx(msg, clock.monotonic_ns())  # type: ignore[arg-type]
        else:
            self._on_event(msg)
            return
        if intent is not None:
            self._send(intent)

    def _on_event(self, msg: Message) -> None:
        core = self.core
        if isinstance(msg, PositionSnapshot):
            core.on_position_snapshot(msg, clock.monotonic_ns(), clock.time_ns() // 1_000_000)
        elif isinstance(msg, PositionClosed):
            core.on_position_closed(msg)
        elif isinstance(msg, OrderSubmitted):
            core.on_order_submitted(msg)
        elif isinstance(msg, OrderRejected):
            core.on_order_rejected(msg)
        elif isinstance(msg, OrderCancelled):
            core.on_order_cancelled(msg)
        elif isinstance(msg, OrderFilled):
            core.on_order_filled(msg)
        elif isinstance(msg, ExchangeClock):
            core.on_exchange_clock(msg)

    def _send(self, intent: FlattenIntent) -> None:
        if self.intents.send(intent):
            # Logged at the end of the loop turn: another exit in the same burst goes out first.
            self.defer(lambda: self._log_intent(intent))
            return
        # Never left the process: a terminal state of the flatten (send failure) -> release the claim.
        self.count("intent_send_failed")
        self.core.release_intent(intent.intent_id)
        now = clock.monotonic()
        if now - self._send_fail_logged >= SEND_FAIL_LOG_S:
            self._send_fail_logged = now
            self.log.warning("flatten_not_sent", intent_id=intent.intent_id, coin=intent.coin,
                             reason=intent.reason, why="no executor connected",
                             failures=self.stats.get("intent_send_failed", 0))

    def _log_intent(self, intent: FlattenIntent) -> None:
        self.log.info("flatten_intent", intent_id=intent.intent_id, coin=intent.coin, reason=intent.reason,
                      is_buy=intent.is_buy, px=intent.px, sz=intent.sz,
                      tick_to_intent_us=(intent.created_ns - intent.origin_recv_ns) // 1000
                      if intent.origin_recv_ns else None)

    # ---- timers -------------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        for intent in self.core.on_tick(clock.monotonic_ns()):
            self._send(intent)
        for text in self.core.take_alerts():
            self.alert("warning", text)

    def _on_stats(self) -> None:
        self.stats.update(self.core.stats())
        self.stats["intents_dropped"] = self.intents.dropped


if __name__ == "__main__":
    sys.exit(standalone_main("exit_watcher"))

"""The feed actor process. Owns the market-data connection and publishes typed market data and the
account's user events.

* One ``WsClient`` to ``exchange_urls(cfg)[1]``; its socket is in the actor's poller (re-registered
  after every reconnect: the fd changes) and ``tick()`` runs every ``TICK_MS``.
* ``md``: ``Bbo``/``AssetCtx`` (latest wins) and ``FeedState`` (state key ``feed``); ``user``:
  ``OrderUpdate``/``UserFill`` (snapshot fills flagged) and the same ``FeedState``. Each ``recv``'s
  frames are published as soon as they are decoded, those of markets with a position or open order
  (from the tracker's ``PositionSnapshot`` on ``positions``) first.
* READY, freshness and dispatch are decided in ``hip3.hyperliquid.feed.FeedCore``; ``FeedState`` is published on
  every change and every ``STATE_MS``. On a disconnect READY drops at once.
* ``ExchangeClock`` (state key ``clock`` on ``md``): the exchange's clock estimated from the frames'
  timestamps (``hip3.account.exchange_clock``), published at the first sample and every ``STATE_MS``; the
  executor signs with it, the detector refuses entries beyond ``[clock] max_skew_ms``.
* Error and malformed frames are counted (heartbeat stats) and logged at most every ``LOG_EVERY_S``.

Run alone for debugging: `python -m actors.feed --config configs/default.toml`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hip3 import clock
from hip3.config import account_address, exchange_urls
from hip3.hyperliquid.feed import FeedCore
from hip3.hyperliquid.ws import ConnState, WsClient
from hip3.messages import Message, PositionSnapshot
from hip3.replay.rotation import Recorder, RotationParams, open_recorder
from hip3.runtime.actor import Actor
from hip3.runtime.markets import load_registry
from hip3.runtime.runner import standalone_main

TICK_MS = 100  # WsClient timers (ping, pong timeout, stall, reconnect) and freshness checks
STATE_MS = 1000  # periodic FeedState and stats
LOG_EVERY_S = 10.0  # bad/error frame summaries


class Feed(Actor):
    name = "feed"

    def setup(self) -> None:
        cfg = self.cfg
        fp = cfg.feed
        self.md = self.publisher("md")
        self.user = self.publisher("user")
        # FeedState.conn_id must differ across feed processes too: a restarted feed's first connection
        # is a new connection for every consumer (they resync), even if the old one also was its first.
        self._conn_base = (clock.time_ns() // 1_000_000) * 1000
        trading = cfg.mode != "observe"
        user = account_address(cfg) if trading else ""
        self.core = FeedCore(self._markets(), user, trading=trading, stall_timeout_ms=fp.stall_timeout_ms,
                             publish_md=self.md.publish, publish_user=self.user.publish)
        if trading and not user:
            self.log.error("no_account_address", detail="user streams cannot be subscribed; never READY")
            self.alert("critical", "feed: no account address for orderUpdates/userFills")
        self.ws = WsClient(
            exchange_urls(cfg)[1],
            ping_after_idle_s=fp.ping_after_idle_ms / 1000,
            pong_timeout_s=fp.pong_timeout_ms / 1000,
            reconnect_base_s=fp.reconnect_base_ms / 1000,
            reconnect_max_s=fp.reconnect_max_ms / 1000,
            on_state=self._on_ws_state,
        )
        self.core.clock.set_reference(clock.monotonic_ns(), clock.time_ns())
        self._clock_published = False
        self._fd = -1
        self._state: ConnState = "disconnected"
        self._since_ns = clock.monotonic_ns()
        self._md_ready = self._user_ready = False
        self._bad_logged = 0
        self._errors_logged = 0
        self._last_summary = 0.0
        # Markets with a position or an open order go first in a burst (``FeedCore.set_hot``).
        self.subscriber(["positions"], self._on_positions, only=(PositionSnapshot,))
        for sub in self.core.subscriptions():
            self.ws.subscribe(sub)
        self._recorder: Recorder | None = None
        if fp.record_path:
            self._start_recording(fp.record_path)
        self.log.info("subscribing", markets=len(self.core.markets), user_streams=bool(self.core.user_subs),
                      url=self.ws.url)
        self.every(TICK_MS, self._on_tick)
        self.every(STATE_MS, self._on_periodic)
        self.ws.connect()
        self._after_io()

    def teardown(self) -> None:
        if hasattr(self, "ws"):
            self.ws.close()
            self._sync_fd()
        if getattr(self, "_recorder", None) is not None:
            self._take_recorded()
            self._recorder.close()  # type: ignore[union-attr]

    def _start_recording(self, record_path: str) -> None:
        """Record raw market frames (``hip3.replay.recording``), with l2Book for the replay's depth."""
        path = Path(record_path)
        if not path.is_absolute():
            path = self.run_dir / path
        registry = load_registry(self.cfg, self.log)
        header = {
            "started_wall_ns": clock.time_ns(), "started_mono_ns": clock.monotonic_ns(),
            "markets": self.core.markets, "url": self.ws.url, "dex": registry.dex,
            "dex_index": registry.perp_dex_index,
            "universe": [[s.coin, s.sz_decimals, s.max_leverage, s.is_delisted]
                         for s in sorted(registry.specs, key=lambda s: s.asset)],
        }
        fp = self.cfg.feed
        params = RotationParams(rotate_bytes=fp.record_rotate_mb * 1024 * 1024,
                                rotate_ns=fp.record_rotate_minutes * 60_000_000_000,
                                zstd_level=fp.record_zstd_level if fp.record_compression == "zstd" else None)
        self._recorder = open_recorder(path, header, clock.monotonic_ns(), params, lambda: clock.monotonic_ns())
        self.ws.record = []
        for coin in self.core.markets:
            self.ws.subscribe({"type": "l2Book", "coin": coin})
        self.log.info("recording", path=str(path), markets=len(self.core.markets))

    def _take_recorded(self) -> None:
        rec = self.ws.record
        if rec:
            self._recorder.write_frames(rec)  # type: ignore[union-attr]
            rec.clear()

    def _markets(self) -> list[str]:
        """The allowlist; in observe mode with none, every listed market of the discovered dex."""
        if self.cfg.markets:
            return [m.coin for m in self.cfg.markets]
        registry = load_registry(self.cfg, self.log)
        return [s.coin for s in registry.specs if not s.is_delisted]

    # ---- hot path -----------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        self.ws.poll_read_market(self.core.on_frames)  # published per recv, as decoded
        if not self._clock_published and self.core.clock.samples:
            self._publish_clock()  # the first estimate at once: entries wait for it
        if self._recorder is not None:
            self._take_recorded()  # after the frames were published
        if not self.ready or self.ws.fileno() != self._fd:
            self._after_io()

    def _on_positions(self, msg: Message) -> None:
        if isinstance(msg, PositionSnapshot):
            self.core.set_hot([p.coin for p in msg.positions] + [o.coin for o in msg.open_orders])

    # ---- connection state ---------------------------------------------------------------------------

    def _on_ws_state(self, state: ConnState) -> None:
        """Called by the WsClient inside connect()/poll/tick: READY drops at once on a disconnect."""
        self._state = state
        self._since_ns = clock.monotonic_ns()
        if state == "connected":
            self.core.on_connected(self._conn_base + self.ws.conn_id, self._since_ns)
            self.log.info("connected", conn_id=self.ws.conn_id)
        else:
            self.core.on_disconnected()
            if state == "disconnected":
                # A stop closes the connection on purpose: INFO, not a warning on the operator's console.
                (self.log.info if self.ws.closed else self.log.warning)(
                    "disconnected", conn_id=self.ws.conn_id, why=self.ws.last_error)
        self._update_ready(force_publish=True)

    def _after_io(self) -> None:
        self._sync_fd()
        self._update_ready()

    def _sync_fd(self) -> None:
        fd = self.ws.fileno()
        if fd != self._fd:
            if self._fd >= 0:
                self.remove_reader(self._fd)
            if fd >= 0:
                self.add_reader(fd, self._on_readable)
            self._fd = fd

    def _update_ready(self, force_publish: bool = False) -> None:
        md, user = self.core.readiness(self.ws.is_acked)
        changed = (md, user) != (self._md_ready, self._user_ready)
        self._md_ready, self._user_ready = md, user
        if changed or force_publish:
            self._publish_state()
        if self.core.ready(md, user):
            self.set_ready(True, f"streaming {len(self.core.markets)} markets (conn {self.core.conn_id})")
        else:
            self.set_ready(False, self.core.not_ready_reason(self.ws.is_acked))

    def _publish_clock(self) -> None:
        now_mono, now_wall = clock.monotonic_ns(), clock.time_ns()
        msg = self.core.clock.message(now_mono, now_wall)
        if msg is None:
            return
        self._clock_published = True
        self.md.publish(msg, state_key="clock")
        self.stats["clock_skew_ms"] = msg.skew_ms

    def _publish_state(self) -> None:
        msg = self.core.state(self._state, self._md_ready, self._user_ready, self._since_ns)
        self.md.publish(msg, state_key="feed")
        self.user.publish(msg, state_key="feed")

    # ---- timers -------------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        self.ws.tick()
        self._after_io()
        went, back = self.core.check_stale(clock.monotonic_ns())
        for coin, channel in went:
            self.log.warning("market_stale", coin=coin, channel=channel,
                             stall_timeout_ms=self.cfg.feed.stall_timeout_ms)
        for coin, channel in back:
            self.log.info("market_fresh", coin=coin, channel=channel)
        if went and len(self.core.stale) == len(went):
            self.alert("warning", f"feed: stale market data: {', '.join(f'{c}/{ch}' for c, ch in went)}")

    def _on_periodic(self) -> None:
        self._publish_state()
        self.core.clock.set_reference(clock.monotonic_ns(), clock.time_ns())
        self._publish_clock()
        if self._recorder is not None:
            self._recorder.flush()
            self.stats["recorded_frames"] = self._recorder.frames
        stats = self.core.stats()
        bad = sum(self.ws.decoder.counters.values()) - self.ws.decoder.counters.get("greeting", 0)
        stats["bad_frames"] = bad
        stats["conn_id"] = self.core.conn_id
        stats["ws_reconnects"] = self.ws.reconnects
        stats["md_dropped"] = self.md.dropped
        stats["user_dropped"] = self.user.dropped
        for k, v in self.ws.errors.items():
            stats[f"ws_{k}"] = v
        self.stats.update(stats)
        now = clock.monotonic()
        errors = stats["error_frames"]
        if (bad > self._bad_logged or errors > self._errors_logged) and now - self._last_summary >= LOG_EVERY_S:
            self._last_summary = now
            self.log.warning("bad_frames", bad=bad, new=bad - self._bad_logged, error_frames=errors,
                             last_error=self.core.last_error, kinds=dict(self.ws.decoder.counters))
            self._bad_logged = bad
            self._errors_logged = errors


if __name__ == "__main__":
    sys.exit(standalone_main("feed"))

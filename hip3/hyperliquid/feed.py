"""The feed's decisions, without sockets: what to subscribe, READY, per-market freshness, frame dispatch.

``actors/feed.py`` owns one ``WsClient`` and the ``md``/``user`` publishers; ``FeedCore`` gets the
publish functions and the frames ``WsClient.poll_read_market()`` returns.

* Subscriptions: ``bbo`` and ``activeAssetCtx`` for every market; in trading modes
  ``orderUpdates`` and ``userFills`` for the account (the master address, not the API
  wallet that signs).
* READY (docs/runtime.md "READY means doing its job"):
  ``market_data_ready`` = connected, every market subscription acked, at least one bbo and one ctx since
  THIS connect; ``user_ready`` = both user subscriptions acked (on the ack, never on data: an account with
  no orders sends none). The
  feed is READY when market data is ready and, in trading modes, the user streams too. A disconnect
  clears all of it at once; consumers see ``FeedState.conn_id`` change and resync.
* Hot path: ``on_frames`` publishes each ``Bbo``/``AssetCtx`` as it is (latest wins) and stamps the
  market's receive time; no logging, no allocation besides the message itself (and, for a burst
  holding frames of markets with a position, a reordered list: those go first). Each is published with a
  per-market state key (``bbo:<coin>``, ``ctx:<coin>``), so a late joiner (a restarted detector or exit
  watcher) gets every market's latest book and oracle at once, with their original receive times (the
  freshness gates judge them), instead of waiting for the next change (a quiet oracle may not change for
  seconds, and without a ctx a market is not evaluated).
* Freshness is by receive time, not by value change: a market channel with nothing for ``stall_timeout_ms`` (counted
  from the connect for one that never sent anything) is stale. Transitions are reported, not every message.
* The exchange's clock (``hip3.account.exchange_clock``): the newest bbo of each receive burst, and every live
  order update and fill, give a sample (the exchange's timestamp against the frame's receive time);
  ``clock`` holds the estimate, the actor publishes it as ``ExchangeClock``.
* A frame for a coin that was not subscribed is counted and dropped; a user frame for another user too.
  Malformed frames never get here (the ``FrameDecoder`` counts them); crossed books and one-sided books
  are published as they are (a missing side is 0.0): the consumers' market state refuses to evaluate
  them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hip3.account.exchange_clock import ClockOffsetEstimator
from hip3.hyperliquid.frames import (
    ErrorFrame,
    OrderUpdatesFrame,
    UserFillsFrame,
    order_update_msgs,
    user_fill_msgs,
)
from hip3.messages import AssetCtx, Bbo, FeedState, Msg

__all__ = ["FeedCore"]

# Clock samples from market data: at most one per this long (a busy feed gets hundreds of bursts a second;
# a 2 s bucket still gets ~400 samples).
CLOCK_SAMPLE_NS = 5_000_000

Publish = Callable[[Msg], None]
PublishState = Callable[[Msg, str], None]
Subscription = dict[str, Any]


class FeedCore:
    """Subscriptions, READY and freshness of one market-data connection; dispatches decoded frames.

    ``markets``: full coin names; ``user``: lower-case account address, or "" (observe mode, or a
    trading mode without an account: then the feed never becomes READY).
    """

    def __init__(self, markets: Sequence[str], user: str, *, trading: bool, stall_timeout_ms: int,
                 publish_md: PublishState, publish_user: Publish) -> None:
        self.markets = tuple(markets)
        self.user = user.lower()
        self.trading = trading
        self.stall_ns = stall_timeout_ms * 1_000_000
        self._md = publish_md
        self._user = publish_user
        self.market_subs: list[Subscription] = [{"type": "bbo", "coin": c} for c in self.markets] + [
            {"type": "activeAssetCtx", "coin": c} for c in self.markets
        ]
        self.user_subs: list[Subscription] = (
            [{"type": "orderUpdates", "user": self.user}, {"type": "userFills", "user": self.user}]
            if trading and self.user else []
        )
        self._bbo_ns: dict[str, int] = dict.fromkeys(self.markets, 0)
        self._ctx_ns: dict[str, int] = dict.fromkeys(self.markets, 0)
        self._bbo_key = {c: "bbo:" + c for c in self.markets}
        self._ctx_key = {c: "ctx:" + c for c in self.markets}
        self.connected = False
        self.conn_id = 0
        self.connected_ns = 0
        self._bbo_at_connect = 0
        self._ctx_at_connect = 0
        self.stale: set[tuple[str, str]] = set()  # (coin, "bbo" | "ctx")
        self.hot: frozenset[str] = frozenset()  # published first in a burst (``set_hot``)
        self.last_error = ""
        self.clock = ClockOffsetEstimator()
        self._clock_next_ns = 0  # the next burst that gives a clock sample (at most one per CLOCK_SAMPLE_NS)
        self.n_bbo = 0
        self.n_ctx = 0
        self.counts: dict[str, int] = {
            "order_updates": 0,
            "user_fills": 0,
            "user_fills_snapshot": 0,
            "error_frames": 0,
            "unknown_coin": 0,
            "foreign_user": 0,
            "unexpected_frames": 0,
            "connects": 0,
            "disconnects": 0,
        }

    def subscriptions(self) -> list[Subscription]:
        return self.market_subs + self.user_subs

    # ---- connection ----------------------------------------------------------------------------------

    def on_connected(self, conn_id: int, now_ns: int) -> None:
        """A new connection: READY starts from scratch (acks and first data again)."""
        self.connected = True
        self.conn_id = conn_id
        self.connected_ns = now_ns
        self._bbo_at_connect = self.n_bbo
        self._ctx_at_connect = self.n_ctx
        self.stale.clear()
        self.counts["connects"] += 1

    def on_disconnected(self) -> None:
        if self.connected:
            self.counts["disconnects"] += 1
        self.connected = False
        self.stale.clear()

    # ---- hot path ------------------------------------------------------------------------------------

    def set_hot(self, coins: Iterable[str]) -> None:
        """The markets where an exit may be due (an open position or order): their frames of a burst
        are published first (``on_frames``)."""
        self.hot = frozenset(coins)

    def on_frames(self, frames: Sequence[tuple[object, int]]) -> None:
        """Publish what ``WsClient.poll_read_market()`` returned (market data first, it is most of it).

        Frames of the ``hot`` markets go first: an exchange sends a block's updates of many markets in
        one burst, and the exit watcher only acts on the few with a position, so its frame does not
        wait behind the others' publishing (and the exit watcher's processing of them). The order within
        each market is kept, and every frame is still published."""
        hot = self.hot
        if hot and len(frames) > 1:
            first = [f for f in frames if getattr(f[0], "coin", None) in hot]
            if first and len(first) < len(frames):
                frames = first + [f for f in frames if getattr(f[0], "coin", None) not in hot]
        md = self._md
        bbo_ns = self._bbo_ns
        ctx_ns = self._ctx_ns
        bbo_key = self._bbo_key
        ctx_key = self._ctx_key
        clock_bbo = None
        for msg, recv_ns in frames:
            kind = type(msg)
            if kind is Bbo:
                key = bbo_key.get(msg.coin)  # type: ignore[attr-defined]
                if key is not None:
                    bbo_ns[msg.coin] = recv_ns  # type: ignore[attr-defined]
                    self.n_bbo += 1
                    md(msg, key)  # type: ignore[arg-type]
                    clock_bbo = msg
                else:
                    self.counts["unknown_coin"] += 1
            elif kind is AssetCtx:
                key = ctx_key.get(msg.coin)  # type: ignore[attr-defined]
                if key is not None:
                    ctx_ns[msg.coin] = recv_ns  # type: ignore[attr-defined]
                    self.n_ctx += 1
                    md(msg, key)  # type: ignore[arg-type]
                else:
                    self.counts["unknown_coin"] += 1
            else:
                self._other(msg, recv_ns)
        if clock_bbo is not None and clock_bbo.recv_ns >= self._clock_next_ns:  # type: ignore[attr-defined]
            # One clock sample per burst, at most one per CLOCK_SAMPLE_NS, after the frames went out.
            self._clock_next_ns = clock_bbo.recv_ns + CLOCK_SAMPLE_NS  # type: ignore[attr-defined]
            self.clock.add(clock_bbo.exch_ms, clock_bbo.recv_ns)  # type: ignore[attr-defined]

    def _other(self, frame: object, recv_ns: int) -> None:
        if isinstance(frame, OrderUpdatesFrame):
            for upd in order_update_msgs(frame, recv_ns):
                self.counts["order_updates"] += 1
                self._user(upd)
                self.clock.add(upd.status_ms, recv_ns)
        elif isinstance(frame, UserFillsFrame):
            if frame.data.user.lower() != self.user:
                self.counts["foreign_user"] += 1
                return
            key = "user_fills_snapshot" if frame.data.is_snapshot else "user_fills"
            for fill in user_fill_msgs(frame, recv_ns):
                self.counts[key] += 1
                self._user(fill)  # snapshot fills flagged: the tracker never applies them (history)
                if not fill.is_snapshot:  # a snapshot's fills are old: valid bounds, but useless
                    self.clock.add(fill.time_ms, recv_ns)
        elif isinstance(frame, ErrorFrame):
            self.counts["error_frames"] += 1
            self.last_error = frame.data[:300]
        else:
            self.counts["unexpected_frames"] += 1

    # ---- READY ---------------------------------------------------------------------------------------

    def readiness(self, is_acked: Callable[[Subscription], bool]) -> tuple[bool, bool]:
        """(market_data_ready, user_ready) for the current connection."""
        if not self.connected:
            return False, False
        md = (
            self.n_bbo > self._bbo_at_connect
            and self.n_ctx > self._ctx_at_connect
            and all(is_acked(s) for s in self.market_subs)
        )
        user = bool(self.user_subs) and all(is_acked(s) for s in self.user_subs)
        return md, user

    def ready(self, md_ready: bool, user_ready: bool) -> bool:
        """The actor's READY: market data, and in trading modes the user streams too."""
        return md_ready and (user_ready or not self.trading)

    def not_ready_reason(self, is_acked: Callable[[Subscription], bool]) -> str:
        if not self.connected:
            return "disconnected"
        if self.trading and not self.user_subs:
            return "no account address for the user streams"
        if not all(is_acked(s) for s in self.market_subs):
            return "waiting for market subscription acks"
        if self.n_bbo == self._bbo_at_connect or self.n_ctx == self._ctx_at_connect:
            return "waiting for the first bbo and ctx"
        if self.user_subs and not all(is_acked(s) for s in self.user_subs):
            return "waiting for user stream acks"
        return ""

    def state(self, state: str, md_ready: bool, user_ready: bool, since_ns: int) -> FeedState:
        return FeedState(state=state, conn_id=self.conn_id, market_data_ready=md_ready,
                         user_ready=user_ready, since_ns=since_ns)

    # ---- freshness -----------------------------------------------------------------------------------

    def check_stale(self, now_ns: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(became stale, became fresh) since the last check. Only while connected."""
        if not self.connected:
            return [], []
        floor = self.connected_ns
        limit = self.stall_ns
        now_stale: set[tuple[str, str]] = set()
        for channel, last in (("bbo", self._bbo_ns), ("ctx", self._ctx_ns)):
            for coin, t in last.items():
                if now_ns - max(t, floor) > limit:
                    now_stale.add((coin, channel))
        went = sorted(now_stale - self.stale)
        back = sorted(self.stale - now_stale)
        self.stale = now_stale
        return went, back

    def stats(self) -> dict[str, int]:
        out = dict(self.counts)
        out["bbo"] = self.n_bbo
        out["ctx"] = self.n_ctx
        out["stale_markets"] = len({coin for coin, _ in self.stale})
        out["markets"] = len(self.markets)
        out["clock_samples"] = self.clock.samples
        out["clock_rejected"] = self.clock.rejected
        return out

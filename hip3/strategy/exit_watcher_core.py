"""The exit watcher actor's decision core: positions mirror, exits, and flatten claims (no sockets).

Guards against:
* At most one in-flight flatten per market (a second flatten sent before the first filled was refused
  with "Reduce only order would increase position"): a claim is taken before a ``FlattenIntent`` is built;
  a claimed market is not evaluated. A coin the position tracker reports in ``pending_flatten`` (e.g.
  after this process restarted and lost its claims) is treated as claimed too (for ``claim_expiry_ms``).
* A claim never strands a position (a claim released only by a closing fill deadlocked the Rust
  original's exits): it is released on ANY terminal state of the flatten order that did not close
  the position: ``OrderRejected`` (incl. the IOC "could not immediately match" miss, send failure,
  timeout), ``OrderCancelled``, an ``OrderFilled`` that leaves a remainder, and on ``PositionClosed`` /
  the position leaving a synced snapshot. A claim with no terminal event after ``claim_expiry_ms`` is
  released with a warning count, so no position is ever stranded.
* A whole-position close refused as below the exchange's $10 minimum (``hip3.execution.dust``): the
  position is dust, kept busy (no exit is evaluated or sent for it) until its size changes; said once
  (``alerts``), never retried in a loop.
* A resync snapshot keeps the local entry time, entry edge and exit baselines of positions that
  already exist; only size/entry price are refreshed (and the levels recomputed). A resync that reset
  them disabled the time stop, oracle and trailing exits for synced positions.
* An unsynced snapshot never removes positions (the exchange has answered with zero positions by
  mistake).
Hot path (``on_bbo``/``on_ctx``): one dict lookup for a market without a position; with one, a few float
comparisons on precomputed levels; nothing is allocated unless an exit fires.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from hip3.account.exchange_clock import ExchangeTime
from hip3.execution.dust import DustBook
from hip3.messages import (
    AssetCtx,
    Bbo,
    ExchangeClock,
    FlattenIntent,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    PositionClosed,
    PositionSnapshot,
)
from hip3.strategy.detector import EXIT_STANDARD
from hip3.strategy.exits import PROFILE_TIME_STOP, TIME_STOP, ExitPosition, ExitRules
from hip3.strategy.oracle_tracker import OracleTracker
from hip3.strategy.params import ExitParams, OracleTrackerParams
from hip3.strategy.pricing import to_valid_price

__all__ = ["Claim", "ExitWatcherCore"]

_INF = float("inf")
_MS = 1_000_000


class _Market:
    __slots__ = ("bbo", "ctx", "pos", "tracker")

    def __init__(self, min_move_bps: float) -> None:
        self.bbo: Bbo | None = None
        self.ctx: AssetCtx | None = None
        self.pos: ExitPosition | None = None
        self.tracker = OracleTracker(min_move_bps)


class Claim:
    """One market's in-flight flatten."""

    __slots__ = ("cloid", "coin", "created_ns", "intent_id", "reason", "size")

    def __init__(self, coin: str, intent_id: str, created_ns: int, size: Decimal, reason: str) -> None:
        self.coin = coin
        self.intent_id = intent_id
        self.created_ns = created_ns
        self.size = size
        self.reason = reason
        self.cloid = ""


class ExitWatcherCore:
    """Decides exits. Feed it every market update, position snapshot, order event and a polling tick.

    ``sz_decimals`` maps coin -> szDecimals (price validity); ``id_prefix`` makes intent ids unique
    across restarts (e.g. ``f"x{pid}-{start_ms}"``).
    """

    def __init__(
        self,
        params: ExitParams,
        oracle: OracleTrackerParams,
        sz_decimals: Mapping[str, int],
        *,
        id_prefix: str = "x",
    ) -> None:
        self.p = params
        self.rules = ExitRules(params)
        self._min_move = oracle.min_move_bps
        self._mk: dict[str, _Market] = {}
        self._sz_decimals = dict(sz_decimals)
        self._prefix = id_prefix
        self._n = 0
        self._claims: dict[str, Claim] = {}
        self._refs: dict[str, str] = {}  # intent_id / cloid -> coin
        self._ext_pending: dict[str, int] = {}  # coin -> since_ns (snapshot pending_flatten)
        self._ext_alerted: set[str] = set()
        self._ext_expired: set[str] = set()
        self._profiles: dict[str, str] = {}
        self.exchange_time = ExchangeTime()  # a fill's time (the exchange's clock) as a monotonic time
        self.dust = DustBook()
        self.alerts: list[str] = []
        self.counts: dict[str, int] = {
            "flattens": 0,
            "claim_busy": 0,
            "claim_released": 0,
            "claim_expired": 0,
            "no_price": 0,
            "no_spec": 0,
            "ext_pending_expired": 0,
        }

    def _market(self, coin: str) -> _Market:
        mk = self._mk.get(coin)
        if mk is None:
            mk = self._mk[coin] = _Market(self._min_move)
        return mk

    def add_markets(self, coins: list[str]) -> None:
        """Pre-create the configured markets so their updates are tracked from the start."""
        for c in coins:
            self._market(c)

    # ---- hot path ---------------------------------------------------------------------------------

    def on_bbo(self, msg: Bbo, now_ns: int) -> FlattenIntent | None:
        """Every bbo. Returns a flatten intent if a fast exit fires for this market's position."""
        mk = self._mk.get(msg.coin)
        if mk is None:
            mk = self._market(msg.coin)
        mk.bbo = msg
        pos = mk.pos
        if pos is None or pos.busy:
            return None
        bid_px = msg.bid_px
        ask_px = msg.ask_px
        if not 0.0 < bid_px < ask_px < _INF:
            return None
        reason = self.rules.book_exit(pos, bid_px, ask_px, now_ns)
        if reason is None:
            return None
        return self._flatten_bbo(pos, reason, bid_px, ask_px, now_ns, msg.recv_ns, self.rules.book_exit_slip)

    def on_ctx(self, msg: AssetCtx, now_ns: int) -> FlattenIntent | None:
        """Every ctx: advance the oracle tracker; with a position, the fast then the oracle exits."""
        mk = self._mk.get(msg.coin)
        if mk is None:
            mk = self._market(msg.coin)
        mk.ctx = msg
        oracle_px = msg.oracle_px
        tr = mk.tracker
        changed = oracle_px != tr.last_px and 0.0 < oracle_px < _INF
        if changed:
            tr.update(oracle_px)
        pos = mk.pos
        if pos is None:
            return None
        rules = self.rules
        if changed:
            rules.on_oracle(pos, oracle_px)
            if not pos.has_baseline:
                rules.set_baseline(pos, tr)
        if pos.busy:
            return None
        bbo = mk.bbo
        if bbo is not None and 0.0 < bbo.bid_px < bbo.ask_px < _INF:
            reason = rules.book_exit(pos, bbo.bid_px, bbo.ask_px, now_ns)
            if reason is not None:
                return self._flatten_bbo(
                    pos, reason, bbo.bid_px, bbo.ask_px, now_ns, msg.recv_ns, rules.book_exit_slip
                )
        else:
            bbo = None
        if tr.last_px <= 0.0:
            return None
        reason = rules.oracle_exit(pos, tr, tr.last_px, now_ns)
        if reason is None:
            return None
        if bbo is None:
            return self._flatten_mark(pos, reason, mk, now_ns, msg.recv_ns, rules.oracle_slip)
        return self._flatten_bbo(pos, reason, bbo.bid_px, bbo.ask_px, now_ns, msg.recv_ns, rules.oracle_slip)

    # ---- polling tick (fast-exit backup, time stop, claim/pending expiry) ---------------------------------

    def on_tick(self, now_ns: int) -> list[FlattenIntent]:
        """Run every ``poll_interval_ms``: time stop, fast-exit backup, claim expiry, pending alerts."""
        out: list[FlattenIntent] = []
        self._expire(now_ns)
        rules = self.rules
        for mk in self._mk.values():
            pos = mk.pos
            if pos is None or pos.busy:
                continue
            intent: FlattenIntent | None = None
            if rules.time_stop(pos, now_ns):
                intent = self._flatten_mark(pos, TIME_STOP, mk, now_ns, 0, rules.time_slip)
            else:
                bbo = mk.bbo
                if bbo is not None and 0.0 < bbo.bid_px < bbo.ask_px < _INF:
                    reason = rules.book_exit(pos, bbo.bid_px, bbo.ask_px, now_ns)
                    if reason is None and pos.profile_stop_ns and pos.has_baseline:
                        t = now_ns - pos.entry_ns
                        if t >= rules.oracle_min_hold_ns and t >= pos.profile_stop_ns:
                            reason = PROFILE_TIME_STOP
                    if reason is not None:
                        intent = self._flatten_bbo(
                            pos, reason, bbo.bid_px, bbo.ask_px, now_ns, 0, rules.book_exit_slip
                        )
            if intent is not None:
                out.append(intent)
        return out

    @property
    def poll_interval_ms(self) -> int:
        return min(self.p.mark_regression.check_interval_ms, self.p.time_stop.check_interval_ms)

    def _expire(self, now_ns: int) -> None:
        expiry = self.p.claim_expiry_ms * _MS
        for coin, c in list(self._claims.items()):
            if now_ns - c.created_ns > expiry:
                self.counts["claim_expired"] += 1
                self.alerts.append(f"flatten claim for {coin} expired with no terminal event ({c.intent_id})")
                self._release(coin)
        ro_timeout = self.p.time_stop.reduce_only_timeout_ms * _MS
        for coin, since in self._ext_pending.items():
            age = now_ns - since
            if age > expiry and coin not in self._ext_expired:
                # The tracker says a reduce-only order is in flight but nothing resolved it: stop
                # trusting it so the position can be retried (never strand).
                self._ext_expired.add(coin)
                self.counts["ext_pending_expired"] += 1
                self._refresh_busy(coin)
            if age > ro_timeout and coin not in self._ext_alerted:
                self._ext_alerted.add(coin)
                self.alerts.append(f"reduce-only order for {coin} pending over {ro_timeout // _MS} ms")

    def take_alerts(self) -> list[str]:
        out = self.alerts
        self.alerts = []
        return out

    # ---- flatten building and claims ----------------------------------------------------------------

    def _flatten_bbo(
        self, pos: ExitPosition, reason: str, bid_px: float, ask_px: float, now_ns: int, origin_ns: int,
        slip: float
    ) -> FlattenIntent | None:
        px = bid_px * (1.0 - slip) if pos.is_long else ask_px * (1.0 + slip)
        return self._flatten(pos, reason, px, now_ns, origin_ns)

    def _flatten_mark(
        self, pos: ExitPosition, reason: str, mk: _Market, now_ns: int, origin_ns: int, slip: float
    ) -> FlattenIntent | None:
        ref = 0.0
        if mk.ctx is not None:
            ref = mk.ctx.mark_px if mk.ctx.mark_px > 0.0 else mk.ctx.oracle_px
        if not 0.0 < ref < _INF:
            self.counts["no_price"] += 1
            return None
        px = ref * (1.0 - slip) if pos.is_long else ref * (1.0 + slip)
        return self._flatten(pos, reason, px, now_ns, origin_ns)

    def _flatten(
        self, pos: ExitPosition, reason: str, px_f: float, now_ns: int, origin_ns: int
    ) -> FlattenIntent | None:
        coin = pos.coin
        if coin in self._claims:  # defence in depth: busy should already have stopped us
            self.counts["claim_busy"] += 1
            pos.busy = True
            return None
        is_buy = not pos.is_long
        szd = self._sz_decimals.get(coin)
        if szd is None:
            self.counts["no_spec"] += 1
            exp = pos.size.as_tuple().exponent
            szd = -exp if isinstance(exp, int) and exp < 0 else 0
        px = to_valid_price(px_f, szd, is_buy)
        if px is None:
            self.counts["no_price"] += 1
            return None
        self._n += 1
        intent_id = f"{self._prefix}-f{self._n}"
        self._claims[coin] = Claim(coin, intent_id, now_ns, pos.size, reason)
        self._refs[intent_id] = coin
        pos.busy = True
        self.counts["flattens"] += 1
        return FlattenIntent(
            intent_id=intent_id,
            coin=coin,
            asset=pos.asset,
            is_buy=is_buy,
            px=px,
            sz=pos.size,
            reduce_only=True,
            valid_until_ns=now_ns + self.p.exit_ttl_ms * _MS,
            origin_recv_ns=origin_ns,
            created_ns=now_ns,
            reason=reason,
        )

    def _release(self, coin: str) -> None:
        c = self._claims.pop(coin, None)
        if c is None:
            return
        self.counts["claim_released"] += 1
        self._refs.pop(c.intent_id, None)
        if c.cloid:
            self._refs.pop(c.cloid, None)
        self._refresh_busy(coin)

    def _refresh_busy(self, coin: str) -> None:
        mk = self._mk.get(coin)
        if mk is not None and mk.pos is not None:
            mk.pos.busy = coin in self._claims or self.dust.is_stuck(coin) or (
                coin in self._ext_pending and coin not in self._ext_expired
            )

    def is_claimed(self, coin: str) -> bool:
        return coin in self._claims

    def on_order_submitted(self, msg: OrderSubmitted) -> None:
        """Link the executor's cloid to our claim, so terminal events keyed by cloid find it."""
        coin = self._refs.get(msg.intent_id)
        if coin is not None:
            c = self._claims.get(coin)
            if c is not None and c.intent_id == msg.intent_id:
                c.cloid = msg.cloid
                self._refs[msg.cloid] = coin

    def release_intent(self, intent_id: str) -> None:
        """The flatten intent ``intent_id`` ended without an order (not sent, refused): release its claim."""
        coin = self._refs.get(intent_id)
        if coin is not None:
            self._release(coin)

    def on_order_rejected(self, msg: OrderRejected) -> None:
        """Rejected / IOC miss / send failure / timeout / refused by the executor: release so exits can
        retry. Matched by cloid, or by intent id (an order given up before it was ever submitted)."""
        coin = self._refs.get(msg.cloid) or (self._refs.get(msg.intent_id) if msg.intent_id else None)
        if coin is not None:
            mk = self._mk.get(coin)
            if msg.reduce_only and mk is not None and mk.pos is not None:
                self.dust.on_rejected(coin, mk.pos.size, msg.reason)  # below $10: stop, say it once
                self.alerts.extend(self.dust.take_new())
            self._release(coin)

    def on_order_cancelled(self, msg: OrderCancelled) -> None:
        coin = self._refs.get(msg.cloid)
        if coin is not None:
            self._release(coin)

    def on_order_filled(self, msg: OrderFilled) -> None:
        """A partial fill leaves a remainder: release (the next evaluation flattens the rest)."""
        coin = self._refs.get(msg.cloid)
        if coin is None:
            return
        c = self._claims.get(coin)
        if c is not None and msg.total_sz < c.size:
            mk = self._mk.get(coin)
            if mk is not None and mk.pos is not None and mk.pos.size > msg.total_sz:
                mk.pos.size -= msg.total_sz  # until the next snapshot: never flatten more than held
            self._release(coin)

    def on_position_closed(self, msg: PositionClosed) -> None:
        self.dust.observe(msg.coin, None)
        self._release(msg.coin)
        mk = self._mk.get(msg.coin)
        if mk is not None:
            mk.pos = None

    # ---- positions mirror --------------------------------------------------------------------------

    def set_profile(self, coin: str, profile: str) -> None:
        """Exit profile for the next position opened in ``coin`` (Standard unless told)."""
        self._profiles[coin] = profile

    def on_exchange_clock(self, msg: ExchangeClock) -> None:
        self.exchange_time.on_clock(msg)

    def on_position_snapshot(self, snap: PositionSnapshot, now_ns: int, now_ms: int) -> None:
        """Mirror the book: add/update first, then (synced snapshots only) remove absent positions."""
        rules = self.rules
        seen: set[str] = set()
        for p in snap.positions:
            seen.add(p.coin)
            self.dust.observe(p.coin, p.size)  # a new size: worth another close
            mk = self._market(p.coin)
            pos = mk.pos
            entry_px = float(p.entry_px)
            if pos is None or pos.is_long != p.is_long:
                if pos is not None:
                    self._release(p.coin)
                entry_ns = self.exchange_time.mono_ns_of(p.opened_ms, now_ns, now_ms) if p.opened_ms > 0 else now_ns
                pos = ExitPosition(
                    p.coin, p.asset, p.is_long, p.size, entry_px, entry_ns,
                    p.entry_edge_bps, self._profiles.pop(p.coin, EXIT_STANDARD),
                )
                mk.pos = pos
                rules.init_position(pos)
                rules.set_baseline(pos, mk.tracker)
                rules.on_oracle(pos, mk.tracker.last_px)
            elif (
                pos.size != p.size
                or pos.entry_px != entry_px
                or (p.entry_edge_bps and not pos.entry_edge_bps)
            ):
                pos.size = p.size
                pos.entry_px = entry_px
                if p.entry_edge_bps and not pos.entry_edge_bps:
                    pos.entry_edge_bps = p.entry_edge_bps
                rules.init_position(pos)  # keeps entry time and baselines
                rules.on_oracle(pos, mk.tracker.last_px)
        pending = set(snap.pending_flatten)
        for coin in list(self._ext_pending):
            if coin not in pending:
                del self._ext_pending[coin]
                self._ext_alerted.discard(coin)
                self._ext_expired.discard(coin)
        for coin in pending:
            self._ext_pending.setdefault(coin, now_ns)
        if snap.synced:
            for coin, mk in self._mk.items():
                if mk.pos is not None and coin not in seen:
                    self.dust.observe(coin, None)
                    self._release(coin)
                    mk.pos = None
        for coin in self._mk:
            self._refresh_busy(coin)

    def position(self, coin: str) -> ExitPosition | None:
        mk = self._mk.get(coin)
        return None if mk is None else mk.pos

    def stats(self) -> dict[str, int]:
        out = dict(self.counts)
        out["positions"] = sum(1 for mk in self._mk.values() if mk.pos is not None)
        out["claims"] = len(self._claims)
        out["dust_positions"] = len(self.dust.stuck())
        return out

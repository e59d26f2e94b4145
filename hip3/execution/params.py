"""Execution and risk parameters (executor caps and batching, hard-stop triggers, entry-throttling gates),
decoded from the config's sections.

Every parameter with the Rust original's *seed default* value
(never its prod value), units in the names. Unknown keys are refused (``forbid_unknown_fields``) and
ranges are checked at decode time (``msgspec.Meta``), so a misspelt or nonsensical value stops the start.
Every number has an upper bound as well (``hip3.bounds``): an infinite or absurd cap, limit or interval
would switch its mechanism off without a word.

TOML layout::

    [executor]              # ExecutorParams: caps, batching, signing expiry, dead man's switch,
                            # the order-entry connection's reconnect backoff
    [risk]                  # RiskParams: hard-stop triggers, the daily loss cap, the hard-stop flatten cadence
    [soft_gates.hourly_drawdown]          # SoftGateParams: entry throttling, one sub-table per gate,
    [soft_gates.correlation_cooldown]     # each with its own ``enabled`` flag (all off by default)
    [soft_gates.burst]
    [soft_gates.tilt_guard]
    [soft_gates.reentry_delay]
    [soft_gates.market_health]
    [soft_gates.correlation_concurrency]

Deliberate deviations from the seed (each guards a flaw found in the Rust original's code):

* ``inflight_high_watermark`` defaults to 8, not the seed's 80: with an in-flight limit of 10 the seed's
  degraded mode could never engage. ``__post_init__`` refuses a watermark above the limit.
* ``expires_after_ms`` (hip3 addition) must not exceed ``post_timeout_ms``: a post that timed out locally
  can then no longer execute at the exchange, so releasing its new orders is safe.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from hip3.bounds import (
    MAX_COUNT,
    MAX_DURATION_MS,
    NonNegBps,
    NonNegCount,
    NonNegUsd,
    PosCount,
    PosMs,
    PosUsd,
    SlippageBps,
)

# Every number is bounded above as well as below (``hip3.bounds``): an infinite or absurd value would
# switch its limit off without a word.
PosInt = PosCount
NonNegInt = NonNegCount
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
# A limit that counts events in a row or per window: above this it could never fire in practice.
StreakLimit = Annotated[int, msgspec.Meta(ge=0, le=1000)]


class ExecutorParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Executor gates, queues and batching, signing expiry and scheduleCancel."""

    # A cap left to the detector alone was once bypassed when the executor used its own defaults.
    # ---- caps (enforced here, independently of the detector's sizing and of each other) ----
    max_notional_per_market_usd: PosUsd = 50.0
    max_total_notional_usd: PosUsd = 100.0
    max_concurrent_positions: PosInt = 5
    # Refused at decode time (``__post_init__``) until the balance reaches the executor: accepting it and
    # silently trading on the static cap would hide that the setting does nothing.
    dynamic_sizing: bool = False
    risk_per_market_fraction: Annotated[float, msgspec.Meta(gt=0.0, le=10.0)] = 0.10
    # A shrunk order below this notional (at mark) is rejected (executor gate 3).
    min_shrunk_notional_usd: NonNegUsd = 5.0
    # Nothing below the exchange minimum ever leaves the bot: the exchange refuses < $10
    # (minTradeNtlRejected).
    exchange_min_notional_usd: NonNegUsd = 10.0
    # Executor gate 9: at most this many new orders per window.
    action_budget_orders: PosInt = 100
    action_budget_window_ms: PosMs = 1000

    # ---- batching ----
    batch_interval_ms: PosMs = 20
    inflight_limit: PosInt = 10
    inflight_high_watermark: PosInt = 8
    # A post with no answer after this long is released (its flatten retried with a new cloid). Bounded:
    # without an answer every in-flight slot stays taken, and a flatten cannot leave until it expires.
    post_timeout_ms: Annotated[int, msgspec.Meta(gt=0, le=60_000)] = 5000
    max_batch_size: Annotated[int, msgspec.Meta(ge=1, le=50)] = 50
    cancel_queue_capacity: PosInt = 200
    reduce_only_queue_capacity: PosInt = 500
    new_queue_capacity: PosInt = 1000
    # A reduce-only order or cancel requeued more often than this is given up (terminal), so a
    # deterministic whole-request error can never loop forever.
    max_requeues: Annotated[int, msgspec.Meta(ge=0, le=100)] = 5

    # ---- signing and safety nets (hip3 additions) ----
    expires_after_ms: PosMs = 5000
    # The dead man's switch: the exchange cancels every open order this long after the last re-arm. At
    # least 5 s (the exchange's minimum); at most 10 minutes, or it would fire long after hip3 died.
    schedule_cancel_after_ms: Annotated[int, msgspec.Meta(ge=5000, le=600_000)] = 60000
    schedule_cancel_rearm_ms: PosMs = 20000
    # The sent-intent journal keeps entries this long (longer than any intent TTL plus margin; checked
    # against the TTLs at load). Shorter, a restarted executor could forget an intent it sent that a
    # PUSH queue still holds, and send it twice.
    sent_journal_retention_ms: Annotated[int, msgspec.Meta(ge=60_000, le=MAX_DURATION_MS)] = 600_000
    # The journal line is always written (write(2)) before the frame; its fsync comes 5 ms after the
    # frame, by the executor's timer (False, default) or before it (True, +~150 us per post on ext4).
    # The kernel keeps written data when the executor dies (SIGKILL, OOM, crash): that is the restart
    # the journal guards against.
    # A host crash loses the ZeroMQ queues too, so no stale intent can be redelivered after one.
    journal_fsync_before_send: bool = False

    # ---- the order-entry connection's reconnect (hip3 addition; the feed's is ``[feed]``) ----
    # The executor's own WebSocket reconnects after ``min(reconnect_max_ms, reconnect_base_ms * 2^n)``
    # scaled by a random factor in [0.5, 1) (jitter, so the feed and the executor do not reconnect in
    # lockstep), n = drops in a row; a connection that stayed up ``reconnect_healthy_after_ms`` resets n.
    # No order, flatten included, can leave while it is down: the schedule is much shorter than the
    # feed's (a soak saw a 9 s wait after five drops in 42 s with the client's 1 s -> 60 s default).
    reconnect_base_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 150
    reconnect_max_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 3000
    reconnect_healthy_after_ms: Annotated[int, msgspec.Meta(ge=100, le=600_000)] = 5000

    # ---- signing latency (hip3 addition) ----
    # Precomputed single-use ECDSA nonces (``hip3.hyperliquid.signing.Signer``): with one, a whole order
    # signs in ~7 µs instead of ~32 with RFC 6979 (bench.signing). Spent nonces are replaced off the send
    # path (2 ms after a send, two per loop turn); an empty pool falls back to RFC 6979. 0 turns it off.
    sign_nonce_pool: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 32

    # ---- admission: what may leave now, by priority (hip3.execution.admission) ----
    # The account's address request budget (``userRateLimit``: every order or cancel counts one, a batch of
    # n counts n; it grows by one request per USDC traded; over it the exchange lets one request through
    # every 10 s). Entries stop while fewer than this many requests would remain after them, so flattens
    # and cancels always find room (cancels also have the exchange's larger cancel limit). Entries also
    # wait for the first reading of the budget.
    request_budget_reserve: Annotated[int, msgspec.Meta(ge=10, le=1_000_000)] = 500
    # How often the position tracker reads ``userRateLimit`` (an /info request of weight 20 against the
    # IP's 1,200 a minute); between reads the executor adds up its own actions.
    request_budget_poll_ms: Annotated[int, msgspec.Meta(ge=1000, le=3_600_000)] = 30_000
    # Entries stop while the latest reading is older than this many polls (the tracker's REST reads keep
    # failing): the executor's own count cannot see requests another client of the same address sends
    # (the app, a second bot), so an old reading is not trusted for entries. Flattens and cancels are not
    # held. Entries resume with the next reading.
    request_budget_max_age_polls: Annotated[int, msgspec.Meta(ge=2, le=100)] = 5
    # The exchange's WebSocket budget: 2,000 client messages per rolling minute per IP. Entry posts are
    # paced by a token bucket holding this many posts (the idle path sends at once while it has tokens) ...
    entry_posts_burst: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 200
    # ... refilled so that every rolling minute keeps at least this many messages for flattens, cancels,
    # the dead man's switch and pings. Under load, entries wait for a token and leave in fuller batches
    # (at most ``max_batch_size`` per post) instead of using the minute up in a second.
    priority_posts_reserve: Annotated[int, msgspec.Meta(ge=50, le=1500)] = 200
    # An entry is refused at intake, before the gates ("Overloaded"), while this many accepted entries
    # already wait for a post: more would only leave later, at staler prices.
    entry_intake_queue_limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 50
    # Verdict lines (one INFO line per verdict: 310 signals once became 0 trades with no way to see why)
    # per second at most; beyond that they are
    # counted by reason and summarised once a second, so a flood of intents cannot turn into a flood of
    # log writes. Entries shed at intake are always summarised, never logged one by one.
    verdict_log_lines_per_s: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 200

    def __post_init__(self) -> None:
        if self.dynamic_sizing:
            raise ValueError(
                "executor.dynamic_sizing = true is refused: not wired yet: the balance is not published to "
                "the executor (set it to false; the static max_notional_per_market_usd applies)"
            )
        if self.inflight_high_watermark > self.inflight_limit:
            raise ValueError("inflight_high_watermark must be <= inflight_limit (or degraded mode is unreachable)")
        if self.expires_after_ms > self.post_timeout_ms:
            raise ValueError("expires_after_ms must be <= post_timeout_ms")
        if self.schedule_cancel_rearm_ms >= self.schedule_cancel_after_ms:
            raise ValueError("schedule_cancel_rearm_ms must be < schedule_cancel_after_ms")
        if self.reconnect_max_ms < self.reconnect_base_ms:
            raise ValueError("reconnect_max_ms must be >= reconnect_base_ms")
        if self.entry_posts_burst + self.priority_posts_reserve > 1800:
            raise ValueError("entry_posts_burst + priority_posts_reserve must be <= 1800 (the exchange allows 2,000 "
                             "WebSocket messages a minute; entries need some of them to refill)")


class RiskParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Hard-stop triggers and the hard-stop flatten cadence."""

    max_loss_usd: PosUsd = 1000.0
    # Losing closes in a row (net of fees); more than this latches. 0: the first loss latches.
    max_consecutive_failures: StreakLimit = 5
    max_flatten_failed: StreakLimit = 3
    max_rejections_per_bucket: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 10
    # Non-benign exchange rejections are counted per bucket of this length. At least a minute: in a
    # shorter bucket a steady stream of refusals (one a second, say) never adds up to the limit.
    rejection_bucket_ms: Annotated[int, msgspec.Meta(ge=60_000, le=MAX_DURATION_MS)] = 3_600_000
    max_slippage_bps: NonNegBps = 50.0
    slippage_consecutive_trades: Annotated[int, msgspec.Meta(gt=0, le=1000)] = 3
    # Hard-stop flatten: reduce-only IOC at mark ± slippage; 3 fast attempts 1 s apart, then keep
    # retrying at a slower cadence with a critical alert instead of giving up.
    flatten_slippage_bps: SlippageBps = 50.0
    flatten_fast_attempts: Annotated[int, msgspec.Meta(gt=0, le=100)] = 3
    # Bounded: the flatten is retried at these intervals, so a huge one would mean "try once".
    flatten_fast_interval_ms: Annotated[int, msgspec.Meta(gt=0, le=60_000)] = 1000
    flatten_slow_interval_ms: Annotated[int, msgspec.Meta(gt=0, le=600_000)] = 10000
    # While latched, waiting this long for a synced position view (the flatten works from it) raises an
    # alert (a HardStopProgress with ``alert``), repeated every ``flatten_slow_interval_ms``; it keeps waiting.
    flatten_unsynced_alert_ms: Annotated[int, msgspec.Meta(gt=0, le=600_000)] = 10000
    # Daily loss cap: realised PnL net of fees since 00:00 UTC at or below minus this latches the hard
    # stop, and entries stay refused until the next UTC day, even after the operator resets the latch
    # (raise the cap to trade on). Unrealised PnL does not count: see ``hip3.execution.risk``. The
    # day's tally, like every other loss limit's state, survives an executor restart
    # (``hip3.execution.risk_state``).
    daily_loss_cap_usd: PosUsd = 100.0


class HourlyDrawdownParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    max_loss_usd: PosUsd = 10.0
    window_ms: PosMs = 3_600_000


class CorrelationCooldownParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    max_closes: PosInt = 3
    window_ms: PosMs = 30_000
    cooldown_ms: PosMs = 60_000


class BurstParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    window_ms: PosMs = 1_800_000
    max_signals: PosInt = 3
    cooldown_ms: PosMs = 300_000
    bypass_edge_bps: NonNegBps = 0.0  # 0 = no bypass


class TiltGuardParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    max_consecutive_losses: PosInt = 3
    cooldown_ms: PosMs = 300_000


class ReentryDelayParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    delay_ms: PosMs = 30_000


class MarketHealthParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    window_trades: PosInt = 20
    min_samples: PosInt = 10
    # Above 0: no score is below 0, so 0 would leave the gate enabled but never disabling a market.
    disable_below_score: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.3
    enable_at_score: Fraction = 0.5
    win_rate_weight: Fraction = 0.6
    pnl_weight: Fraction = 0.4
    pnl_floor_usd: PosUsd = 1.0  # avg PnL ≤ −floor scores 0
    # A disabled market is re-probed after this long (history cleared), or it could never trade again.
    reprobe_after_ms: PosMs = 1_800_000


class CorrelationConcurrencyParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    max_weight: Annotated[float, msgspec.Meta(gt=0, le=MAX_COUNT)] = 5.0
    group_weight: Annotated[float, msgspec.Meta(ge=1.0, le=1000.0)] = 1.5
    groups: dict[str, str] = {}  # coin -> correlation group name


class SoftGateParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Entry-throttling gates: all off by default, as in the seed."""

    hourly_drawdown: HourlyDrawdownParams = HourlyDrawdownParams()
    correlation_cooldown: CorrelationCooldownParams = CorrelationCooldownParams()
    burst: BurstParams = BurstParams()
    tilt_guard: TiltGuardParams = TiltGuardParams()
    reentry_delay: ReentryDelayParams = ReentryDelayParams()
    market_health: MarketHealthParams = MarketHealthParams()
    correlation_concurrency: CorrelationConcurrencyParams = CorrelationConcurrencyParams()

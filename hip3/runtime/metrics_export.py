"""What the Prometheus scrape reads: the immutable snapshot the supervisor's loop publishes
(``MetricsSnapshot``, with its actors and histograms) and the collector that renders it as metric
families in the HTTP thread (``SnapshotCollector``). The design is in ``hip3.runtime.metrics``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from hip3.execution.limits_status import switch_state_name

__all__ = ["ActorSnapshot", "HistogramSnapshot", "MetricsSnapshot", "SnapshotCollector"]


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """``counts[i]`` observations fell in bucket ``i`` (``<= bounds[i]``; the last one is +Inf)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus buckets: ``(le, observations <= le)``, ending with ``+Inf``."""
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += n
            out.append(("+Inf" if math.isinf(bound) else repr(bound), acc))
        return out


# -------------------------------------------------------------------------------------------------
# The snapshot the scrape thread reads (never mutated after it is published)
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActorSnapshot:
    name: str
    pid: int | None
    up: bool  # a process is running (starting or running)
    ready: bool
    state: str
    restarts: int
    last_heartbeat_ns: int | None  # time.monotonic_ns() of the last heartbeat
    hardstop_epoch_acked: int
    counters: Mapping[str, int]
    gauges: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    mode: str
    started_at: float  # time.time() at the supervisor's start
    actors: tuple[ActorSnapshot, ...]
    hardstop_latched: bool
    hardstop_epoch: int
    exchange_restarts: int | None  # None: no built-in simulator
    supervisor_seq_gaps: int  # gaps on the supervisor's own subscriptions
    entries: int
    exit_fills: int
    exits_by_reason: Mapping[str, int]
    positions: Mapping[str, float]  # coin -> signed size
    open_orders: int
    realized_pnl_usd: float
    fees_usd: float
    orders_submitted: Mapping[str, int]  # kind -> orders written
    tick_to_trade: Mapping[str, HistogramSnapshot]  # "entry" | "exit"
    executor_added: Mapping[str, HistogramSnapshot]


class SnapshotCollector(Collector):
    """Renders the latest ``MetricsSnapshot`` (from ``source``) as metric families, at scrape time."""

    def __init__(self, source: Callable[[], MetricsSnapshot | None],
                 now_ns: Callable[[], int] = time.monotonic_ns, now_s: Callable[[], float] = time.time) -> None:
        self._source = source
        self._now_ns = now_ns
        self._now_s = now_s

    def collect(self) -> Iterator[Metric]:
        snap = self._source()
        if snap is None:
            return
        now_ns = self._now_ns()
        info = GaugeMetricFamily("hip3_info", "The supervisor's mode (always 1).", labels=["mode"])
        info.add_metric([snap.mode], 1)
        yield info
        yield GaugeMetricFamily("hip3_uptime_seconds", "Seconds since the supervisor started.",
                                value=max(0.0, self._now_s() - snap.started_at))
        yield from self._actors(snap, now_ns)
        yield GaugeMetricFamily("hip3_hardstop_latched", "1 while the hard stop is latched.",
                                value=int(snap.hardstop_latched))
        yield GaugeMetricFamily("hip3_hardstop_epoch", "The hard-stop latch's epoch (bumped on every latch and "
                                "reset).", value=snap.hardstop_epoch)
        if snap.exchange_restarts is not None:
            yield CounterMetricFamily("hip3_exchange_restarts", "Restarts of the built-in exchange simulator.",
                                      value=snap.exchange_restarts)
        yield from self._trading(snap)
        yield from self._exchange_limits(snap)
        yield from self._histograms(snap)

    def _actors(self, snap: MetricsSnapshot, now_ns: int) -> Iterator[Metric]:
        labels = ["actor"]
        up = GaugeMetricFamily("hip3_actor_up", "1 if the actor's process is running.", labels=labels)
        ready = GaugeMetricFamily("hip3_actor_ready", "1 if the actor reports READY.", labels=labels)
        restarts = CounterMetricFamily("hip3_actor_restarts", "Restarts of the actor by the supervisor.",
                                       labels=labels)
        hb_age = GaugeMetricFamily("hip3_actor_heartbeat_age_seconds", "Seconds since the actor's last heartbeat "
                                   "(absent before the first one).", labels=labels)
        acked = GaugeMetricFamily("hip3_actor_hardstop_epoch_acked", "The latest hard-stop epoch the actor "
                                  "acknowledged (-1: none).", labels=labels)
        state = GaugeMetricFamily("hip3_actor_state", "1 for the actor's current supervisor state.",
                                  labels=["actor", "state"])
        counters = CounterMetricFamily("hip3_actor_counter", "Counters from the actors' heartbeats, accumulated "
                                       "across restarts.", labels=["actor", "counter"])
        gauges = GaugeMetricFamily("hip3_actor_gauge", "Levels from the actors' heartbeats (percentiles, "
                                   "in-flight, open positions, ...) as the current process reports them.",
                                   labels=["actor", "gauge"])
        gaps = CounterMetricFamily("hip3_sequence_gaps", "Messages lost on PUB/SUB streams (sequence gaps), "
                                   "by receiver, accumulated across restarts.", labels=["receiver"])
        for a in snap.actors:
            up.add_metric([a.name], int(a.up))
            ready.add_metric([a.name], int(a.ready))
            restarts.add_metric([a.name], a.restarts)
            if a.last_heartbeat_ns is not None:
                hb_age.add_metric([a.name], max(0, now_ns - a.last_heartbeat_ns) / 1e9)
            acked.add_metric([a.name], a.hardstop_epoch_acked)
            state.add_metric([a.name, a.state], 1)
            for k in sorted(a.counters):
                counters.add_metric([a.name, k], a.counters[k])
            for k in sorted(a.gauges):
                gauges.add_metric([a.name, k], a.gauges[k])
            gaps.add_metric([a.name], a.counters.get("seq_gaps", 0))
        gaps.add_metric(["supervisor"], snap.supervisor_seq_gaps)
        yield from (up, ready, restarts, hb_age, acked, state, counters, gauges, gaps)

    @staticmethod
    def _trading(snap: MetricsSnapshot) -> Iterator[Metric]:
        yield CounterMetricFamily("hip3_entries", "Entry orders that filled.", value=snap.entries)
        yield CounterMetricFamily("hip3_exit_fills", "Reduce-only orders that filled.", value=snap.exit_fills)
        exits = CounterMetricFamily("hip3_exits", "Positions closed, by exit reason.", labels=["reason"])
        for reason in sorted(snap.exits_by_reason):
            exits.add_metric([reason], snap.exits_by_reason[reason])
        yield exits
        orders = CounterMetricFamily("hip3_orders_submitted", "Order frames written by the executor, by kind.",
                                     labels=["kind"])
        for kind in sorted(snap.orders_submitted):
            orders.add_metric([kind], snap.orders_submitted[kind])
        yield orders
        yield GaugeMetricFamily("hip3_open_positions", "Open positions (position tracker).", value=len(snap.positions))
        pos = GaugeMetricFamily("hip3_position_size", "Signed size of each open position (short < 0).",
                                labels=["coin"])
        for coin in sorted(snap.positions):
            pos.add_metric([coin], snap.positions[coin])
        yield pos
        yield GaugeMetricFamily("hip3_open_orders", "Open orders (position tracker).", value=snap.open_orders)
        yield GaugeMetricFamily("hip3_realized_pnl_usd", "Realised PnL of the account in USD (position tracker).",
                                value=snap.realized_pnl_usd)
        yield GaugeMetricFamily("hip3_fees_usd", "Fees paid in USD (position tracker).", value=snap.fees_usd)

    @staticmethod
    def _exchange_limits(snap: MetricsSnapshot) -> Iterator[Metric]:
        """The executor's view of the address request budget and the dead man's switch (its heartbeat)."""
        ex = next((a for a in snap.actors if a.name == "executor"), None)
        if ex is None or not ex.gauges:
            return
        g = ex.gauges
        if g.get("request_budget_known"):
            for key, name, doc in (
                ("request_budget_used", "used", "Address requests used (the exchange's count at its last read "
                 "plus what the executor sent since)."),
                ("request_budget_cap", "cap", "Address request cap: 10,000 + 1 per USDC traded (+ reserved)."),
                ("request_budget_cancel_cap", "cancel_cap", "The larger cap that cancels have."),
                ("request_budget_reserve", "reserve", "Requests kept for flattens and cancels: entries stop at it."),
            ):
                yield GaugeMetricFamily(f"hip3_request_budget_{name}", doc, value=g.get(key, 0))
        state = GaugeMetricFamily("hip3_dead_mans_switch", "1 for the dead man's switch's state (refused_*: the "
                                  "exchange refuses it and it is not re-armed).", labels=["state"])
        state.add_metric([switch_state_name(g)], 1)
        yield state

    @staticmethod
    def _histograms(snap: MetricsSnapshot) -> Iterator[Metric]:
        for name, doc, hists in (
            ("hip3_tick_to_trade_seconds", "Exchange frame received at the feed -> order frame written, by kind.",
             snap.tick_to_trade),
            ("hip3_executor_added_latency_seconds", "Intent received by the executor -> order frame written, "
             "by kind.", snap.executor_added),
        ):
            fam = HistogramMetricFamily(name, doc, labels=["kind"])
            for kind in sorted(hists):
                h = hists[kind]
                fam.add_metric([kind], h.cumulative(), h.sum)
            yield fam

"""Prometheus metrics, served by the supervisor: the actors' counters, the supervisor's view
of the actors and the hard stop, the trading, and latency histograms.

Everything here is built from what the supervisor already receives, so no actor's hot path changes:
heartbeats (each actor's ``stats``), the ``exec`` and ``positions`` streams it already reads for
``status`` (``OrderSubmitted`` carries the exchange frame's receive time, the intent's receipt time at
the executor and the time the order frame was written), and its own slots and latch.

Decisions:

* **Served from a daemon thread** (the supervisor's HTTP endpoint, ``hip3.ui.http``, which also serves
  the dashboard; the exposition is prometheus-client's, from a private ``CollectorRegistry``), not from
  the supervisor's poll loop. A scrape (HTTP parsing and rendering) then
  never delays heartbeat checks, restarts or the hard-stop rebroadcast, and a slow or stuck client
  cannot stall the loop; serving from the loop would need a non-blocking HTTP server of our own. The
  scrape thread never reads the supervisor's live objects: the loop publishes an immutable
  ``MetricsSnapshot`` at most every ``SNAPSHOT_INTERVAL_MS`` (building it costs about 32 µs; handing it
  over is one reference assignment, atomic under the GIL), and the collector renders the latest one
  (about 1.3 ms for 19 KB, in the HTTP thread; ``python -m bench.metrics``, BENCHMARKS.md).
  Heartbeat ages and uptime are computed at scrape time from timestamps in the snapshot (a heartbeat
  age may read up to ``SNAPSHOT_INTERVAL_MS`` high); everything else is at most that old.
* **Actor counters stay monotonic across restarts.** A restarted actor's counters start again from
  zero, so the supervisor keeps, per actor, the last values of every earlier process and exports their
  sum plus the current process's values (``hip3_actor_counter_total``). A value that goes down within
  one process is treated the same way (a reset). What an actor counted after the last heartbeat before
  it died is lost (up to about a second: some actors refresh their stats on a 1 s timer). A supervisor
  restart starts every counter from zero, which Prometheus reads as an ordinary counter reset. Stats
  that are levels, not counts (percentiles
  ``*_us``, sample counts ``*_n``/``*_samples``, ``inflight_*``, open positions, connection id, ...; see
  ``is_gauge``) are exported as they are (``hip3_actor_gauge``) and vanish with the process that
  reported them. The stat name is a label (``counter`` / ``gauge``), not part of the metric name: the
  keys are open-ended (``entry_rejected:<reason>``) and a label needs no sanitising.
* **Histograms are built here** from ``OrderSubmitted``: tick-to-trade (frame received at the feed →
  order frame written, as ``status`` computes it) and the executor's added latency (intent received →
  order frame written), each by kind (``entry``; ``exit`` for flattens). Seconds, as Prometheus wants.
  Hard-stop orders come from no exchange frame and no intent, so they are only in
  ``hip3_orders_submitted_total``. ``exec`` is PUB/SUB: an event the supervisor missed is counted in
  ``hip3_sequence_gaps_total{receiver="supervisor"}``.
* Off by default; ``[metrics] enabled = true``. Loopback by default; another host is logged as a
  warning (the endpoint has no authentication; it shows positions and PnL).
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from hip3.execution.limits_status import GAUGE_STATS
from hip3.messages import Message, OrderSubmitted
from hip3.runtime.metrics_export import ActorSnapshot, HistogramSnapshot, MetricsSnapshot, SnapshotCollector
from hip3.ui.http import EndpointError, HttpEndpoint, Request, Response

if TYPE_CHECKING:
    from hip3.config import MetricsConfig
    from hip3.runtime.logs import Log
    from hip3.runtime.supervisor_view import SupervisorView

__all__ = ["LatencyHistogram", "MetricsError", "StatsAccumulator", "SupervisorMetrics", "is_gauge", "is_loopback"]

SNAPSHOT_INTERVAL_MS = 250

# Bucket upper bounds in seconds. Tick-to-trade on one host is about 0.3–3 ms (BENCHMARKS.md); the
# buckets reach 1 s so that a stalled executor still lands in a finite bucket.
TICK_TO_TRADE_BUCKETS_S = (100e-6, 250e-6, 500e-6, 750e-6, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 7.5e-3, 10e-3,
                           25e-3, 50e-3, 100e-3, 250e-3, 1.0)
EXECUTOR_ADDED_BUCKETS_S = (50e-6, 100e-6, 250e-6, 500e-6, 750e-6, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 10e-3,
                            25e-3, 100e-3)

# Heartbeat stats that are levels, not counts.
_GAUGE_NAMES = frozenset({
    "conn_id", "markets", "stale_markets", "open_positions", "positions", "positions_synced", "claims",
    # The exchange's preconditions: the measured clock offset, the dex's free collateral, dust positions.
    "clock_skew_ms", "signing_offset_ms", "collateral_free_usd", "dust_positions",
}) | GAUGE_STATS
_GAUGE_SUFFIXES = ("_us", "_n", "_samples", "_until_s", "_pending")  # _pending: queue lengths and flags


# The metrics endpoint cannot be served (e.g. the port is taken). One line for the operator.
MetricsError = EndpointError


def is_gauge(stat: str) -> bool:
    """True for heartbeat stats that are levels (exported as gauges); every other stat is a counter."""
    return stat in _GAUGE_NAMES or stat.endswith(_GAUGE_SUFFIXES) or "inflight" in stat


def is_loopback(host: str) -> bool:
    """True if ``host`` is ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -------------------------------------------------------------------------------------------------
# Pure state, owned by the supervisor's loop
# -------------------------------------------------------------------------------------------------


class _ActorStats:
    __slots__ = ("base", "gauges", "last", "pid")

    def __init__(self) -> None:
        self.pid: int | None = None
        self.base: dict[str, int] = {}  # counters of earlier processes (and earlier resets)
        self.last: dict[str, int] = {}  # the current process's latest counter values
        self.gauges: dict[str, int] = {}


class StatsAccumulator:
    """Heartbeat stats per actor, split into gauges and counters that never go down."""

    def __init__(self) -> None:
        self._actors: dict[str, _ActorStats] = {}

    def observe(self, actor: str, pid: int, stats: Mapping[str, int]) -> None:
        a = self._actors.get(actor)
        if a is None:
            a = self._actors[actor] = _ActorStats()
        if pid != a.pid:  # a new process: its counters start from zero
            for k, v in a.last.items():
                a.base[k] = a.base.get(k, 0) + v
            a.last = {}
            a.pid = pid
        gauges: dict[str, int] = {}
        last = a.last
        for k, v in stats.items():
            if is_gauge(k):
                gauges[k] = v
                continue
            prev = last.get(k)
            if prev is not None and v < prev:  # reset within one process
                a.base[k] = a.base.get(k, 0) + prev
            last[k] = v
        a.gauges = gauges

    def counters(self, actor: str) -> dict[str, int]:
        a = self._actors.get(actor)
        if a is None:
            return {}
        return {k: a.base.get(k, 0) + a.last.get(k, 0) for k in a.base.keys() | a.last.keys()}

    def gauges(self, actor: str) -> dict[str, int]:
        a = self._actors.get(actor)
        return {} if a is None else dict(a.gauges)


class LatencyHistogram:
    """Fixed buckets (seconds); ``observe`` is a bisect and an increment."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram bounds must increase strictly: {bounds}")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.total)


# -------------------------------------------------------------------------------------------------
# The supervisor's side
# -------------------------------------------------------------------------------------------------


class SupervisorMetrics:
    """What the supervisor holds: the accumulators, the published snapshot and the HTTP server."""

    def __init__(self) -> None:
        self.stats = StatsAccumulator()
        self.tick_to_trade = {k: LatencyHistogram(TICK_TO_TRADE_BUCKETS_S) for k in ("entry", "exit")}
        self.executor_added = {k: LatencyHistogram(EXECUTOR_ADDED_BUCKETS_S) for k in ("entry", "exit")}
        self.orders_submitted: Counter[str] = Counter()
        self.snapshot: MetricsSnapshot | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(lambda: self.snapshot))
        self.url: str | None = None
        self._endpoint: HttpEndpoint | None = None  # only when ``serve`` made one of its own
        self._next_ns = 0

    def exposition(self, _req: Request) -> Response:
        """``/metrics``: the latest snapshot in Prometheus's text format (rendered in the HTTP thread)."""
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def attach(self, endpoint: HttpEndpoint, log: Log) -> None:
        """Serve ``/metrics`` on ``endpoint`` (public: scrapers carry no token); call before it starts."""
        if not is_loopback(endpoint.host):
            log.warning("metrics_not_loopback", host=endpoint.host, port=endpoint.port,
                        note="the metrics endpoint has no authentication and shows positions and PnL")
        endpoint.route("/metrics", self.exposition, private=False)

    @classmethod
    def serve(cls, cfg: MetricsConfig, log: Log) -> SupervisorMetrics:
        """An endpoint of its own on ``cfg.host:cfg.port`` serving only ``/metrics`` (port 0: any free
        port); ``url`` says where. The supervisor shares one endpoint with the dashboard instead
        (``hip3.ui.dashboard.open_endpoint``)."""
        m = cls()
        ep = HttpEndpoint(cfg.host, cfg.port)
        m.attach(ep, log)
        try:
            ep.start()
        except EndpointError as e:
            raise MetricsError(f"metrics: {e}") from None
        m._endpoint = ep
        m.url = ep.url("/metrics")
        log.info("metrics_serving", url=m.url)
        return m

    # ---- events (the supervisor's loop) -------------------------------------------------------------

    def on_heartbeat(self, actor: str, pid: int, stats: Mapping[str, int]) -> None:
        self.stats.observe(actor, pid, stats)

    def on_message(self, msg: Message) -> None:
        if not isinstance(msg, OrderSubmitted):
            return
        kind = "entry" if msg.kind == "entry" else "exit"
        self.orders_submitted[msg.kind] += 1
        # The same rule as hip3.runtime.trading.TradingStats, so the counts match status's ``n``.
        if msg.origin_recv_ns > 0 and msg.sent_ns >= msg.origin_recv_ns:
            self.tick_to_trade[kind].observe((msg.sent_ns - msg.origin_recv_ns) / 1e9)
        if msg.intent_recv_ns > 0 and msg.sent_ns >= msg.intent_recv_ns:
            self.executor_added[kind].observe((msg.sent_ns - msg.intent_recv_ns) / 1e9)

    def refresh(self, sup: SupervisorView, now_ns: int, force: bool = False) -> None:
        """Publish a new snapshot if the last one is ``SNAPSHOT_INTERVAL_MS`` old (or ``force``)."""
        if now_ns < self._next_ns and not force:
            return
        self._next_ns = now_ns + SNAPSHOT_INTERVAL_MS * 1_000_000
        self.snapshot = self.build(sup)

    def build(self, sup: SupervisorView) -> MetricsSnapshot:
        actors = tuple(
            ActorSnapshot(
                name=s.name, pid=s.pid if s.handle is not None else None,
                up=s.handle is not None and s.state in ("starting", "running"), ready=s.ready, state=s.state,
                restarts=s.restarts, last_heartbeat_ns=s.last_hb_ns, hardstop_epoch_acked=s.acked_epoch,
                counters=self.stats.counters(s.name), gauges=self.stats.gauges(s.name))
            for s in sup.slots.values())
        t = sup.trading
        snap = t.snapshot
        return MetricsSnapshot(
            mode=sup.cfg.mode, started_at=sup.started_at, actors=actors,
            hardstop_latched=sup.latch.state.latched, hardstop_epoch=sup.latch.state.epoch,
            exchange_restarts=None if sup.exchange is None else sup.exchange.restarts,
            supervisor_seq_gaps=sup.trading_sub.gaps,
            entries=t.entries, exit_fills=t.exit_fills, exits_by_reason=dict(t.exit_reasons),
            positions={} if snap is None else {
                p.coin: float(p.size) if p.is_long else -float(p.size) for p in snap.positions},
            open_orders=0 if snap is None else len(snap.open_orders),
            realized_pnl_usd=0.0 if snap is None else float(snap.realized_pnl_usd),
            fees_usd=0.0 if snap is None else float(snap.fees_usd),
            orders_submitted=dict(self.orders_submitted),
            tick_to_trade={k: h.snapshot() for k, h in self.tick_to_trade.items()},
            executor_added={k: h.snapshot() for k, h in self.executor_added.items()},
        )

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None

"""hip3.runtime.metrics: stats classification, counters that survive restarts, histograms, the exposition parsed
back with prometheus-client's own parser, and the supervisor's endpoint (off by default, port 0)."""

from __future__ import annotations

import os
import urllib.request
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zmq
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hip3.config import ConfigError, MetricsConfig
from hip3.messages import Message, OpenOrder, OrderFilled, OrderSubmitted, Position, PositionClosed, PositionSnapshot
from hip3.runtime.bus import prepare_run_dir
from hip3.runtime.logs import Log
from hip3.runtime.metrics import (
    TICK_TO_TRADE_BUCKETS_S,
    LatencyHistogram,
    MetricsError,
    StatsAccumulator,
    SupervisorMetrics,
    is_gauge,
    is_loopback,
)
from hip3.runtime.metrics_export import ActorSnapshot, HistogramSnapshot, MetricsSnapshot, SnapshotCollector
from hip3.runtime.restart import RestartPolicy
from hip3.runtime.supervisor import Slot, Supervisor
from hip3.runtime.trading import TradingStats
from tests.conftest import make_config

# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def _families(registry: CollectorRegistry) -> dict[str, Any]:
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(fams: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    hits = [s.value for s in fams[family].samples
            if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (family, sample, labels, fams[family].samples)
    return float(hits[0])


def _registry(snap: MetricsSnapshot | None, now_ns: int = 10_000_000_000, now_s: float = 1000.0) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(lambda: snap, now_ns=lambda: now_ns, now_s=lambda: now_s))
    return reg


def _submitted(kind: str, origin_ns: int, recv_ns: int, sent_ns: int) -> OrderSubmitted:
    return OrderSubmitted(cloid="0x1", intent_id="i", coin="xyz:GOLD", asset=1, is_buy=True, px=Decimal("1"),
                          sz=Decimal("1"), reduce_only=kind != "entry", tif="Ioc", kind=kind, reason="", nonce=1,
                          post_id=1, origin_recv_ns=origin_ns, sent_ns=sent_ns, intent_recv_ns=recv_ns)


def _listening_inodes() -> set[str]:
    """Inodes of this process's listening TCP sockets (state 0A in /proc/net/tcp{,6})."""
    listening: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        listening |= {cols[9] for cols in (ln.split() for ln in lines) if cols[3] == "0A"}
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    return listening & mine


def _snapshot(**over: Any) -> MetricsSnapshot:
    hist = LatencyHistogram(TICK_TO_TRADE_BUCKETS_S)
    for s in (0.0002, 0.0009, 0.0015, 0.0015, 2.0):
        hist.observe(s)
    base: dict[str, Any] = dict(
        mode="paper", started_at=990.0,
        actors=(ActorSnapshot(name="executor", pid=42, up=True, ready=True, state="running", restarts=2,
                              last_heartbeat_ns=9_750_000_000, hardstop_epoch_acked=3,
                              counters={"orders_sent": 17, "seq_gaps": 4, "entry_rejected:MaxPositionTotal": 2},
                              gauges={"added_latency_p50_us": 1310, "inflight_posts": 1}),
                ActorSnapshot(name="feed", pid=None, up=False, ready=False, state="backoff", restarts=0,
                              last_heartbeat_ns=None, hardstop_epoch_acked=-1, counters={}, gauges={})),
        hardstop_latched=True, hardstop_epoch=3, exchange_restarts=1, supervisor_seq_gaps=5,
        entries=7, exit_fills=6, exits_by_reason={"mark_regression": 4, "time_stop": 2},
        positions={"xyz:GOLD": 0.5, "xyz:TSLA": -2.0}, open_orders=1, realized_pnl_usd=-1.25, fees_usd=0.5,
        orders_submitted={"entry": 7, "flatten": 6},
        tick_to_trade={"entry": hist.snapshot(), "exit": LatencyHistogram(TICK_TO_TRADE_BUCKETS_S).snapshot()},
        executor_added={"entry": LatencyHistogram((0.001,)).snapshot()},
    )
    base.update(over)
    return MetricsSnapshot(**base)


# ---------------------------------------------------------------------------------------------------
# pure parts
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stat", "gauge"), [
    ("orders_sent", False), ("seq_gaps", False), ("entry_rejected:MaxPositionTotal", False), ("resyncs", False),
    ("statuses_unmatched", False), ("ws_connected", False),
    ("added_latency_p50_us", True), ("stage_sign_p99_us", True), ("stage_sign_n", True),
    ("added_latency_samples", True), ("inflight_posts", True), ("conn_id", True), ("open_positions", True),
    ("positions", True), ("stale_markets", True), ("schedule_cancel_armed_until_s", True), ("claims", True),
    ("resync_pending", True), ("journal_pending", True), ("ext_pending_expired", False),
    # levels that go down (a negative clock offset, a balance): a counter would be made monotonic
    ("clock_skew_ms", True), ("signing_offset_ms", True), ("collateral_free_usd", True), ("dust_positions", True),
    ("clock_rejected", False), ("entry_rejected_conditions", False),
])
def test_stat_classification(stat: str, gauge: bool) -> None:
    assert is_gauge(stat) is gauge


def test_counters_stay_monotonic_across_restarts_and_resets() -> None:
    acc = StatsAccumulator()
    acc.observe("executor", 100, {"orders_sent": 5, "posts": 3, "inflight_posts": 2})
    acc.observe("executor", 100, {"orders_sent": 9, "posts": 4, "inflight_posts": 0})
    assert acc.counters("executor") == {"orders_sent": 9, "posts": 4}
    assert acc.gauges("executor") == {"inflight_posts": 0}
    # Restarted (new pid): its counters start from zero; the exported ones carry on from 9 and 4.
    acc.observe("executor", 200, {"orders_sent": 1})
    assert acc.counters("executor") == {"orders_sent": 10, "posts": 4}
    assert acc.gauges("executor") == {}  # a gauge of the dead process is not carried over
    acc.observe("executor", 200, {"orders_sent": 3, "posts": 2})
    assert acc.counters("executor") == {"orders_sent": 12, "posts": 6}
    # A value that goes down within one process is a reset too.
    acc.observe("executor", 200, {"orders_sent": 1, "posts": 2})
    assert acc.counters("executor") == {"orders_sent": 13, "posts": 6}
    # Gauges are never accumulated.
    acc.observe("executor", 300, {"added_latency_p50_us": 50})
    acc.observe("executor", 400, {"added_latency_p50_us": 40})
    assert acc.gauges("executor") == {"added_latency_p50_us": 40}
    assert acc.counters("nobody") == {} and acc.gauges("nobody") == {}


def test_histogram_buckets_are_inclusive_upper_bounds() -> None:
    h = LatencyHistogram((0.001, 0.002, 0.005))
    for s in (0.0005, 0.001, 0.0011, 0.002, 0.004, 0.009, 3.0):
        h.observe(s)
    snap = h.snapshot()
    assert snap.counts == (2, 2, 1, 2)
    assert snap.count == 7 and snap.sum == pytest.approx(3.0176)
    assert snap.cumulative() == [("0.001", 2), ("0.002", 4), ("0.005", 5), ("+Inf", 7)]
    with pytest.raises(ValueError):
        LatencyHistogram((0.002, 0.001))


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("metrics.example")


# ---------------------------------------------------------------------------------------------------
# the exposition, parsed back
# ---------------------------------------------------------------------------------------------------


def test_exposition_families_labels_and_values() -> None:
    fams = _families(_registry(_snapshot()))
    assert _value(fams, "hip3_info", mode="paper") == 1
    assert _value(fams, "hip3_uptime_seconds") == 10.0
    assert fams["hip3_actor_up"].type == "gauge"
    assert _value(fams, "hip3_actor_up", actor="executor") == 1 and _value(fams, "hip3_actor_up", actor="feed") == 0
    assert _value(fams, "hip3_actor_ready", actor="executor") == 1
    assert fams["hip3_actor_restarts"].type == "counter"
    assert _value(fams, "hip3_actor_restarts", "hip3_actor_restarts_total", actor="executor") == 2
    assert _value(fams, "hip3_actor_heartbeat_age_seconds", actor="executor") == pytest.approx(0.25)
    assert not [s for s in fams["hip3_actor_heartbeat_age_seconds"].samples if s.labels["actor"] == "feed"]
    assert _value(fams, "hip3_actor_state", actor="feed", state="backoff") == 1
    assert _value(fams, "hip3_actor_hardstop_epoch_acked", actor="executor") == 3
    assert fams["hip3_actor_counter"].type == "counter"
    assert _value(fams, "hip3_actor_counter", "hip3_actor_counter_total", actor="executor", counter="orders_sent") == 17
    assert _value(fams, "hip3_actor_counter", "hip3_actor_counter_total", actor="executor",
                  counter="entry_rejected:MaxPositionTotal") == 2
    assert _value(fams, "hip3_actor_gauge", actor="executor", gauge="added_latency_p50_us") == 1310
    assert _value(fams, "hip3_sequence_gaps", "hip3_sequence_gaps_total", receiver="executor") == 4
    assert _value(fams, "hip3_sequence_gaps", "hip3_sequence_gaps_total", receiver="feed") == 0
    assert _value(fams, "hip3_sequence_gaps", "hip3_sequence_gaps_total", receiver="supervisor") == 5
    assert _value(fams, "hip3_hardstop_latched") == 1 and _value(fams, "hip3_hardstop_epoch") == 3
    assert _value(fams, "hip3_exchange_restarts", "hip3_exchange_restarts_total") == 1
    assert _value(fams, "hip3_entries", "hip3_entries_total") == 7
    assert _value(fams, "hip3_exit_fills", "hip3_exit_fills_total") == 6
    assert _value(fams, "hip3_exits", "hip3_exits_total", reason="time_stop") == 2
    assert _value(fams, "hip3_orders_submitted", "hip3_orders_submitted_total", kind="flatten") == 6
    assert _value(fams, "hip3_open_positions") == 2 and _value(fams, "hip3_open_orders") == 1
    assert _value(fams, "hip3_position_size", coin="xyz:TSLA") == -2.0
    assert _value(fams, "hip3_realized_pnl_usd") == -1.25 and _value(fams, "hip3_fees_usd") == 0.5


def test_exposition_histograms_match_the_observations() -> None:
    fams = _families(_registry(_snapshot()))
    t2t = fams["hip3_tick_to_trade_seconds"]
    assert t2t.type == "histogram"

    def bucket(le: str, kind: str = "entry") -> float:
        return _value(fams, "hip3_tick_to_trade_seconds", "hip3_tick_to_trade_seconds_bucket", kind=kind, le=le)

    # Observations 0.2 ms, 0.9 ms, 1.5 ms, 1.5 ms, 2 s.
    assert bucket("0.0001") == 0 and bucket("0.00025") == 1 and bucket("0.001") == 2
    assert bucket("0.0015") == 4 and bucket("1.0") == 4 and bucket("+Inf") == 5
    assert _value(fams, "hip3_tick_to_trade_seconds", "hip3_tick_to_trade_seconds_count", kind="entry") == 5
    assert _value(fams, "hip3_tick_to_trade_seconds", "hip3_tick_to_trade_seconds_sum",
                  kind="entry") == pytest.approx(2.0041)
    assert _value(fams, "hip3_tick_to_trade_seconds", "hip3_tick_to_trade_seconds_count", kind="exit") == 0
    assert len([s for s in t2t.samples if s.name.endswith("_bucket") and s.labels["kind"] == "entry"]) == \
        len(TICK_TO_TRADE_BUCKETS_S) + 1
    assert _value(fams, "hip3_executor_added_latency_seconds", "hip3_executor_added_latency_seconds_count",
                  kind="entry") == 0


def test_nothing_is_exported_before_the_first_snapshot() -> None:
    assert generate_latest(_registry(None)) == b""


def test_exchange_restarts_absent_without_a_builtin_exchange() -> None:
    assert "hip3_exchange_restarts" not in _families(_registry(_snapshot(exchange_restarts=None)))


# ---------------------------------------------------------------------------------------------------
# SupervisorMetrics fed like the supervisor feeds it (heartbeats, exec/positions messages)
# ---------------------------------------------------------------------------------------------------


def _fake_supervisor(slots: list[Slot], trading: TradingStats) -> Any:
    latch = SimpleNamespace(state=SimpleNamespace(latched=False, epoch=0))
    return SimpleNamespace(slots={s.name: s for s in slots}, trading=trading, latch=latch,
                           cfg=SimpleNamespace(mode="paper"), started_at=0.0, exchange=None,
                           trading_sub=SimpleNamespace(gaps=0))


def _slot(name: str, pid: int) -> Slot:
    handle: Any = SimpleNamespace()  # only "is not None" is read
    return Slot(name, RestartPolicy(50, 1000, 0.0, 5, 60.0), handle=handle, state="running", ready=True, pid=pid,
                last_hb_ns=1)


def test_counters_stay_monotonic_in_the_exposition_across_an_actor_restart() -> None:
    m = SupervisorMetrics()
    slot = _slot("executor", 100)
    sup = _fake_supervisor([slot], TradingStats())
    seen: list[float] = []

    def scrape() -> None:
        m.refresh(sup, 0, force=True)
        fams = _families(m.registry)
        seen.append(_value(fams, "hip3_actor_counter", "hip3_actor_counter_total", actor="executor",
                           counter="orders_sent"))

    m.on_heartbeat("executor", 100, {"orders_sent": 4})
    scrape()
    m.on_heartbeat("executor", 100, {"orders_sent": 6})
    scrape()
    slot.pid, slot.restarts = 200, 1  # killed and restarted: the new process counts from zero
    m.on_heartbeat("executor", 200, {"orders_sent": 0})
    scrape()
    m.on_heartbeat("executor", 200, {"orders_sent": 2})
    scrape()
    assert seen == [4, 6, 6, 8]
    assert _value(_families(m.registry), "hip3_actor_restarts", "hip3_actor_restarts_total", actor="executor") == 1


def test_histograms_from_order_events_agree_with_status() -> None:
    m = SupervisorMetrics()
    trading = TradingStats()
    msgs: list[Message] = [
        _submitted("entry", origin_ns=1_000_000, recv_ns=1_500_000, sent_ns=2_000_000),  # t2t 1 ms, added 0.5 ms
        _submitted("entry", origin_ns=1_000_000, recv_ns=1_100_000, sent_ns=1_300_000),  # t2t 0.3 ms, added 0.2 ms
        _submitted("flatten", origin_ns=5_000_000, recv_ns=0, sent_ns=9_000_000),  # t2t 4 ms, no receipt time
        _submitted("hardstop", origin_ns=0, recv_ns=0, sent_ns=9_000_000),  # not caused by a frame
        _submitted("entry", origin_ns=9_000_000, recv_ns=0, sent_ns=8_000_000),  # clock went backwards: skipped
        OrderFilled(cloid="0x1", oid=1, coin="xyz:GOLD", is_buy=True, total_sz=Decimal("1"), avg_px=Decimal("1"),
                    reduce_only=False, recv_ns=1),
        PositionClosed(coin="xyz:GOLD", is_long=True, size=Decimal("1"), entry_px=Decimal("1"), exit_px=Decimal("2"),
                       pnl_usd=Decimal("1"), fees_usd=Decimal("0"), hold_ms=1, exit_reason="time_stop", closed_ms=1),
        PositionSnapshot(version=3, synced=True, realized_pnl_usd=Decimal("2.5"), fees_usd=Decimal("0.1"),
                         positions=(Position(coin="xyz:TSLA", asset=2, is_long=False, size=Decimal("3"),
                                             entry_px=Decimal("10"), opened_ms=1),),
                         open_orders=(OpenOrder(coin="xyz:TSLA", asset=2, oid=9, cloid=None, is_buy=True,
                                                limit_px=Decimal("9"), sz=Decimal("1"), reduce_only=True),)),
    ]
    for msg in msgs:
        trading.on_message(msg)
        m.on_message(msg)
    m.refresh(_fake_supervisor([], trading), 0, force=True)
    fams = _families(m.registry)
    status = trading.as_dict()
    for kind in ("entry", "exit"):
        assert _value(fams, "hip3_tick_to_trade_seconds", "hip3_tick_to_trade_seconds_count", kind=kind) == \
            status["tick_to_trade_us"][kind]["n"]
    assert status["tick_to_trade_us"]["entry"]["n"] == 2 and status["tick_to_trade_us"]["exit"]["n"] == 1
    assert _value(fams, "hip3_tick_to_trade_seconds", "hip3_tick_to_trade_seconds_bucket", kind="entry",
                  le="0.00025") == 0
    assert _value(fams, "hip3_tick_to_trade_seconds", "hip3_tick_to_trade_seconds_bucket", kind="entry",
                  le="0.0005") == 1
    assert _value(fams, "hip3_tick_to_trade_seconds", "hip3_tick_to_trade_seconds_sum",
                  kind="entry") == pytest.approx(0.0013)
    assert _value(fams, "hip3_executor_added_latency_seconds", "hip3_executor_added_latency_seconds_count",
                  kind="entry") == 2
    assert _value(fams, "hip3_executor_added_latency_seconds", "hip3_executor_added_latency_seconds_sum",
                  kind="entry") == pytest.approx(0.0007)
    assert _value(fams, "hip3_executor_added_latency_seconds", "hip3_executor_added_latency_seconds_count",
                  kind="exit") == 0
    assert _value(fams, "hip3_orders_submitted", "hip3_orders_submitted_total", kind="hardstop") == 1
    assert _value(fams, "hip3_orders_submitted", "hip3_orders_submitted_total", kind="entry") == 3
    assert _value(fams, "hip3_entries", "hip3_entries_total") == status["entries"] == 1
    assert _value(fams, "hip3_exits", "hip3_exits_total", reason="time_stop") == status["exits"] == 1
    assert _value(fams, "hip3_realized_pnl_usd") == status["realized_pnl_usd"] == 2.5
    assert _value(fams, "hip3_position_size", coin="xyz:TSLA") == -3.0
    assert _value(fams, "hip3_open_orders") == status["open_orders"] == 1


def test_snapshot_is_republished_at_most_every_interval() -> None:
    m = SupervisorMetrics()
    sup = _fake_supervisor([], TradingStats())
    m.refresh(sup, 1_000_000_000)
    first = m.snapshot
    m.refresh(sup, 1_100_000_000)
    assert m.snapshot is first
    m.refresh(sup, 1_300_000_000)
    assert m.snapshot is not first and m.snapshot is not None


# ---------------------------------------------------------------------------------------------------
# config and the endpoint
# ---------------------------------------------------------------------------------------------------


def test_config_defaults_and_validation(run_dir: Path) -> None:
    cfg = make_config(run_dir)
    assert cfg.metrics == MetricsConfig(enabled=False, host="127.0.0.1", port=9464)
    cfg = make_config(run_dir, '[metrics]\nenabled = true\nhost = "::1"\nport = 0\n')
    assert cfg.metrics.enabled and cfg.metrics.port == 0
    for bad, expected in (("port = 70000", "`metrics.port`"), ('host = ""', "`metrics.host`"),
                          ("enable = true", "unknown key `metrics.enable`")):
        with pytest.raises(ConfigError, match=expected):
            make_config(run_dir, f"[metrics]\n{bad}\n")


class _RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))


def test_non_loopback_host_is_served_with_a_warning_and_a_taken_port_is_one_clear_error() -> None:
    log = _RecordingLog()
    m = SupervisorMetrics.serve(MetricsConfig(enabled=True, host="0.0.0.0", port=0), log)  # type: ignore[arg-type]
    try:
        assert [e for lvl, e, _ in log.lines if lvl == "warning"] == ["metrics_not_loopback"]
        assert m.url is not None and m.url.startswith("http://0.0.0.0:")
        port = int(m.url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(MetricsError, match=f"cannot listen on 0.0.0.0:{port}"):
            SupervisorMetrics.serve(MetricsConfig(enabled=True, host="0.0.0.0", port=port), log)  # type: ignore[arg-type]
    finally:
        m.close()
    quiet = _RecordingLog()
    SupervisorMetrics.serve(MetricsConfig(enabled=True, port=0), quiet).close()  # type: ignore[arg-type]
    assert not [e for lvl, e, _ in quiet.lines if lvl == "warning"]


class _NoLauncher:
    def launch(self, name: str) -> Any:
        raise AssertionError("not started in this test")

    def close(self) -> None:
        pass


def _supervisor(run_dir: Path, extra: str, ctx: zmq.Context[zmq.Socket[bytes]]) -> Supervisor:
    cfg = make_config(run_dir, '[bus]\ntransport = "inproc"\n' + extra)
    prepare_run_dir(cfg.run_path)
    sup = Supervisor(cfg, _NoLauncher(), Log("supervisor"), context=ctx)
    sup.stopping = True  # step() runs the loop's bookkeeping but launches nothing
    return sup


def test_disabled_by_default_nothing_listens(run_dir: Path) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    before = _listening_inodes()
    sup = _supervisor(run_dir, "", ctx)
    try:
        sup.step(0)
        assert sup.metrics is None and sup.status()["metrics"] is None
        assert _listening_inodes() == before
    finally:
        sup.close()
        ctx.term()


def test_enabled_on_port_zero_serves_the_supervisors_state_and_closes(run_dir: Path) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    before = _listening_inodes()
    sup = _supervisor(run_dir, "[metrics]\nenabled = true\nport = 0\n", ctx)
    try:
        url = sup.status()["metrics"]["url"]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/metrics")
        assert len(_listening_inodes() - before) == 1
        sup.hardstop("test", "test")
        sup.step(0)
        with urllib.request.urlopen(url, timeout=5) as r:
            fams = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
        assert _value(fams, "hip3_hardstop_latched") == 1 and _value(fams, "hip3_hardstop_epoch") == 1
        assert _value(fams, "hip3_actor_up", actor="feed") == 0  # never launched in this test
        assert _value(fams, "hip3_actor_state", actor="feed", state="pending") == 1
    finally:
        sup.close()
        ctx.term()
    assert _listening_inodes() == before


def test_histogram_snapshot_count_is_the_sum_of_buckets() -> None:
    assert HistogramSnapshot((1.0,), (2, 3), 4.0).count == 5

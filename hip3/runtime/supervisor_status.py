"""The supervisor's status snapshot: what ``python supervisor.py status``, the dashboard and the alerts
read. Built on demand from the supervisor's slots, latch and trading figures; it changes nothing."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from hip3.account.entry_conditions import status_view
from hip3.runtime.hardstop import Latch
from hip3.runtime.supervisor_view import SupervisorView

__all__ = ["entry_conditions", "latch_file_status", "status_snapshot"]


def status_snapshot(sup: SupervisorView, now: int) -> dict[str, Any]:
    """The whole status as a JSON-able dict (``now``: the supervisor's monotonic clock, ns)."""
    view = sup.board.view(sup.trading.snapshot, now)
    trading = {**sup.trading.as_dict(), "unrealized_pnl_usd": view.pop("unrealized_pnl_usd")}
    st = sup.latch.state
    actors = []
    for s in sup.slots.values():
        actors.append({
            "name": s.name,
            "pid": s.pid if s.handle is not None else None,
            "state": s.state,
            "restarts": s.restarts,
            "heartbeat_age_ms": round((now - s.last_hb_ns) / 1e6) if s.last_hb_ns is not None else None,
            "ready": s.ready,
            "ready_detail": s.ready_detail,
            "hardstop_epoch_acked": s.acked_epoch,
            # monotonic_ns timestamps (comparable across processes on one host), for benchmarks
            "ready_since_ns": s.ready_ns if s.ready else None,
            "hardstop_acked_ns": s.acked_ns,
            "stats": s.stats,
        })
    return {
        "run_dir": str(sup.run_dir),
        "running": True,
        "mode": sup.cfg.mode,
        "uptime_s": round(time.time() - sup.started_at, 1),
        "hard_stop": {"latched": st.latched, "reason": st.reason, "epoch": st.epoch, "since_ms": st.since_ms,
                      "flatten": msgspec.to_builtins(sup.hardstop_progress) if sup.hardstop_progress else None,
                      **latch_file_status(sup.latch)},
        "supervisor": {"stalls": sup.watch.stalls, "stalled_ms": round(sup.watch.stalled_ns / 1e6),
                       "longest_stall_ms": round(sup.watch.longest_stall_ns / 1e6)},
        "actors": actors,
        "seq_gaps": sum(s.stats.get("seq_gaps", 0) for s in sup.slots.values()),
        "alerts": sup.alerts[-10:],
        **entry_conditions(sup),
        "trading": trading,
        **view,
        "exchange": None if sup.exchange is None else {
            "kind": "simulator", "url": sup.exchange.url, "account": sup.exchange.key.address,
            "order_log": str(sup.exchange.order_log), "restarts": sup.exchange.restarts,
            "pid": sup.exchange.proc.pid if sup.exchange.proc is not None else None},
        "metrics": None if sup.metrics is None else {"url": sup.metrics.url},
        "dashboard": None if sup.dashboard is None else {"url": sup.dashboard.url},
        "left": sup.board.left(sup.trading.snapshot),  # what a stop now would leave at the exchange
    }


def latch_file_status(latch: Latch) -> dict[str, Any]:
    """Whether the latch file holds the current state, and if not, why (for status and replies)."""
    return {"persisted": latch.persisted, "persist_error": latch.persist_error,
            "path": str(latch.path), "failed_writes": latch.failed_writes}


def entry_conditions(sup: SupervisorView) -> dict[str, Any]:
    det, feed = sup.slots.get("detector"), sup.slots.get("feed")
    return status_view(sup.cfg.collateral, sup.cfg.clock, None if det is None else (det.ready, det.ready_detail),
                       feed.stats.get("clock_skew_ms") if feed is not None else None, sup.collateral)

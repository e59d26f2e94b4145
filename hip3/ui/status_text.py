"""The text of ``python supervisor.py status``: the actor table, the hard stop, the exchange's limits,
entry conditions and the trading figures, from a ``status`` document (the running supervisor's or the
latch file's when none runs)."""

from __future__ import annotations

from typing import Any

__all__ = ["format_status"]

# The counters worth a glance in the table (every counter is in --json).
_TABLE_STATS = ("seq_gaps", "bad_messages", "conn_id", "disconnects", "stale_markets", "bad_frames", "signals",
                "intents", "intents_dropped", "flattens", "orders_sent", "added_latency_p50_us", "positions_closed",
                "resyncs", "journal_rows", "journal_malformed", "journal_errors", "journal_dropped",
                # market terms: age of the last fee read (s; -1 never), markets at their open-interest cap,
                # failed reads, fills whose fee the model did not predict, entries held back by them
                "terms_fees_age_s", "markets_at_oi_cap", "terms_read_failed", "fee_model_mismatch",
                "entry_blocked_terms", "entry_blocked_oi_cap")


def format_status(status: dict[str, Any]) -> str:
    hs = status["hard_stop"]
    out = [f"run dir   {status['run_dir']}  ({'running' if status.get('running') else 'NOT RUNNING'})"]
    if hs.get("unreadable"):
        out.append(f"hard stop UNKNOWN: {hs['unreadable']} (start refuses it)")
    else:
        state = "LATCHED: " + str(hs.get("reason")) if hs["latched"] else "clear"
        out.append(f"hard stop {state}  (epoch {hs['epoch']})")
    if not hs.get("persisted", True):
        out.append(f"hard stop NOT SAVED: cannot write {hs['path']}: {hs['persist_error']} "
                   f"(in memory; {hs['failed_writes']} failed writes, retrying)")
    if status.get("actors"):
        out.append(f"{'actor':<17} {'pid':>7} {'state':<9} {'ready':<5} {'restarts':>8} {'hb age ms':>9}  counters")
        for a in status["actors"]:
            st = a.get("stats") or {}
            stats = " ".join(f"{k}={st[k]}" for k in _TABLE_STATS if st.get(k))
            hb = "-" if a["heartbeat_age_ms"] is None else str(a["heartbeat_age_ms"])
            out.append(f"{a['name']:<17} {a['pid'] or '-':>7} {a['state']:<9} {'yes' if a['ready'] else 'no':<5} "
                       f"{a['restarts']:>8} {hb:>9}  {stats}")
            if not a["ready"] and a.get("ready_detail"):
                out.append(f"{'':<17} why not READY: {a['ready_detail']}")
        out.append(f"sequence gaps: {status.get('seq_gaps', 0)}")
        from hip3.execution.limits_status import limits_lines

        out.extend(limits_lines(next((a.get("stats") or {} for a in status["actors"] if a["name"] == "executor"), {})))
    from hip3.account.entry_conditions import format_status_lines

    out.extend(format_status_lines(status))
    if status.get("trading"):
        from hip3.runtime.trading import format_trading

        out.extend(format_trading(status["trading"]))
    if status.get("metrics"):
        out.append(f"metrics   {status['metrics']['url']}")
    return "\n".join(out)

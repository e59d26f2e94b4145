"""What ``status`` shows of the exchange's limits on the executor, read from its heartbeat stats: the
address request budget (used against the cap, the flattens' reserve, whether entries are stopped for
it) and the dead man's switch (armed, or refused by the exchange and why)."""

from __future__ import annotations

from collections.abc import Mapping

from hip3.execution.deadman import STATE_CODES

__all__ = ["GAUGE_STATS", "limits_lines", "switch_state_name"]

# Executor stats that are levels, not counts (the metrics export them as gauges).
GAUGE_STATS = frozenset({
    "request_budget_known", "request_budget_used", "request_budget_cap", "request_budget_cancel_cap",
    "request_budget_reserve", "request_budget_cum_vlm_usd", "request_budget_read_age_s", "post_tokens",
    "request_budget_stale", "request_budget_max_age_s",
    "schedule_cancel_state", "schedule_cancel_required_usd",
})
_NAMES = {code: name for name, code in STATE_CODES.items()}


def switch_state_name(stats: Mapping[str, int]) -> str:
    return _NAMES.get(stats.get("schedule_cancel_state", 0), "off")


def limits_lines(stats: Mapping[str, int]) -> list[str]:
    """Two lines for ``status``: the request budget and the dead man's switch (empty without stats)."""
    if not stats:
        return []
    out = []
    if stats.get("request_budget_known"):
        used, cap, reserve = stats.get("request_budget_used", 0), stats.get("request_budget_cap", 0), \
            stats.get("request_budget_reserve", 0)
        left = cap - used
        age = stats.get("request_budget_read_age_s", -1)
        if stats.get("request_budget_stale"):
            state = (f"entries STOPPED: the reading is older than {stats.get('request_budget_max_age_s', 0)} s "
                     "(the position tracker cannot read it)")
        elif left - 1 < reserve:
            state = "entries STOPPED (flattens and cancels keep the reserve)"
        else:
            state = "entries allowed"
        read = f", read {age} s ago" if age >= 0 else ""
        out.append(f"requests  {used:,} used of {cap:,} (cancels {stats.get('request_budget_cancel_cap', 0):,}; "
                   f"reserve {reserve:,}): {state}; lifetime volume ${stats.get('request_budget_cum_vlm_usd', 0):,}"
                   f"{read}")
    else:
        out.append("requests  budget not read yet: entries wait for it")
    state = switch_state_name(stats)
    if state == "armed":
        out.append(f"dead man's switch armed until {stats.get('schedule_cancel_armed_until_s', 0)} (unix s)")
    elif state == "refused_volume":
        req = stats.get("schedule_cancel_required_usd")
        need = f"${req:,}" if req is not None else "more"
        out.append(f"dead man's switch REFUSED by the exchange: lifetime volume below {need}; not re-armed, "
                   "open orders are not cancelled if hip3 dies")
    elif state == "refused_daily":
        out.append("dead man's switch REFUSED by the exchange: daily trigger limit reached; re-armed after "
                   "00:00 UTC")
    elif state == "failing":
        out.append("dead man's switch NOT ARMED: the last attempt failed; retried every period")
    else:
        out.append("dead man's switch not armed yet")
    return out

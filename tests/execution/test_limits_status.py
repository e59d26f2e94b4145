"""The exchange's limits as the operator sees them: ``status`` lines and the Prometheus families, from the
executor's heartbeat stats (the request budget used against the cap, the dead man's switch's state)."""

from __future__ import annotations

from hip3.execution.limits_status import limits_lines
from hip3.runtime.metrics import is_gauge
from hip3.runtime.metrics_export import ActorSnapshot
from tests.test_metrics import _families, _registry, _snapshot, _value

STATS = {"request_budget_known": 1, "request_budget_used": 9_600, "request_budget_cap": 10_015,
         "request_budget_cancel_cap": 20_030, "request_budget_reserve": 500, "request_budget_cum_vlm_usd": 15,
         "request_budget_read_age_s": 4, "schedule_cancel_state": 2, "schedule_cancel_required_usd": 1_000_000}


def test_status_lines_show_used_against_cap_and_the_refused_switch() -> None:
    budget, switch = limits_lines(STATS)
    assert "9,600 used of 10,015" in budget and "reserve 500" in budget and "entries STOPPED" in budget
    assert "REFUSED" in switch and "$1,000,000" in switch
    ok = limits_lines({**STATS, "request_budget_used": 100, "schedule_cancel_state": 1,
                       "schedule_cancel_armed_until_s": 1_769_594_060})
    assert "entries allowed" in ok[0] and ok[1].startswith("dead man's switch armed")
    assert limits_lines({"schedule_cancel_state": 3})[0] == "requests  budget not read yet: entries wait for it"
    assert "daily trigger limit" in limits_lines({"schedule_cancel_state": 3})[1]
    assert limits_lines({}) == []


def test_metrics_export_the_budget_and_the_switch() -> None:
    assert all(is_gauge(k) for k in STATS)
    ex = ActorSnapshot(name="executor", pid=42, up=True, ready=True, state="running", restarts=0,
                       last_heartbeat_ns=9_750_000_000, hardstop_epoch_acked=0, counters={}, gauges=dict(STATS))
    fams = _families(_registry(_snapshot(actors=(ex,))))
    assert _value(fams, "hip3_request_budget_used") == 9_600
    assert _value(fams, "hip3_request_budget_cap") == 10_015
    assert _value(fams, "hip3_request_budget_reserve") == 500
    assert _value(fams, "hip3_dead_mans_switch", state="refused_volume") == 1
    assert _value(fams, "hip3_actor_gauge", actor="executor", gauge="request_budget_used") == 9_600

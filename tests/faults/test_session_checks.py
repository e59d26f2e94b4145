"""The fault tests' invariant checks can fail: each one, fed a run directory that breaks it, says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.faults.session import Session


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _order(nonce: int, cloid: str, reduce_only: bool = False, status: str = "ok") -> dict[str, Any]:
    return {"time_ms": nonce + 3, "nonce": nonce, "action_type": "order", "cloids": [cloid],
            "reduce_only": [reduce_only], "status": status}


def test_checks_find_what_they_look_for(run_dir: Path) -> None:
    s = Session(run_dir)
    _write(run_dir / "logs" / "executor.log", [
        {"ts": 1.000, "event": "starting", "latched": False},
        {"ts": 1.100, "event": "ready"},
        {"ts": 2.000, "event": "not_ready"},
        {"ts": 3.000, "event": "ready"},
        {"ts": 4.000, "event": "hardstop_state", "latched": True},
    ])
    _write(run_dir / "logs" / "detector.log", [
        {"ts": 1.0, "event": "starting"},
        {"ts": 1.2, "event": "entries_allowed"},
        {"ts": 1.5, "event": "entry_intent", "intent_id": "i-ok"},
        {"ts": 2.0, "event": "entries_blocked", "reason": "market data not ready"},
        {"ts": 2.1, "event": "entry_intent", "intent_id": "i-blocked"},
        {"ts": 3.0, "event": "entries_allowed"},
    ])
    (run_dir / "sent_intents.log").write_text("1 i-ok 0xa\n1 i-blocked 0xb\n1 i-late 0xc\n")
    _write(run_dir / "sim" / "orders.jsonl", [
        _order(1500, "0xa"),                       # READY, entries allowed: fine
        _order(2500, "0xb"),                       # executor not READY, and created while blocked
        _order(2600, "0xr", reduce_only=True),     # reduce-only while not READY: allowed
        _order(3500, "0xa"),                       # the same cloid accepted again: doubled
        _order(4500, "0xc"),                       # a new order with the hard stop latched
        _order(4600, "0xd", status="fault"),       # refused by a fault: not counted as accepted
        _order(4700, "0xd", reduce_only=True),
    ])
    assert s.doubled_cloids() == ["0xa"]
    assert s.lost_orders() == []
    (run_dir / "sent_intents.log").write_text("1 i-ok 0xa\n1 i-blocked 0xb\n1 i-late 0xc\n1 i-lost 0xe\n")
    assert s.lost_orders() == ["0xe"]
    problems = s.orders_while_not_ready()
    assert len(problems) == 2, problems
    assert "executor" in problems[0] and "2500" in problems[0]
    assert "detector" in problems[1] and "i-blocked" in problems[1]
    latched = s.orders_while_latched()
    assert len(latched) == 2 and "4500" in latched[0] and "4600" in latched[1], latched
    assert [r["nonce"] for r in s.new_orders_signed_between(2000, 4000)] == [2500, 3500]

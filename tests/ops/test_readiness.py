"""hip3.ops.readiness: /ready and /healthz, served by the supervisor's HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hip3.ops.readiness import Probes, judge
from hip3.ui.http import HttpEndpoint, Request, Response


@dataclass
class S:
    name: str
    state: str = "running"
    ready: bool = True
    ready_detail: str = ""


@dataclass
class L:
    latched: bool = False
    reason: str | None = None


def test_judge() -> None:
    six = [S(n) for n in ("feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder")]
    assert judge(six, L(), False) == (True, "all 6 actors READY")
    assert judge(six, L(True, "operator: test"), False) == (False, "hard stop latched: operator: test")
    assert judge(six, L(), True) == (False, "stopping")
    six[0] = S("feed", "starting", False, "connecting")
    six[2] = S("executor", "running", False, "nonce state unusable:\n see log")
    six[4] = S("exit_watcher", "backoff", False)
    ready, reason = judge(six, L(), False)
    assert not ready
    assert reason == ("3 of 6 actors not READY: feed (starting: connecting); executor (not READY: nonce state "
                      "unusable: see log); exit_watcher (backoff)")
    ready, reason = judge([S(f"a{i}", "failed", False, "x" * 200) for i in range(5)], L(), False)
    assert not ready and len(reason) == 300 and reason.endswith("...")


@pytest.fixture
def served() -> Iterator[tuple[HttpEndpoint, Probes, list[int]]]:
    now = [1_000_000_000]
    probes = Probes(stale_after_ms=3000, clock_ns=lambda: now[0])
    ep = HttpEndpoint("127.0.0.1", 0, token="a-token-of-twenty-chars")
    ep.route("/api/status", lambda _r: Response(200, b"{}"))  # a private route beside them
    probes.attach(ep)
    ep.start()
    try:
        yield ep, probes, now
    finally:
        ep.close()


def _get(ep: HttpEndpoint, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(ep.url(path), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, json.loads(body) if body.startswith(b"{") else {}


def test_ready_and_healthz_over_http(served: tuple[HttpEndpoint, Probes, list[int]]) -> None:
    ep, probes, now = served
    assert _get(ep, "/ready") == (503, {"ready": False, "reason": "starting: the supervisor's loop has not "
                                                                  "turned yet"})
    assert _get(ep, "/healthz")[0] == 503
    probes.publish(False, "1 of 6 actors not READY: feed (starting)", now[0])
    assert _get(ep, "/ready") == (503, {"ready": False, "reason": "1 of 6 actors not READY: feed (starting)"})
    assert _get(ep, "/healthz") == (200, {"alive": True, "reason": "loop turned 0 ms ago"})
    probes.publish(True, "all 6 actors READY", now[0])
    assert _get(ep, "/ready") == (200, {"ready": True, "reason": "all 6 actors READY"})
    # Public: a probe needs no token (it shows no position or PnL); the dashboard's data still does.
    assert _get(ep, "/api/status")[0] == 401
    # A latched hard stop: not ready, still alive (a restart would not clear it and would stop the flatten).
    probes.publish(*judge([S("feed")], L(True, "daily_loss: 2025-01-01"), False), now[0])
    assert _get(ep, "/ready") == (503, {"ready": False, "reason": "hard stop latched: daily_loss: 2025-01-01"})
    assert _get(ep, "/healthz")[0] == 200
    # The loop stops publishing (stalled): past the heartbeat timeout neither probe trusts the last verdict.
    probes.publish(True, "all 6 actors READY", now[0])
    now[0] += 2_900_000_000
    assert _get(ep, "/ready")[0] == 200
    now[0] += 200_000_000
    assert _get(ep, "/ready") == (503, {"ready": False, "reason": "the supervisor's loop has not turned for "
                                                                  "3100 ms"})
    assert _get(ep, "/healthz") == (503, {"alive": False, "reason": "the supervisor's loop has not turned for "
                                                                    "3100 ms"})
    head = urllib.request.Request(ep.url("/ready"), method="HEAD")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(head, timeout=5)
    assert e.value.code == 503


def test_a_handler_reads_only_the_published_snapshot() -> None:
    probes = Probes(3000, clock_ns=lambda: 5)
    probes.publish(True, "all 1 actors READY", 5)
    snap = probes.verdict
    resp = probes.ready(Request("/ready", {}, None))  # type: ignore[arg-type]
    assert resp.status == 200 and resp.content_type == "application/json" and resp.body.endswith(b"\n")
    assert probes.verdict is snap


def test_the_supervisor_publishes_its_verdict_every_turn(tmp_path: object) -> None:
    """The supervisor core (fake actors, injected clock) with its HTTP endpoint on 127.0.0.1:0: /ready is
    503 until every actor is READY, 200 then, 503 with the reason once the hard stop latches; a loop that
    stops turning turns both probes to 503."""
    from pathlib import Path

    from tests.supervisor_harness import Core

    core = Core(Path(str(tmp_path)), ("feed", "executor"), "[metrics]\nenabled = true\nport = 0\n")
    try:
        ep = core.sup.http
        assert ep is not None
        assert _get(ep, "/ready")[0] == 503 and _get(ep, "/healthz")[0] == 503  # not one turn yet
        core.step()
        assert _get(ep, "/ready") == (503, {"ready": False, "reason": "2 of 2 actors not READY: feed (starting); "
                                                                      "executor (pending)"})
        assert _get(ep, "/healthz")[0] == 200
        core.start_all()
        assert _get(ep, "/ready") == (200, {"ready": True, "reason": "all 2 actors READY"})
        core.ask({"cmd": "hardstop", "reason": "probe test"})
        assert _get(ep, "/ready") == (503, {"ready": False, "reason": "hard stop latched: operator: probe test"})
        core.clock.advance_ms(3100)  # the loop stalls past the heartbeat timeout (3000 ms by default)
        assert _get(ep, "/healthz") == (503, {"alive": False, "reason": "the supervisor's loop has not turned for "
                                                                        "3100 ms"})
    finally:
        core.close()

"""A paper session with the Prometheus endpoint on (127.0.0.1, port 0), end to end: real processes.

``/metrics`` is fetched over HTTP and parsed with prometheus-client's own parser: every actor is up and
READY, heartbeat counters are there and stay monotonic when an actor is killed and restarted, and the
tick-to-trade histograms count exactly the orders ``status --json`` counts. The ``status`` table shows
every item it lists.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hip3.config import REPO_ROOT
from tests.e2e.helpers import cli, status, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ACTORS = ("feed", "position_tracker", "executor", "detector", "exit_watcher")


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    text = (default.replace('run_dir = "run"', f'run_dir = "{run_dir}"')
            + "\n[logging]\nstderr = false\n[metrics]\nenabled = true\nhost = \"127.0.0.1\"\nport = 0\n")
    path = run_dir / "paper.toml"
    path.write_text(text)
    yield path
    cli(path, "stop", timeout=60)


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_endpoint_and_status_table_in_a_paper_session(config: Path) -> None:
    r = cli(config, "start", "--detach")
    assert r.returncode == 0, r.stderr
    st = status(config)
    url = st["metrics"]["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url) and not url.endswith(":0/metrics"), url

    # Trading: at least one entry order written (tick-to-trade measured).
    assert wait_until(lambda: status(config)["trading"]["tick_to_trade_us"]["entry"]["n"] >= 1, 60, 0.5), \
        status(config)["trading"]

    # The histograms count exactly what status counts (the snapshot is at most 250 ms old: retry).
    seen: dict[str, Any] = {}

    def histograms_agree() -> bool:
        t2t = status(config)["trading"]["tick_to_trade_us"]
        m = _scrape(url)
        seen.update(status=t2t, metrics={k: _get(m, "hip3_tick_to_trade_seconds_count", kind=k)
                                         for k in ("entry", "exit")})
        return all(_get(m, "hip3_tick_to_trade_seconds_count", kind=k) == t2t[k]["n"] for k in ("entry", "exit"))

    assert wait_until(histograms_agree, 10, 0.3), seen
    assert seen["metrics"]["entry"] >= 1

    m = _scrape(url)
    for a in ACTORS:
        assert _get(m, "hip3_actor_up", actor=a) == 1, a
        assert _get(m, "hip3_actor_ready", actor=a) == 1, a
        assert _get(m, "hip3_actor_restarts_total", actor=a) == 0, a
        age = _get(m, "hip3_actor_heartbeat_age_seconds", actor=a)
        assert age is not None and 0 <= age < 3, (a, age)

    # Heartbeat-derived counters (the detector refreshes its stats about once a second: retry).
    def counters_seen() -> bool:
        c = _scrape(url)
        return ((_get(c, "hip3_actor_counter_total", actor="feed", counter="bbo") or 0) > 0
                and (_get(c, "hip3_actor_counter_total", actor="detector", counter="signals") or 0) >= 1
                and (_get(c, "hip3_actor_counter_total", actor="executor", counter="orders_sent") or 0) >= 1
                and _get(c, "hip3_actor_gauge", actor="feed", gauge="markets") == 8)

    assert wait_until(counters_seen, 5, 0.2), [k for k in _scrape(url) if k[0].startswith("hip3_actor_")]
    assert _get(m, "hip3_hardstop_latched") == 0 and _get(m, "hip3_exchange_restarts_total") == 0
    assert (_get(m, "hip3_tick_to_trade_seconds_bucket", kind="entry", le="+Inf")
            == _get(m, "hip3_tick_to_trade_seconds_count", kind="entry"))
    assert (_get(m, "hip3_executor_added_latency_seconds_count", kind="entry") or 0) >= 1
    assert (_get(m, "hip3_orders_submitted_total", kind="entry") or 0) >= 1

    # The status table shows every item.
    st = status(config)
    table = cli(config, "status").stdout
    lines = table.splitlines()
    header = next(ln for ln in lines if ln.startswith("actor "))
    assert header.split()[:7] == ["actor", "pid", "state", "ready", "restarts", "hb", "age"], header
    for a in st["actors"]:
        row = next(ln for ln in lines if ln.startswith(a["name"] + " ")).split()
        # name, pid, state, READY, restarts, heartbeat age (ms)
        assert row[1] == str(a["pid"]) and row[2] == "running" and row[3] == "yes", row
        assert row[4] == str(a["restarts"]) and row[5].isdigit() and int(row[5]) < 3000, row
    assert "hard stop clear  (epoch 0)" in table
    assert re.search(r"^sequence gaps: \d+$", table, re.M)
    assert re.search(r"realised PnL [+-]\d+\.\d+ USD", table)
    assert re.search(r"^open orders \d+; positions: ", table, re.M), table

    def positions_shown() -> bool:  # two calls: a trade in between changes the positions, so retry
        coins = sorted(p["coin"] for p in status(config)["trading"]["positions"])
        m = re.search(r"^open orders \d+; positions: (.*)$", cli(config, "status").stdout, re.M)
        shown = [] if m is None or m.group(1) == "none" else sorted(x.split()[0] for x in m.group(1).split(", "))
        return m is not None and shown == coins

    assert wait_until(positions_shown, 10, 0.2)
    assert re.search(r"tick-to-trade entry: p50 [\d.]+ µs, p99 [\d.]+ µs, n=\d+", table)
    assert f"metrics   {url}" in table

    # Kill -9 the detector: its raw counters restart from zero, the exported counter does not go down.
    def gate_pass() -> float:
        return _get(_scrape(url), "hip3_actor_counter_total", actor="detector", counter="gate_pass") or 0

    before = gate_pass()
    assert before > 0
    old_pid = next(a["pid"] for a in status(config)["actors"] if a["name"] == "detector")
    os.kill(old_pid, signal.SIGKILL)

    def detector_back() -> bool:
        det = next(a for a in status(config)["actors"] if a["name"] == "detector")
        return bool(det["ready"] and det["pid"] != old_pid and det["stats"].get("gate_pass", 0) > 0)

    assert wait_until(detector_back, 20, 0.2), status(config)["actors"]
    after = _scrape(url)
    raw = next(a for a in status(config)["actors"] if a["name"] == "detector")["stats"]["gate_pass"]
    exported = _get(after, "hip3_actor_counter_total", actor="detector", counter="gate_pass") or 0
    assert exported >= before, (before, exported)
    assert raw < before <= exported, (raw, before, exported)  # the restart really reset the actor's own count
    assert _get(after, "hip3_actor_restarts_total", actor="detector") == 1
    assert cli(config, "stop").returncode == 0

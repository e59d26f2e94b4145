"""``stop`` lists what it leaves open; ``stop --flatten`` flattens to zero first: real processes, paper mode.

The sessions run without the exit watcher, so the positions hip3 enters stay open until the stop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT
from hip3.runtime.hardstop import Latch
from tests.e2e.helpers import cli, status, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    text = (default.replace('run_dir = "run"', f'run_dir = "{run_dir}"')
            + '\n[logging]\nstderr = false\n[supervisor]\n'
            + 'actors = ["feed", "position_tracker", "executor", "detector", "recorder"]\n')
    path = run_dir / "paper.toml"
    path.write_text(text)
    yield path
    cli(path, "stop", timeout=60)


def _start_with_positions(config: Path) -> list[dict[str, object]]:
    r = cli(config, "start", "--detach")
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: len(status(config)["trading"]["positions"]) >= 2, 90, 0.5), status(config)["trading"]
    positions: list[dict[str, object]] = status(config)["trading"]["positions"]
    return positions


def test_stop_lists_the_positions_it_leaves_open(config: Path, run_dir: Path) -> None:
    held = _start_with_positions(config)
    r = cli(config, "stop")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "hip3 stopped", r.stdout
    assert lines[1].startswith("LEFT OPEN at the exchange, no longer managed by hip3: "), r.stdout
    assert "(the tracker's view, " in lines[1] and "NOT synced" not in lines[1]
    for p in held:  # nothing closes them (no exit watcher): every one is listed, with its side and size
        assert any(ln.startswith(f"  position {p['coin']} {p['side']} {p['size']:g} @ ") for ln in lines), (p, r.stdout)
    assert lines[-1].strip().startswith("`python supervisor.py stop --flatten`")
    assert not Latch.load(run_dir).latched


def test_stop_flatten_goes_flat_then_stops_and_clears_its_latch(config: Path, run_dir: Path) -> None:
    held = _start_with_positions(config)
    r = cli(config, "stop", "--flatten", "--timeout", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("flattening: hard stop latched (epoch "), r.stdout
    assert out[1].startswith("flat: no position, no open order"), r.stdout
    assert "hip3 stopped" in out
    assert "hard stop cleared: it was latched only to flatten; the next start trades normally" in out
    assert out[-1].startswith("left at the exchange: no open position, no open order (the tracker's view"), r.stdout
    assert not Latch.load(run_dir).latched  # the next start trades normally
    # The hard-stop flatten's reduce-only orders reached the exchange and filled, at least one per position.
    orders = [json.loads(ln) for ln in (run_dir / "sim" / "orders.jsonl").read_text().splitlines()]
    filled_reduce_only = sum(1 for o in orders if o.get("action_type") == "order"
                             for ro, st in zip(o.get("reduce_only") or [], o["statuses"], strict=False)
                             if ro and "filled" in st)
    assert filled_reduce_only >= len(held), orders[-5:]
    log = (run_dir / "logs" / "supervisor.log").read_text()
    assert '"event":"hardstop_cleared_after_flatten"' in log


def test_stop_flatten_without_a_supervisor_says_nothing_can_flatten(config: Path) -> None:
    r = cli(config, "stop", "--flatten")
    assert r.returncode == 1 and r.stdout.startswith("no supervisor is running on "), r.stdout
    assert "nothing can flatten" in r.stdout

"""An unfunded HIP-3 dex, end to end with real processes: the paper account's USDC sits on the validator
perp dex (where a real deposit lands). hip3 starts (every actor READY, nothing restarted, no hard stop),
``status`` says entries are blocked and why, in one line naming the dex, the balance and the way to fund
it; no order leaves. ``fund-dex`` (a signed sendAsset, opt-in) moves USDC to the dex and trading starts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT
from tests.e2e.helpers import cli, status, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    text = (default.replace('run_dir = "run"', f'run_dir = "{run_dir}"')
            + '\n[sim]\nfunds_on = "perp"\n[collateral]\nrecheck_unfunded_s = 1.0\n[logging]\nstderr = false\n')
    path = run_dir / "paper.toml"
    path.write_text(text)
    yield path
    cli(path, "stop", timeout=60)


def _orders(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "sim" / "orders.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["action_type"] == "order"]


def test_unfunded_dex_blocks_entries_with_one_clear_line_until_fund_dex(config: Path, run_dir: Path) -> None:
    r = cli(config, "start", "--detach")
    assert r.returncode == 0, r.stderr  # every actor READY: an unfunded dex is no actor's failure

    def blocked_by_collateral() -> bool:
        e = status(config).get("entries") or {}
        return not e.get("allowed", True) and "dex 'xyz' has no usable collateral" in e.get("reason", "")

    assert wait_until(blocked_by_collateral, 30, 0.3), status(config)
    st = status(config)
    assert Decimal(st["collateral"]["withdrawable"]) == 0 and Decimal(st["collateral"]["perp_withdrawable"]) > 0
    assert "fund-dex" in st["entries"]["reason"]
    text = cli(config, "status").stdout
    assert "entries   BLOCKED: dex 'xyz' has no usable collateral" in text, text
    assert "clock     exchange - host " in text, text
    wait_until(lambda: False, 3.0)
    st = status(config)
    assert not _orders(run_dir)  # no entry reached the exchange
    assert not st["hard_stop"]["latched"] and all(a["restarts"] == 0 for a in st["actors"]), st

    r = cli(config, "fund-dex", "--usd", "20000")
    assert r.returncode == 0, r.stderr
    assert "moved 20000 USDC from the perp balance to dex 'xyz'" in r.stdout, r.stdout
    assert wait_until(lambda: (status(config).get("entries") or {}).get("allowed"), 30, 0.3), status(config)
    assert wait_until(lambda: status(config)["trading"]["entries"] >= 1, 90, 0.5), status(config)["trading"]
    st = status(config)
    assert not st["hard_stop"]["latched"] and all(a["restarts"] == 0 for a in st["actors"]), st

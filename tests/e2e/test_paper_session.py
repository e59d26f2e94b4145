"""A short paper session, end to end: real processes, the bundled simulator, the default strategy.

It must trade (at least one entry and one exit), never send a cloid twice, keep hip3's positions equal
to the simulator's, and the hard stop must bring positions and open orders to zero at the exchange.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hip3.config import REPO_ROOT
from tests.e2e.helpers import alive, cli, status, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    text = default.replace('run_dir = "run"', f'run_dir = "{run_dir}"') + "\n[logging]\nstderr = false\n"
    path = run_dir / "paper.toml"
    path.write_text(text)
    yield path
    cli(path, "stop", timeout=60)


def _info(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url + "/info", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _sim_book(st: dict[str, Any]) -> tuple[dict[str, float], int]:
    url, user = st["exchange"]["url"], st["exchange"]["account"]
    ch = _info(url, {"type": "clearinghouseState", "user": user, "dex": "xyz"})
    positions = {p["position"]["coin"]: float(p["position"]["szi"]) for p in ch["assetPositions"]
                 if float(p["position"]["szi"]) != 0}
    orders = _info(url, {"type": "openOrders", "user": user, "dex": "xyz"})
    return positions, len(orders)


def _hip3_book(st: dict[str, Any]) -> dict[str, float]:
    return {p["coin"]: (p["size"] if p["side"] == "long" else -p["size"]) for p in st["trading"]["positions"]}


def test_paper_session_trades_and_hard_stop_flattens(config: Path, run_dir: Path) -> None:
    r = cli(config, "start", "--detach")
    assert r.returncode == 0, r.stderr

    def traded() -> bool:
        t = status(config)["trading"]
        return bool(t["entries"] >= 1 and t["exits"] >= 1)

    assert wait_until(traded, 120, 0.5), status(config)

    # hip3's positions equal the simulator's (allow the snapshot a moment to catch up).
    def books_agree() -> bool:
        st = status(config)
        return _hip3_book(st) == _sim_book(st)[0]

    assert wait_until(books_agree, 15, 0.2), (status(config)["trading"], _sim_book(status(config)))

    # The hard stop brings positions and open orders to zero at the exchange.
    assert cli(config, "hardstop", "--reason", "end of e2e session").returncode == 0

    def flat() -> bool:
        st = status(config)
        fl = st["hard_stop"].get("flatten") or {}
        sim_positions, sim_orders = _sim_book(st)
        return bool(fl.get("done")) and not sim_positions and sim_orders == 0 and not st["trading"]["positions"]

    assert wait_until(flat, 60, 0.5), (status(config)["hard_stop"], _sim_book(status(config)))

    # No client order id was ever sent twice.
    log = run_dir / "sim" / "orders.jsonl"
    cloids = Counter(c for line in log.read_text().splitlines() for c in json.loads(line).get("cloids", []))
    assert cloids, "the simulator's order log is empty"
    assert max(cloids.values()) == 1, [c for c, n in cloids.items() if n > 1]
    nonces = [json.loads(line)["nonce"] for line in log.read_text().splitlines()]
    assert len(nonces) == len(set(nonces))

    pids = [a["pid"] for a in status(config)["actors"] if a["pid"]]
    assert cli(config, "stop").returncode == 0
    assert wait_until(lambda: not any(alive(p) for p in pids), 10)

"""Benchmark: what the preflight check adds to ``start`` in paper mode.

* ``check_ms``: ``run_checks`` against the simulator (127.0.0.1, this process), the eight default markets:
  every read the check makes (perpDexs, meta, a WebSocket connect, the market terms, two
  clearinghouseStates, userRateLimit) and the rules applied to them. Median and max of ``--runs``.
* ``import_ms``: importing the check's modules in a fresh interpreter that has already imported what the
  supervisor imports anyway (the extra cost of the first ``start``).
* ``start_ms`` / ``start_preflight_ms``: ``start --detach`` until every actor is READY (the CLI's wall
  time), and the check's own time inside it (``preflight_done`` in the supervisor's log), over ``--starts``.

Run: ``python -m bench.preflight [--runs N] [--starts N]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from hip3.config import REPO_ROOT, parse_config
from hip3.ops.preflight import Retry, run_checks
from hip3.runtime.logs import Log
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer

MARKETS = ("GOLD", "SILVER", "TSLA", "NVDA", "AAPL", "MSFT", "AMZN", "META")


def check_ms(runs: int) -> list[float]:
    key = SigningKey("0x" + secrets.token_hex(32))
    run_dir = Path(tempfile.mkdtemp(prefix="h3bp", dir="/tmp"))
    sim = SimServer(seed=1, funds={key.address: Decimal(100_000)}, order_log=str(run_dir / "o.jsonl"))
    sim.start()
    try:
        text = (f'run_dir = "{run_dir}"\nmode = "paper"\n[exchange]\nnetwork = "sim"\nrest_url = "{sim.url}"\n'
                + "".join(f'[[markets]]\ncoin = "xyz:{m}"\n' for m in MARKETS))
        cfg = parse_config(text, "bench.toml")
        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            found = run_checks(cfg, sim.url, sim.url.replace("http", "ws") + "/ws", key.address, "bench",
                               key.address, Log("bench"), Retry())
            out.append((time.perf_counter() - t0) * 1000)
            assert not [f for f in found if f.severity in ("fatal", "block")], found
        return out
    finally:
        sim.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def import_ms() -> float:
    base = "import hip3.runtime.supervisor, hip3.runtime.paper, hip3.runtime.secrets, hip3.ui.stopping"
    code = f"{base}; import time; t = time.perf_counter(); import hip3.ops.preflight_cli; " \
           "print((time.perf_counter() - t) * 1000)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return float(r.stdout.strip())


def starts(n: int) -> tuple[list[float], list[float]]:
    total, pre = [], []
    for _ in range(n):
        run_dir = Path(tempfile.mkdtemp(prefix="h3bs", dir="/tmp"))
        cfg = run_dir / "paper.toml"
        cfg.write_text((REPO_ROOT / "configs" / "default.toml").read_text().replace('run_dir = "run"',
                                                                                   f'run_dir = "{run_dir}"'))
        env = dict(os.environ)
        env.pop("HIP3_RUN_DIR", None)
        cmd = [sys.executable, str(REPO_ROOT / "supervisor.py")]
        try:
            t0 = time.perf_counter()
            subprocess.run([*cmd, "start", "--detach", "--config", str(cfg)], check=True, env=env,
                           capture_output=True, timeout=120)
            total.append((time.perf_counter() - t0) * 1000)
            for line in (run_dir / "logs" / "supervisor.log").read_text().splitlines():
                rec = json.loads(line)
                if rec.get("event") == "preflight_done":
                    pre.append(float(rec["ms"]))
        finally:
            subprocess.run([*cmd, "stop", "--config", str(cfg)], env=env, capture_output=True, timeout=60)
            shutil.rmtree(run_dir, ignore_errors=True)
    return total, pre


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--starts", type=int, default=3)
    args = ap.parse_args()
    checks = check_ms(args.runs)
    imp = import_ms()
    total, pre = starts(args.starts)
    res = {"check_ms_median": round(statistics.median(checks), 1), "check_ms_max": round(max(checks), 1),
           "import_ms": round(imp, 1), "start_ms_median": round(statistics.median(total), 1),
           "start_preflight_ms_median": round(statistics.median(pre), 1) if pre else None}
    res["preflight_share_of_start"] = round((res["start_preflight_ms_median"] or 0) / res["start_ms_median"], 4)
    print(f"check against the simulator: median {res['check_ms_median']} ms, max {res['check_ms_max']} ms "
          f"({args.runs} runs); import {res['import_ms']} ms")
    print(f"start --detach to all READY: median {res['start_ms_median']} ms, of which the check "
          f"{res['start_preflight_ms_median']} ms ({res['preflight_share_of_start'] * 100:.1f} %)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()

"""Benchmark: supervisor recovery and hard-stop propagation, with real processes over ipc://.

* ``restart_to_ready_median_ms``: from ``kill -9`` of an actor to that actor READY again (goal ≤ 1000).
* ``hardstop_ack_median_ms``: from the ``hardstop`` command sent to every actor having acknowledged
  the new epoch (goal ≤ 50).

Timestamps are ``time.monotonic_ns()`` taken here and in the supervisor (one clock per host).
Run: ``python -m bench.supervisor [--kills N] [--hardstops N]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hip3.config import load_config
from hip3.runtime.percentiles import percentile_round

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import supervisor as cli
from hip3.ops import ctl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=15)
    ap.add_argument("--hardstops", type=int, default=30)
    args = ap.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="h3bench", dir="/tmp"))
    cfg_path = run_dir / "bench.toml"
    cfg_path.write_text(f'run_dir = "{run_dir}"\nmode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n'
                        "[logging]\nstderr = false\n[supervisor]\nmax_restarts = 100\n"
                        # Short enough that 100 restarts fit in the period (the config refuses a restart
                        # limit that could never trip); a few kills per actor never reach it.
                        "restart_backoff_max_ms = 200\n")
    os.environ.pop("HIP3_RUN_DIR", None)
    cfg = load_config(str(cfg_path))
    if cli.main(["start", "--detach", "--config", str(cfg_path)]) != 0:
        raise SystemExit("could not start hip3")

    def status() -> dict[str, Any]:
        return ctl.request(cfg, {"cmd": "status"})

    restart_ms: list[float] = []
    hs_ms: list[float] = []
    try:
        names = [a["name"] for a in status()["actors"]]
        for i in range(args.kills):
            name = names[i % len(names)]
            victim = next(a for a in status()["actors"] if a["name"] == name)
            t0 = time.monotonic_ns()
            os.kill(victim["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                a = next(x for x in status()["actors"] if x["name"] == name)
                if a["ready"] and a["pid"] != victim["pid"] and a["ready_since_ns"]:
                    restart_ms.append((a["ready_since_ns"] - t0) / 1e6)
                    break
                time.sleep(0.005)
            else:
                raise SystemExit(f"{name} did not come back READY within 10 s")
            time.sleep(0.3)  # let heartbeats settle before the next kill
        for i in range(args.hardstops):
            cmd = {"cmd": "hardstop", "reason": f"bench {i}"}
            t0 = time.monotonic_ns()
            epoch = ctl.request(cfg, cmd)["hard_stop"]["epoch"]
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                acts = status()["actors"]
                if all(a["hardstop_epoch_acked"] >= epoch for a in acts):
                    hs_ms.append((max(a["hardstop_acked_ns"] for a in acts) - t0) / 1e6)
                    break
                time.sleep(0.002)
            else:
                raise SystemExit("hard stop not acknowledged by every actor within 5 s")
            ctl.request(cfg, {"cmd": "reset-hardstop"})
            time.sleep(0.05)
    finally:
        cli.main(["stop", "--config", str(cfg_path)])
        shutil.rmtree(run_dir, ignore_errors=True)

    result = {
        "restart_to_ready_median_ms": round(statistics.median(restart_ms), 1),
        "restart_to_ready_p90_ms": round(percentile_round(restart_ms, 0.9), 1),
        "restart_to_ready_max_ms": round(max(restart_ms), 1),
        "hardstop_ack_median_ms": round(statistics.median(hs_ms), 2),
        "hardstop_ack_p90_ms": round(percentile_round(hs_ms, 0.9), 2),
        "hardstop_ack_max_ms": round(max(hs_ms), 2),
        "kills": len(restart_ms),
        "hardstops": len(hs_ms),
        "cpus": os.cpu_count(),
    }
    print(f"kill -9 -> READY: median {result['restart_to_ready_median_ms']} ms, "
          f"p90 {result['restart_to_ready_p90_ms']} ms over {len(restart_ms)} kills")
    print(f"hardstop -> all acked: median {result['hardstop_ack_median_ms']} ms, "
          f"p90 {result['hardstop_ack_p90_ms']} ms over {len(hs_ms)} latches")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

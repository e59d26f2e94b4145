"""How long positions sit unwatched when the supervisor dies and the service manager restarts it.

Run: ``python -m bench.supervisor_death [--cycles N] [--restart-sec 0.1,1] [--config default|faults]``.

A paper session with the simulator as its own process (it outlives the supervisor, as an exchange does),
the supervisor run as ``deploy/hip3.service`` runs it (the ``hip3`` console script under a restart loop
with the unit's semantics: ``tests.faults.restart_loop``). Each cycle waits for a position that hip3's
ledger says is its own, ``kill -9``s the supervisor while the exchange holds it, and times (seconds after
the kill): every actor gone (they follow their supervisor), the restart (cgroup empty + ``RestartSec``),
the restarted supervisor's ``READY=1``, the restarted exit watcher READY (**exits resume**: it gets the
tracker's synced positions as it subscribes) and the fill that closed the position.

``--restart-sec``: systemd's default ``RestartSec`` is 100 ms; the unit's is read from the unit file when
``unit`` is given (the default list is ``0.1,unit``). ``--config default``: configs/default.toml's settings
(the shipped timeouts and strategy; its simulator model); ``faults``: the fault tests' short timeouts and
livelier market. Figures on a shared machine are indicative. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from hip3.config import DEFAULT_CONFIG
from tests.faults.restart_loop import (
    HIP3,
    SIM_MODEL,
    Kill,
    ServiceRun,
    seconds,
    start_simulator,
    unit_settings,
)

KEYS = ("actors_gone", "restarted", "ready_notified", "exits_resumed", "closed")


def default_config(run_dir: Path, url: str, account: str) -> tuple[str, str]:
    """(hip3's config, the simulator's [sim] table): configs/default.toml pointed at the simulator."""
    text = DEFAULT_CONFIG.read_text()
    text = re.sub(r'^run_dir = .*$', f'run_dir = "{run_dir}"', text, count=1, flags=re.M)
    text = text.replace('network = "sim"\n', f'network = "sim"\nrest_url = "{url}"\naccount_address = "{account}"\n', 1)
    text += "\n[logging]\nstderr = false\n"
    sim = tomllib.loads(DEFAULT_CONFIG.read_text()).get("sim", {})
    sim_toml = "".join(f"[sim.{table}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
                       for table, values in sim.items() if isinstance(values, dict))
    return text, sim_toml


def run(restart_sec: float, cycles: int, config: str) -> list[Kill]:
    run_dir = Path(tempfile.mkdtemp(prefix="h3d", dir="/tmp"))
    sim = None
    service = None
    kills: list[Kill] = []
    try:
        if config == "default":
            _, sim_toml = default_config(run_dir, "", "")
            sim = start_simulator(run_dir, sim_toml)
            text, _ = default_config(run_dir, sim.url, sim.account)
            service = ServiceRun(run_dir, sim, restart_sec, text)
        else:
            sim = start_simulator(run_dir, SIM_MODEL)
            service = ServiceRun(run_dir, sim, restart_sec)
        service.start()
        for i in range(cycles):
            k = service.kill_with_position(timeout_s=120)
            kills.append(k)
            f = k.figures()
            print(f"  RestartSec {restart_sec:g} s, kill {i + 1}: {k.coin} {k.size:+g} unwatched "
                  f"{f['exits_resumed']:.2f} s (actors gone {f['actors_gone']:.2f}, restarted {f['restarted']:.2f}, "
                  f"READY=1 {f['ready_notified']:.2f}, closed {f['closed']:.2f})", flush=True)
        problems = service.s.doubled_cloids()
        if problems:
            raise RuntimeError(f"client order ids accepted twice: {problems}")
    finally:
        if service is not None:
            service.close()
        if sim is not None:
            sim.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    return kills


def summary(kills: list[Kill]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(kills)}
    for key in KEYS:
        values = [k.figures()[key] for k in kills]
        out[f"{key}_s_median"] = round(statistics.median(values), 2)
        out[f"{key}_s_max"] = round(max(values), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.supervisor_death", description=__doc__.split("\n")[0])
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--restart-sec", default="0.1,unit", help="comma-separated seconds, or 'unit' (the unit's)")
    p.add_argument("--config", choices=("default", "faults"), default="default")
    args = p.parse_args()
    if not HIP3.exists():
        raise SystemExit("no hip3 console script: pip install -e .")
    unit_s = seconds(unit_settings()["RestartSec"][-1])
    results: dict[str, Any] = {"config": args.config, "unit_restart_sec": unit_s}
    for item in args.restart_sec.split(","):
        sec = unit_s if item.strip() == "unit" else float(item)
        print(f"RestartSec {sec:g} s, {args.cycles} kills ({args.config} settings):", flush=True)
        s = summary(run(sec, args.cycles, args.config))
        print(f"  unwatched (kill -> exits resume): median {s['exits_resumed_s_median']} s, max "
              f"{s['exits_resumed_s_max']} s; position closed: median {s['closed_s_median']} s", flush=True)
        results[f"restart_sec_{sec:g}"] = s
    print(json.dumps(results))


if __name__ == "__main__":
    main()

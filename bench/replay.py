"""Replay speed: a recorded paper session replayed through the actor graph, against the time it lasted.

Records ``--seconds`` of a paper session (the inproc graph, all five actors, against the simulator with
the default config's markets and market model: random oracle walk and jumps, makers 2.5 s late), then
replays the recording twice (``hip3.replay``). ``speed_x`` = recorded span / replay wall time; the two
replays' trades must be equal (``deterministic``). Live and replay trades are also compared, but this
session is not paced for equality (the model changes the book every few ms across 8 markets), so
``live_equal`` is informative only; tests/replay has the paced comparison.

Run: ``python -m bench.replay [--seconds 20]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import tempfile
import time
import tomllib
from decimal import Decimal
from pathlib import Path

from eth_account import Account

from hip3.config import DEFAULT_CONFIG, parse_config
from hip3.journal.trades import TradeLog
from hip3.replay.driver import replay
from hip3.replay.rotation import read_recording
from hip3.runtime.bus import Bus
from hip3.runtime.inproc import inproc_graph
from hip3.runtime.secrets import SigningKey
from hip3.sim.app import SimServer
from hip3.sim.params import SimParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    default = tomllib.loads(DEFAULT_CONFIG.read_text())
    markets = [m["coin"] for m in default["markets"]]
    key = "0x" + secrets.token_hex(32)
    account = Account.from_key(key).address.lower()
    d = Path(tempfile.mkdtemp(prefix="h3bre", dir="/tmp"))
    try:
        sim = SimServer(SimParams.from_dict(default["sim"]), seed=3, funds={account: Decimal(100_000)})
        sim.start()
        text = (f'run_dir = "{d / "live"}"\nmode = "paper"\n[exchange]\nnetwork = "sim"\nrest_url = "{sim.url}"\n'
                f'account_address = "{account}"\n[bus]\ntransport = "inproc"\n[logging]\nstderr = false\n'
                '[supervisor]\nactors = ["feed", "position_tracker", "executor", "detector", "exit_watcher"]\n'
                '[feed]\nrecord_path = "frames.rec"\n' + "".join(f'[[markets]]\ncoin = "{m}"\n' for m in markets))
        cfg = parse_config(text, "bench.toml")
        live = TradeLog()
        try:
            with inproc_graph(cfg, signing_key=SigningKey(key)) as run:
                bus = Bus(cfg, "bench", context=run.context)
                tap = bus.subscriber(["exec"])
                if not run.wait_for(lambda s: s.all_ready(), 30):
                    raise SystemExit("the graph did not become READY")
                end = time.monotonic() + args.seconds
                while time.monotonic() < end:
                    if tap.sock.poll(50):
                        for m in tap.drain():
                            live.on_message(m)
                bus.close()
        finally:
            sim.stop()
        path = d / "live" / "frames.rec"  # its parts and index (zstd, the default)
        rec = read_recording(path)
        size = sum(p.stat().st_size for p in (d / "live").glob("frames*.rec*"))
        first = replay(path, cfg, d / "r1")
        second = replay(path, cfg, d / "r2")
        s = first.summary()
        print(f"recorded {s['recorded_span_s']} s, {s['frames']} frames ({size} bytes compressed, "
              f"{len(rec.header['markets'])} markets); live trades {len(live.trades)}")
        for r in (first, second):
            print(f"replay: {r.wall_s:.2f} s wall, {r.span_s / r.wall_s:.1f}x real time, {len(r.trades.trades)} "
                  f"trades, {r.settles} settles, {r.rounds} rounds")
        print(json.dumps({"recorded_s": s["recorded_span_s"], "frames": s["frames"],
                          "replay_wall_s": round(first.wall_s, 3), "speed_x": round(first.span_s / first.wall_s, 1),
                          "frames_per_s": round(first.frames / first.wall_s),
                          "trades": len(first.trades.trades), "live_trades": len(live.trades),
                          "deterministic": first.trades.keys() == second.trades.keys(),
                          "live_equal": first.trades.keys() == live.keys(), "cpus": os.cpu_count()}))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

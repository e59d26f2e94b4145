"""A recording made by the simulator's market model alone: no actors, no network, virtual time.

Minutes of market data in a fraction of a second, to try ``replay``, ``report`` and ``optimize`` without a
live session, and for tests and benchmarks. The frames are the simulator's own publishing (``SimCore``:
``bbo`` when the top changed, ``l2Book`` at most every ``l2_min_interval_ms``, ``activeAssetCtx`` when the
context changed) after every model tick, stamped with the tick's virtual time; the header is what the feed
writes (the dex, its universe in asset-id order, the markets). What it is not: a live market. The model's
oracle walk, jumps and lagging makers are the simulator's (``hip3.sim.model``), not the exchange's.

    python -m hip3.sim.synth OUT.rec.zst [--seconds 300] [--seed 1] [--markets xyz:GOLD,xyz:SILVER]
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hip3.replay.recording import FrameRecorder
from hip3.sim.engine import Engine
from hip3.sim.params import SimParams
from hip3.sim.server import SimCore

START_WALL_NS = 1_767_268_800_000_000_000  # 2026-01-01 12:00 UTC: a fixed start keeps a seed's file identical
START_MONO_NS = 1_000_000_000_000
_CHANNELS = ("bbo", "l2Book", "activeAssetCtx")


class _Collector(SimCore):
    """``SimCore`` whose subscribers are the recording: every frame it would send is kept."""

    def __init__(self, params: SimParams, engine: Engine, clock: Callable[[], int], coins: Sequence[str]) -> None:
        super().__init__(params, engine, clock)
        marker: Any = object()  # publish() only asks whether a channel has subscribers
        self.subscribers = {f"{ch}:{c}": {marker} for ch in _CHANNELS for c in coins}
        self.out: list[bytes] = []

    def _fan_out(self, channel: str, key: str, payload: bytes | Callable[[], bytes]) -> None:
        if key in self.subscribers:
            self.out.append(payload() if callable(payload) else payload)


def synth_recording(path: Path, params: SimParams, coins: Sequence[str], seconds: float, seed: int,
                    zstd_level: int | None = 3, start_wall_ns: int = START_WALL_NS) -> int:
    """Write ``seconds`` of the model's market for ``coins`` to ``path``; returns the number of frames."""
    known = {m.name for m in params.markets}
    missing = [c for c in coins if c not in known]
    if missing:
        raise ValueError(f"not a simulated market: {', '.join(missing)} (known: {', '.join(sorted(known))})")
    now_ms = start_wall_ns // 1_000_000
    engine = Engine(params, seed, now_ms)
    core = _Collector(params, engine, lambda: now_ms, coins)
    header = {"started_wall_ns": start_wall_ns, "started_mono_ns": START_MONO_NS, "markets": list(coins),
              "url": "synthetic", "dex": params.dex, "dex_index": 1, "synthetic_seed": seed,
              "universe": [[m.name, m.sz_decimals, m.max_leverage, False] for m in params.markets]}
    rec = FrameRecorder(path, header, START_MONO_NS, zstd_level)
    t0_ms = now_ms
    end_ms = t0_ms + int(seconds * 1000)
    tick = params.model.tick_ms
    try:
        while True:
            core.publish()
            if core.out:
                t_ns = START_MONO_NS + (now_ms - t0_ms) * 1_000_000
                rec.write_frames((t_ns, raw) for raw in core.out)
                core.out.clear()
            if now_ms >= end_ms:
                break
            now_ms += tick
            engine.tick(now_ms)
    finally:
        rec.close()
    return rec.frames


def default_params() -> SimParams:
    """The default config's simulator (``configs/default.toml [sim]``)."""
    from hip3.config import DEFAULT_CONFIG

    raw = tomllib.loads(DEFAULT_CONFIG.read_text()).get("sim", {})
    return SimParams.from_dict(raw) if raw else SimParams()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hip3.sim.synth", description=__doc__.split("\n")[0])
    ap.add_argument("out", help="the recording to write (.rec.zst compressed, .rec not)")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--markets", default="xyz:GOLD,xyz:SILVER", help="comma-separated simulated markets")
    args = ap.parse_args(argv)
    out = Path(args.out)
    n = synth_recording(out, default_params(), [c.strip() for c in args.markets.split(",") if c.strip()],
                        args.seconds, args.seed, zstd_level=3 if out.name.endswith(".zst") else None)
    print(f"wrote {out}: {n} frames, {args.seconds:g} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

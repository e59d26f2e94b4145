"""Benchmark: exchange frame bytes → ``hip3.messages.Bbo`` / ``AssetCtx`` through ``FrameDecoder``.

Run: ``python -m bench.decode``. The last line is one JSON object with ``bbo_decode_ns`` and
``ctx_decode_ns`` (medians), plus the stdlib ``json.loads`` baseline measured in the same run.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable

from hip3.hyperliquid.frame_decoder import FrameDecoder
from hip3.messages import AssetCtx, Bbo

BBO = (
    b'{"channel":"bbo","data":{"coin":"xyz:TSLA","time":1769594065851,'
    b'"bbo":[{"px":"431.02","sz":"12.5","n":3},{"px":"431.25","sz":"4.1","n":1}]}}'
)
CTX = (
    b'{"channel":"activeAssetCtx","data":{"coin":"xyz:TSLA","ctx":{"funding":"0.0000125",'
    b'"openInterest":"12.208","prevDayPx":"447.49","dayNtlVlm":"2192.853","premium":null,'
    b'"oraclePx":"450.78","markPx":"465.13","midPx":"464.92","impactPxs":null,"dayBaseVlm":"0.0"}}}'
)


def _per_call_ns(fn: Callable[[], object], batch: int = 2000, rounds: int = 15) -> list[float]:
    for _ in range(batch):
        fn()
    out: list[float] = []
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                fn()
            out.append((time.perf_counter_ns() - t0) / batch)
    finally:
        gc.enable()
    return out


def _baseline_bbo() -> Bbo:
    d = json.loads(BBO)["data"]
    bid, ask = d["bbo"]
    return Bbo(
        coin=d["coin"],
        bid_px=float(bid["px"]),
        bid_sz=float(bid["sz"]),
        ask_px=float(ask["px"]),
        ask_sz=float(ask["sz"]),
        exch_ms=d["time"],
        recv_ns=1,
    )


def main() -> None:
    dec = FrameDecoder()
    assert isinstance(dec.decode_market(BBO, 1), Bbo)
    assert isinstance(dec.decode_market(CTX, 1), AssetCtx)
    bbo = statistics.median(_per_call_ns(lambda: dec.decode_market(BBO, 1)))
    ctx = statistics.median(_per_call_ns(lambda: dec.decode_market(CTX, 1)))
    base = statistics.median(_per_call_ns(_baseline_bbo))
    print(f"bbo frame -> Bbo (msgspec lax decode + checks + Struct): {bbo:.0f} ns")
    print(f"activeAssetCtx frame -> AssetCtx:                      {ctx:.0f} ns")
    print(f"baseline json.loads + float() -> Bbo:                   {base:.0f} ns ({base / bbo:.1f}x slower)")
    print(json.dumps({"bbo_decode_ns": round(bbo), "ctx_decode_ns": round(ctx), "stdlib_bbo_baseline_ns": round(base)}))


if __name__ == "__main__":
    main()

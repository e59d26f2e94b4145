"""Benchmark: frames per second the simulator publishes to one WebSocket subscriber while matching orders.

The simulator runs as its own process (``python -m hip3.sim``) with an accelerated market model (every
market re-quotes every 1 ms tick, oracle every 5 ms, l2Book unthrottled). One websocket-client connection
subscribes to bbo, l2Book and activeAssetCtx of every market, allMids and the user's orderUpdates and
userFills, and posts a signed IOC order every ``ORDER_EVERY`` frames on the same connection (alternating
buy/sell so that the orders really match). Frames are counted for ``SECONDS`` after a warm-up.

Last line: ``{"frames_per_s": ..., "orders_per_s": ..., ...}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import websocket

from hip3.hyperliquid.signing import Signer
from hip3.hyperliquid.wire import order_action, order_wire, round_price
from hip3.sim.params import DEFAULT_MARKETS

SECONDS = 5.0
WARMUP = 1.0
ORDER_EVERY = 200
KEY = "0x" + "42" * 32

CONFIG = """
[sim]
l2_min_interval_ms = 0
[sim.model]
tick_ms = 1
oracle_interval_ms = 5
refresh_ms = 1
maker_lag_ms = 20
jump_prob = 0.05
"""


def main() -> None:
    signer = Signer(KEY)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(CONFIG)
        env = {**os.environ, "PYTHONPATH": str(root)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hip3.sim",
                "--port",
                "0",
                "--config",
                str(cfg),
                "--seed",
                "1",
                "--fund",
                f"{signer.address}:10000000",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            port = int(line.strip().split("=")[1])
            print(f"simulator ready on port {port} ({len(DEFAULT_MARKETS)} markets, tick 1 ms)")
            result = run_client(port, signer)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"frames received: {result['frames']} in {result['seconds']:.2f} s")
    print(
        f"frames/s: {result['frames_per_s']:.0f}   orders/s: {result['orders_per_s']:.0f}   "
        f"fill frames: {result['fill_frames']}   order errors: {result['order_errors']}"
    )
    print(json.dumps(result))


def run_client(port: int, signer: Signer) -> dict[str, float]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10, skip_utf8_validation=True)
    ws.recv()  # greeting
    for spec in DEFAULT_MARKETS:
        for t in ("bbo", "l2Book", "activeAssetCtx"):
            ws.send(json.dumps({"method": "subscribe", "subscription": {"type": t, "coin": spec.name}}))
    ws.send(json.dumps({"method": "subscribe", "subscription": {"type": "allMids", "dex": "xyz"}}))
    for t in ("orderUpdates", "userFills"):
        ws.send(json.dumps({"method": "subscribe", "subscription": {"type": t, "user": signer.address}}))
    tsla = next(i for i, s in enumerate(DEFAULT_MARKETS) if s.name == "xyz:TSLA")
    spec = DEFAULT_MARKETS[tsla]
    start_px = Decimal(str(spec.start_px))
    buy_px = round_price(start_px * Decimal("1.2"), spec.sz_decimals, True)
    sell_px = round_price(start_px * Decimal("0.8"), spec.sz_decimals, False)
    nonce = int(time.time() * 1000)
    frames = orders = fill_frames = errors = 0
    t_start = time.monotonic() + WARMUP
    t_end = t_start + SECONDS
    counting = False
    recv = ws.recv
    while True:
        msg = recv()
        if not counting:
            if time.monotonic() >= t_start:
                counting, frames, orders, fill_frames, errors = True, 0, 0, 0, 0
            continue
        frames += 1
        if msg[12:21] == "userFills":
            fill_frames += 1
        elif msg[12:16] == "post" and '"error"' in msg:
            errors += 1
            if errors == 1:
                print("first order error:", msg[:300])
        if frames % ORDER_EVERY == 0:
            if time.monotonic() >= t_end:
                break
            nonce += 1
            is_buy = orders % 2 == 0
            wire = order_wire(
                110_000 + tsla, is_buy, buy_px if is_buy else sell_px, Decimal("0.05"), False, "Ioc"
            )
            action = order_action([wire])
            payload = {
                "action": action,
                "nonce": nonce,
                "signature": signer.sign_action(action, None, nonce, False),
                "vaultAddress": None,
            }
            ws.send(
                json.dumps({"method": "post", "id": nonce, "request": {"type": "action", "payload": payload}})
            )
            orders += 1
    elapsed = time.monotonic() - t_start
    ws.close()
    return {
        "frames_per_s": round(frames / elapsed, 1),
        "orders_per_s": round(orders / elapsed, 1),
        "frames": frames,
        "seconds": round(elapsed, 3),
        "fill_frames": fill_frames,
        "order_errors": errors,
        "markets": len(DEFAULT_MARKETS),
    }


if __name__ == "__main__":
    main()

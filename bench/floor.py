"""The floor for hip3's exit path in Python on this machine: a bare chain of three processes.

    server --WS frame--> [A] receive + decode --ZMQ--> [B] trivial check --ZMQ--> [C] sign + WS send

Latency is measured from A's receive (``time.monotonic_ns()`` right after ``recv``) to C's write of
the signed order frame (right after ``send``): the same two points as hip3's tick-to-trade. Nothing
else happens in these processes, so whatever hip3 adds on top is its own cost.

Run alone: ``python -m bench.floor [--rate 1000] [--seconds 10]`` (last line JSON).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import msgspec

from hip3.runtime.percentiles import percentile_round


class _Level(msgspec.Struct):
    px: str
    sz: str
    n: int


class _BboData(msgspec.Struct):
    coin: str
    time: int
    bbo: tuple[_Level | None, _Level | None]


class _BboFrame(msgspec.Struct):
    channel: str
    data: _BboData


class _Hop(msgspec.Struct, array_like=True):
    coin: str
    bid: float
    ask: float
    recv_ns: int


def _server(port_q: Any, rate: int, seconds: float, markets: int) -> None:
    """A WebSocket server that sends bbo frames at ``rate`` per second to its first client."""
    from websockets.sync.server import serve

    frames = [msgspec.json.encode({"channel": "bbo", "data": {"coin": f"xyz:M{i}", "time": 1,
                                                               "bbo": [{"px": "100.5", "sz": "3", "n": 1},
                                                                       {"px": "100.7", "sz": "2", "n": 1}]}})
              for i in range(markets)]

    def handler(ws: Any) -> None:
        if ws.request.path == "/orders":
            for _ in ws:  # the signer's frames: read and drop
                pass
            return
        period = 1.0 / rate
        n = int(rate * seconds)
        t0 = time.perf_counter()
        for i in range(n):
            target = t0 + i * period
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ws.send(frames[i % markets].decode())
        ws.close()

    with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port_q.put(server.socket.getsockname()[1])
        server.serve_forever()


def _stage_a(port: int, out_addr: str) -> None:
    import websocket
    import zmq

    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(out_addr)
    dec = msgspec.json.Decoder(_BboFrame)
    enc = msgspec.msgpack.Encoder()
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/md", skip_utf8_validation=True,
                                     enable_multithread=False)
    while True:
        try:
            raw = ws.recv()
        except Exception:
            break
        if not raw:
            break
        recv_ns = time.monotonic_ns()
        f = dec.decode(raw)
        bid, ask = f.data.bbo
        if bid is None or ask is None:
            continue
        push.send(enc.encode(_Hop(f.data.coin, float(bid.px), float(ask.px), recv_ns)))
    push.close()
    ctx.term()


def _stage_b(in_addr: str, out_addr: str, ready: Any) -> None:
    import zmq

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(in_addr)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(out_addr)
    dec = msgspec.msgpack.Decoder(_Hop)
    ready.set()
    while True:
        raw = pull.recv()
        if raw == b"stop":
            push.send(raw)
            break
        h = dec.decode(raw)
        if h.bid < h.ask:  # the trivial check
            push.send(raw)
    ctx.term()


def _stage_c(in_addr: str, port: int, result_q: Any, ready: Any) -> None:
    import websocket
    import zmq

    from hip3.hyperliquid import wire
    from hip3.hyperliquid.signing import Signer
    from hip3.hyperliquid.ws_framing import text_frame

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(in_addr)
    signer = Signer("0x" + "11" * 32)
    dec = msgspec.msgpack.Decoder(_Hop)
    enc = msgspec.json.Encoder()
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/orders", skip_utf8_validation=True)
    ready.set()
    from decimal import Decimal

    lat: list[int] = []
    nonce = int(time.time() * 1000)
    post_id = 0
    while True:
        raw = pull.recv()
        if raw == b"stop":
            break
        h = dec.decode(raw)
        nonce += 1
        post_id += 1
        action = wire.order_action([wire.order_wire(110000, False, Decimal(str(h.bid)), Decimal("1"), True, "Ioc",
                                                    wire.new_cloid())])
        sig = signer.sign_action(action, None, nonce, False, None)
        # The same send path as hip3's executor: one pre-built masked frame, one sendall.
        ws.sock.sendall(text_frame(enc.encode({"method": "post", "id": post_id, "request": {
            "type": "action", "payload": {"action": action, "nonce": nonce, "signature": sig}}})))
        lat.append(time.monotonic_ns() - h.recv_ns)
    ws.close()
    result_q.put(lat)
    ctx.term()


def run_floor(rate: int = 1000, seconds: float = 10.0, markets: int = 20, warmup_s: float = 1.0) -> dict[str, Any]:
    """Run the chain; returns p50/p99 (µs) of receive-to-send, warm-up excluded."""
    sp = mp.get_context("spawn")
    tmp = f"/tmp/h3floor-{os.getpid()}"
    a_to_b, b_to_c = f"ipc://{tmp}-ab", f"ipc://{tmp}-bc"
    port_q: Any = sp.Queue()
    result_q: Any = sp.Queue()
    b_ready, c_ready = sp.Event(), sp.Event()
    srv = sp.Process(target=_server, args=(port_q, rate, seconds + warmup_s, markets), daemon=True)
    srv.start()
    port = port_q.get(timeout=20)
    c = sp.Process(target=_stage_c, args=(b_to_c, port, result_q, c_ready), daemon=True)
    b = sp.Process(target=_stage_b, args=(a_to_b, b_to_c, b_ready), daemon=True)
    c.start()
    b.start()
    if not (b_ready.wait(30) and c_ready.wait(30)):
        raise RuntimeError("the floor chain's stages did not start")
    a = sp.Process(target=_stage_a, args=(port, a_to_b), daemon=True)
    a.start()
    a.join(seconds + warmup_s + 30)
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 1000)
    s.connect(a_to_b)
    s.send(b"stop")
    s.close()
    ctx.term()
    lat = result_q.get(timeout=30)
    for p in (b, c, srv):
        p.terminate()
        p.join(5)
    for suffix in ("-ab", "-bc"):
        try:
            os.unlink(tmp + suffix)
        except FileNotFoundError:
            pass
    skip = int(rate * warmup_s)
    us = sorted(x / 1000 for x in lat[skip:])
    if not us:
        raise RuntimeError("the floor chain measured nothing")
    return {"floor_p50_us": round(statistics.median(us), 1), "floor_p99_us": round(percentile_round(us, 0.99), 1),
            "floor_n": len(us)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    r = run_floor(args.rate, args.seconds)
    print(f"bare 3-process chain at {args.rate}/s: p50 {r['floor_p50_us']} µs, p99 {r['floor_p99_us']} µs "
          f"(n={r['floor_n']})")
    print(json.dumps(r))


if __name__ == "__main__":
    main()

"""Feed throughput: exchange frames from a local WebSocket server to typed messages on the bus.

Three processes on 127.0.0.1 (no internet):

* a minimal WebSocket server that acks the subscriptions, sends one ``activeAssetCtx`` per market,
  then blasts pre-built ``bbo`` frames as fast as the socket takes them;
* ONE feed process running the real feed actor (``actors.feed.Feed``: WsClient → ``poll_read`` →
  convert → ``Publisher.publish``) over ``ipc://`` under a temporary run directory, observe mode;
* a subscriber process on ``md`` that decodes and counts the ``Bbo`` messages and the sequence gaps.

``frames_per_s`` = Bbo messages received by the subscriber in a steady window / the window's length
(so a frame counts only once it was received, decoded, converted, published and delivered).

``--record``: the same run three times, without ``feed.record_path``, with it uncompressed
(``record_compression = "none"``; the raw-frame recording of ``hip3.replay.recording``) and with it
compressed (zstd, the default; ``hip3.replay.rotation``), for the recording's cost as ratios measured in one
invocation (``frames_per_s_recording``, ``recording_ratio``, ``recorded_bytes``; ``frames_per_s_recording_zstd``,
``recording_zstd_ratio``, ``recorded_bytes_zstd``, ``zstd_size_ratio``).

Run: ``python -m bench.feed [--seconds 5] [--markets 20] [--record]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import select
import shutil
import socket
import struct
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


# ------------------------------------------------------------------------------------------------
# The blasting WebSocket server
# ------------------------------------------------------------------------------------------------


def ws_frame(payload: bytes) -> bytes:
    """An unmasked server text frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


def bbo_payload(coin: str, i: int) -> bytes:
    bid = 100.0 + (i % 50) * 0.01
    return (
        f'{{"channel":"bbo","data":{{"coin":"{coin}","time":{1769594065851 + i},'
        f'"bbo":[{{"px":"{bid:.2f}","sz":"12.5","n":3}},{{"px":"{bid + 0.05:.2f}","sz":"4.1","n":1}}]}}}}'
    ).encode()


def ctx_payload(coin: str) -> bytes:
    return (
        f'{{"channel":"activeAssetCtx","data":{{"coin":"{coin}","ctx":{{"funding":"0.0000125",'
        f'"openInterest":"12.208","prevDayPx":"99.0","dayNtlVlm":"2192.853","premium":null,'
        f'"oraclePx":"100.02","markPx":"100.03","midPx":"100.02","impactPxs":null,"dayBaseVlm":"0.0"}}}}}}'
    ).encode()


def _read_client_frames(buf: bytearray) -> list[bytes]:
    """Pop complete (masked) client frames from ``buf``; returns their payloads."""
    out: list[bytes] = []
    while len(buf) >= 2:
        b1 = buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        masked = b1 & 0x80
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                break
            mask = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + n:
            break
        data = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        if masked:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        out.append(data)
    return out


def serve(port_out: Connection, coins: list[str], max_s: float) -> None:
    """Accept one client, ack its subscriptions, send ctx per coin, then blast bbo frames."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port_out.send(lsock.getsockname()[1])
    lsock.settimeout(max_s)
    conn, _ = lsock.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = b""
    while b"\r\n\r\n" not in req:
        req += conn.recv(4096)
    key = next(line.split(b":", 1)[1].strip() for line in req.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    blast = b"".join(ws_frame(bbo_payload(coins[i % len(coins)], i)) for i in range(4000))
    inbuf = bytearray()
    expected = 2 * len(coins)
    acked = 0
    end = time.monotonic() + max_s
    conn.setblocking(False)
    view = memoryview(blast)
    off = 0
    try:
        while time.monotonic() < end:
            r, w, _ = select.select([conn], [conn] if acked >= expected else [], [], 0.5)
            if r:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                inbuf += chunk
                for payload in _read_client_frames(inbuf):
                    try:
                        msg = json.loads(payload)
                    except ValueError:
                        continue
                    if msg.get("method") == "subscribe":
                        sub = msg["subscription"]
                        ack = {"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": sub}}
                        out = ws_frame(json.dumps(ack).encode())
                        if sub.get("type") == "activeAssetCtx":
                            out += ws_frame(ctx_payload(sub["coin"]))
                        conn.setblocking(True)
                        conn.sendall(out)
                        conn.setblocking(False)
                        acked += 1
                    elif msg.get("method") == "ping":
                        conn.setblocking(True)
                        conn.sendall(ws_frame(b'{"channel":"pong"}'))
                        conn.setblocking(False)
            if w:
                try:
                    sent = conn.send(view[off:])
                except BlockingIOError:
                    continue
                off += sent
                if off >= len(blast):
                    off = 0
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        conn.close()
        lsock.close()


# ------------------------------------------------------------------------------------------------
# The feed process and the counting subscriber
# ------------------------------------------------------------------------------------------------


def _config_text(run_dir: Path, ws_url: str, coins: list[str]) -> str:
    markets = "".join(f'[[markets]]\ncoin = "{c}"\n' for c in coins)
    return (f'run_dir = "{run_dir}"\nmode = "observe"\n[exchange]\nnetwork = "sim"\n'
            f'rest_url = "http://127.0.0.1:9"\nws_url = "{ws_url}"\n[logging]\nstderr = false\n'
            f'level = "warning"\n' + markets)


def run_feed(config_text: str) -> None:
    import actors.feed
    from actors.feed import Feed
    from hip3.config import parse_config
    from hip3.hyperliquid.assets import AssetRegistry, AssetSpec, asset_id
    from hip3.runtime.actor import install_signal_handlers

    cfg = parse_config(config_text, "bench.toml")
    if cfg.feed.record_path:  # the recording's header wants the dex's universe: this server has no REST
        specs = [AssetSpec(m.coin, asset_id(1, i), 2, 10) for i, m in enumerate(cfg.markets)]
        actors.feed.load_registry = lambda _cfg, _log: AssetRegistry("xyz", 1, specs)  # type: ignore[assignment]
    actor = Feed(cfg, supervised=False)
    install_signal_handlers(actor)
    actor.run()


def count(config_text: str, warmup_s: float, seconds: float, out: Connection) -> None:
    import zmq

    from hip3.config import parse_config
    from hip3.messages import Bbo
    from hip3.runtime.bus import Bus

    cfg = parse_config(config_text, "bench.toml")
    bus = Bus(cfg, "bench")
    rcv = bus.subscriber(["md"])
    poller = zmq.Poller()
    poller.register(rcv.sock, zmq.POLLIN)
    n = 0
    first = 0.0
    deadline = time.monotonic() + 30.0
    # Wait for the stream to start, then let it warm up.
    while n == 0 and time.monotonic() < deadline:
        if poller.poll(100):
            for msg in rcv.drain():
                if type(msg) is Bbo:
                    n += 1
    if n == 0:
        out.send({"error": "no bbo received"})
        bus.close()
        return
    t_start = time.monotonic() + warmup_s
    while time.monotonic() < t_start:
        if poller.poll(100):
            for _msg in rcv.drain():
                pass
    gaps0 = rcv.gaps
    n = 0
    first = time.monotonic()
    end = first + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if poller.poll(100):
            for msg in rcv.drain(1000):
                if type(msg) is Bbo:
                    n += 1
    elapsed = time.monotonic() - first
    out.send({"received": n, "elapsed_s": elapsed, "gaps": rcv.gaps - gaps0})
    bus.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--markets", type=int, default=20)
    ap.add_argument("--record", action="store_true", help="also measure with feed.record_path set")
    args = ap.parse_args()
    res = _measure(args, record="")
    out = {"frames_per_s": round(res["fps"]), "received": res["received"], "seconds": round(res["elapsed_s"], 3),
           "seq_gaps": res["gaps"], "markets": args.markets, "cpus": os.cpu_count()}
    if args.record:
        rec = _measure(args, record="none")
        print(f"feed recording: {rec['fps']:.0f} frames/s with feed.record_path set, uncompressed "
              f"({rec['fps'] / res['fps']:.3f} of {res['fps']:.0f} without), {rec['recorded_bytes']} bytes recorded")
        out.update(frames_per_s_recording=round(rec["fps"]), recording_ratio=round(rec["fps"] / res["fps"], 3),
                   recorded_bytes=rec["recorded_bytes"])
        z = _measure(args, record="zstd")
        per_frame = rec["recorded_bytes"] / max(1, rec["received"])
        per_frame_z = z["recorded_bytes"] / max(1, z["received"])
        print(f"feed recording: {z['fps']:.0f} frames/s compressed with zstd ({z['fps'] / res['fps']:.3f} of "
              f"{res['fps']:.0f} without), {z['recorded_bytes']} bytes recorded, {per_frame_z:.1f} bytes a frame "
              f"against {per_frame:.1f} uncompressed")
        out.update(frames_per_s_recording_zstd=round(z["fps"]), recording_zstd_ratio=round(z["fps"] / res["fps"], 3),
                   recorded_bytes_zstd=z["recorded_bytes"],
                   zstd_size_ratio=round(per_frame / per_frame_z, 1) if per_frame_z else None)
    print(json.dumps(out))


def _measure(args: argparse.Namespace, record: str) -> dict[str, float]:
    """One run; ``record``: "" (no recording), "none" or "zstd" (its compression)."""
    coins = [f"xyz:M{i}" for i in range(args.markets)]
    ctx = multiprocessing.get_context("spawn")
    run_dir = Path(tempfile.mkdtemp(prefix="h3b", dir="/tmp"))
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        port_r, port_w = ctx.Pipe(duplex=False)
        server = ctx.Process(target=serve, args=(port_w, coins, args.warmup + args.seconds + 30.0), daemon=True)
        server.start()
        procs.append(server)
        port = port_r.recv()
        text = _config_text(run_dir, f"ws://127.0.0.1:{port}/ws", coins)
        if record:
            text += f'[feed]\nrecord_path = "frames.rec"\nrecord_compression = "{record}"\n'
        res_r, res_w = ctx.Pipe(duplex=False)
        counter = ctx.Process(target=count, args=(text, args.warmup, args.seconds, res_w), daemon=True)
        counter.start()
        procs.append(counter)
        time.sleep(0.3)  # the subscriber connects first (ipc connect before bind is fine, this is tidier)
        feed = ctx.Process(target=run_feed, args=(text,), daemon=True)
        feed.start()
        procs.append(feed)
        if not res_r.poll(args.warmup + args.seconds + 40.0):
            raise SystemExit("bench timed out")
        res = res_r.recv()
        if "error" in res:
            raise SystemExit(res["error"])
        res["fps"] = res["received"] / res["elapsed_s"]
        print(f"feed{' (recording)' if record else ''}: {res['received']} bbo frames in {res['elapsed_s']:.2f} s "
              f"delivered to a subscriber ({res['gaps']} seq gaps), {args.markets} markets")
        for p in reversed(procs):  # the feed flushes its recording at stop
            if p.is_alive() and p.pid is not None:
                p.terminate()
            p.join(5)
        res["recorded_bytes"] = sum(p.stat().st_size for p in run_dir.glob("frames*.rec*"))
        return res  # type: ignore[no-any-return]
    finally:
        for p in reversed(procs):
            if p.is_alive() and p.pid is not None:
                p.terminate()
            p.join(5)
            if p.is_alive():
                p.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

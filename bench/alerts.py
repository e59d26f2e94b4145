"""Benchmark: the supervisor's loop turn with alerts off, and with alerts on to a destination that answers,
hangs or refuses (apprise ``json://`` to 127.0.0.1).

The supervisor core runs in this process over inproc with stand-in actors (they heartbeat through the real
inbox); every turn an actor sends an ``Alert``, so the router and the notifier are busy all the time
(rate-limited per kind, queued, sent on their own thread). The figure that matters is the loop turn's time
(``Supervisor.step``): a destination that hangs must not show in it.

Run: ``python -m bench.alerts [--turns N] [--rate-limit-count N]``. The last line is JSON: per case
p50/p99/max turn in µs, and the ratio of each case's p99 to the case without alerts.
"""

from __future__ import annotations

import argparse
import http.server
import itertools
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from hip3.config import parse_config
from hip3.messages import Alert, Heartbeat, Ready
from hip3.runtime.bus import Bus
from hip3.runtime.logs import Log
from hip3.runtime.percentiles import percentile_round
from hip3.runtime.supervisor import Supervisor

ACTORS = ("feed", "position_tracker", "executor", "detector")


class _Handle:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sentinel = None

    def exitcode(self) -> int | None:
        return None

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def join(self, timeout: float) -> None:
        pass


class _Launcher:
    def __init__(self) -> None:
        self._pids = itertools.count(1000)

    def launch(self, name: str) -> _Handle:
        return _Handle(next(self._pids))

    def close(self) -> None:
        pass


def _serve(hang: bool, port_out: Any, count: Any) -> None:
    """The receiver, in its own process (it must not share this process's GIL with the loop measured)."""

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if hang:
                time.sleep(600)
            with count.get_lock():
                count.value += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    port_out.put(srv.server_address[1])
    srv.serve_forever()


class _Receiver:
    """127.0.0.1, port 0, another process: "ok" answers at once, "hang" never answers."""

    def __init__(self, hang: bool) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        self._count = ctx.Value("i", 0)
        self.proc = ctx.Process(target=_serve, args=(hang, q, self._count), daemon=True)
        self.proc.start()
        self.url = f"json://127.0.0.1:{q.get(timeout=30)}/hook"

    @property
    def count(self) -> int:
        return int(self._count.value)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.join(5)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def run_case(url: str | None, turns: int, rate: int) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix="h3ba", dir="/tmp"))
    names = ", ".join(f'"{a}"' for a in ACTORS)
    # ``--rate-limit-count 1000``: every turn's alert is queued (100 deep), the worst case for the loop.
    extra = f"[alerts]\nenabled = true\nsend_timeout_s = 10\nrate_limit_count = {rate}\n" if url else ""
    if url:
        os.environ["HIP3_ALERT_URLS"] = url
    cfg = parse_config(f'run_dir = "{run_dir}"\nmode = "paper"\n[exchange]\nnetwork = "sim"\n[[markets]]\n'
                       f'coin = "xyz:GOLD"\n[logging]\nstderr = false\n[bus]\ntransport = "inproc"\n'
                       f"[supervisor]\nactors = [{names}]\n{extra}", "bench.toml")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sup = Supervisor(cfg, _Launcher(), Log("bench"), context=ctx)
    bus = Bus(cfg, "actors", context=ctx, run_dir=run_dir)
    inbox = bus.pusher("inbox", immediate=False)
    try:
        for name in ACTORS:  # every actor launched and READY
            sup.step(0)
            slot = sup.slots[name]
            assert slot.pid is not None
            inbox.send(Ready(actor=name, pid=slot.pid, ready=True, detail="entries allowed"))
            sup.step(0)
        turn_us: list[float] = []
        for i in range(turns):
            if i % 50 == 0:
                for name, slot in sup.slots.items():
                    assert slot.pid is not None
                    inbox.send(Heartbeat(actor=name, pid=slot.pid, ready=True, hardstop_epoch=0, stats={}))
            # An alert every turn, from one of 20 kinds of text per actor: the notifier is never idle.
            actor = ACTORS[i % len(ACTORS)]
            inbox.send(Alert(level="warning", actor=actor, text=f"bench alert {i % 20} of {actor}"))
            t0 = time.perf_counter_ns()
            sup.step(0)
            turn_us.append((time.perf_counter_ns() - t0) / 1000)
        router = sup.notifier
        queued = router.notifier.sent + router.notifier.failed if router is not None else 0
        out = {"p50_us": round(percentile_round(turn_us, 0.5), 1), "p99_us": round(percentile_round(turn_us, 0.99), 1),
               "max_us": round(max(turn_us), 1), "turns": turns,
               "handled_by_sender": queued,
               "dropped": router.notifier.dropped_total if router is not None else 0}
    finally:
        t0 = time.monotonic()
        sup.shutdown()
        sup.close()  # the notifier waits at most 5 s for its queue
        out["close_s"] = round(time.monotonic() - t0, 2)
        bus.close()
        ctx.term()
        shutil.rmtree(run_dir, ignore_errors=True)
        os.environ.pop("HIP3_ALERT_URLS", None)
    return out


def main() -> None:
    import logging

    logging.getLogger("hip3").addHandler(logging.NullHandler())  # the supervisor's lines: nowhere
    logging.getLogger("hip3").propagate = False
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=3000)
    ap.add_argument("--rate-limit-count", type=int, default=3, help="[alerts] rate_limit_count (default: the "
                    "config's default; 1000 queues every alert)")
    args = ap.parse_args()
    rate = args.rate_limit_count
    results: dict[str, Any] = {}
    results["off"] = run_case(None, args.turns, rate)
    ok = _Receiver(hang=False)
    results["answers"] = run_case(ok.url, args.turns, rate)
    results["answers"]["received"] = ok.count
    ok.close()
    hang = _Receiver(hang=True)
    results["hangs"] = run_case(hang.url, args.turns, rate)
    hang.close()
    results["refuses"] = run_case(f"json://127.0.0.1:{_closed_port()}/hook", args.turns, rate)
    base = results["off"]["p99_us"]
    for name, r in results.items():
        r["p99_vs_off"] = round(r["p99_us"] / base, 2) if base else None
        print(f"{name:<8} turn p50 {r['p50_us']:>7} µs  p99 {r['p99_us']:>7} µs  max {r['max_us']:>8} µs  "
              f"sent/failed {r['handled_by_sender']:>4}  dropped {r['dropped']:>4}  close {r['close_s']} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

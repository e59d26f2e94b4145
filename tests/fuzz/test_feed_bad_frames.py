"""Bad frames end to end through the feed actor: its bad-frame counter (heartbeat stats) and its
``bad_frames`` log lines account for every bad frame sent, and it keeps running (READY, streaming, the
same connection).

Two sources: a scripted WebSocket server (127.0.0.1) that sends hypothesis-style damaged frames of every
kind, mixed with valid market data, and the simulator's own ``send_malformed`` and ``malformed_every``."""

from __future__ import annotations

import base64
import hashlib
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from eth_account import Account

import actors.feed
from actors.feed import Feed
from hip3.config import parse_config
from hip3.messages import Bbo
from tests.actors.market_helpers import Watch, running, wait_until
from tests.conftest import sim_config

from .conftest import tally
from .mutate import GREETING_FRAME, LogLines, dumps, known_bad_frame, server_frame, valid_frame

pytestmark = pytest.mark.timeout(60)
FAST = "[feed]\nreconnect_base_ms = 100\nreconnect_max_ms = 200\n"
_MAGIC = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ScriptedWs:
    """A one-connection WebSocket server: completes the handshake, sends ``frames``, then drains the
    client until stopped (never answers subscriptions: nothing is acked, so nothing is READY)."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sent = threading.Event()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def _serve(self) -> None:
        self.sock.settimeout(10)
        conn, _ = self.sock.accept()
        conn.settimeout(0.2)
        req = b""
        while b"\r\n\r\n" not in req:
            req += conn.recv(4096)
        key = next(line.split(b":", 1)[1].strip() for line in req.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + _MAGIC).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        conn.sendall(b"".join(server_frame(f) for f in self.frames))
        self.sent.set()
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        conn.close()

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self.sock.close()


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.term()


@pytest.fixture
def log_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # The feed writes its bad-frame summary at most every 10 s; every second here, so the lines add up.
    monkeypatch.setattr(actors.feed, "LOG_EVERY_S", 0.0)


def test_scripted_bad_frames_are_all_counted_and_logged(run_dir: Path, ctx: Any, log_every_time: None) -> None:
    rng = random.Random(2024)
    frames: list[bytes] = [GREETING_FRAME]  # not bad: the exchange's greeting
    kinds: Counter[str] = Counter()
    n_good = 0
    for _ in range(400):
        if rng.random() < 0.35:
            frames.append(dumps(valid_frame(rng, rng.choice(["bbo", "activeAssetCtx"]))))
            n_good += 1
        else:
            kind, raw = known_bad_frame(rng)
            kinds[kind] += 1
            frames.append(raw)
    n_bad = sum(kinds.values())
    server = ScriptedWs(frames)
    text = (f'run_dir = "{run_dir}"\nmode = "paper"\n[exchange]\nnetwork = "sim"\nrest_url = "http://127.0.0.1:9"\n'
            f'ws_url = "{server.url}"\naccount_address = "0x{"ab" * 20}"\n[bus]\ntransport = "inproc"\n'
            '[logging]\nstderr = false\n[[markets]]\ncoin = "xyz:GOLD"\n[[markets]]\ncoin = "xyz:SILVER"\n'
            '[[markets]]\ncoin = "xyz:TSLA"\n' + FAST)
    cfg = parse_config(text, "scripted.toml")
    md = Watch(cfg, ctx, ["md"])
    try:
        with LogLines("hip3.feed") as lines, running(Feed, cfg, ctx) as feed:
            assert server.sent.wait(10)
            assert wait_until(lambda: feed.stats.get("bad_frames", 0) >= n_bad, 10), (feed.stats, n_bad)
            time.sleep(1.2)  # one more periodic: nothing further is counted, and the log line is out
            assert feed.stats["bad_frames"] == n_bad, (feed.stats, kinds)
            assert feed.ws.decoder.counters["greeting"] == 1
            assert feed.ws.conn_id == 1 and feed.ws.state == "connected"  # bad frames never drop it
            logged = [r for r in lines.records if r.getMessage() == "bad_frames"]
            assert sum(r.fields["new"] for r in logged) == n_bad  # type: ignore[attr-defined]
            assert logged[-1].fields["bad"] == n_bad  # type: ignore[attr-defined]
            tally("feed actor: scripted bad frames", n_bad)
            # every good frame went through (published as Bbo / AssetCtx)
            assert wait_until(lambda: feed.core.n_bbo + feed.core.n_ctx == n_good, 5), (feed.core.n_bbo, n_good)
    finally:
        md.close()
        server.close()
    assert set(kinds) >= {"truncated", "non_json", "nan_px", "negative_sz", "wrong_type", "deep"}


def test_simulator_malformed_frames_are_counted_exactly_and_the_feed_keeps_streaming(
        sim_server: Any, paper_key: str, run_dir: Path, ctx: Any, log_every_time: None) -> None:
    address = str(Account.from_key(paper_key).address).lower()
    cfg = sim_config(run_dir, sim_server.url, address, extra=FAST)
    md = Watch(cfg, ctx, ["md"])
    try:
        with LogLines("hip3.feed") as lines, running(Feed, cfg, ctx) as feed:
            assert wait_until(lambda: feed.ready, 10), feed.ready_detail
            sent = 0
            for burst in (1, 13, 50, 200):
                assert sim_server.send_malformed(burst) == 1  # one connection: ours
                sent += burst
            assert wait_until(lambda: feed.stats.get("bad_frames", 0) >= sent, 10), feed.stats
            time.sleep(1.2)
            assert feed.stats["bad_frames"] == sent
            logged = [r for r in lines.records if r.getMessage() == "bad_frames"]
            assert sum(r.fields["new"] for r in logged) == sent  # type: ignore[attr-defined]
            tally("feed actor: simulator send_malformed frames", sent)
            # Then a stream with every 3rd market-data frame truncated: counted, still the same connection.
            sim_server.set_faults(malformed_every=3)
            assert wait_until(lambda: feed.stats.get("bad_frames", 0) >= sent + 20, 10), feed.stats
            sim_server.set_faults(malformed_every=0)
            tally("feed actor: simulator malformed_every=3 frames (at least)", feed.stats["bad_frames"] - sent)
            assert feed.ready and feed.ws.conn_id == 1 and feed.ws.reconnects == 0
            after_ns = time.monotonic_ns()
            assert md.wait(lambda m: isinstance(m, Bbo) and m.recv_ns > after_ns, 5) is not None
    finally:
        md.close()

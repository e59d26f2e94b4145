"""The recorder actor (actors/recorder.py).

* As a thread over inproc://: what the publishers send becomes journal rows; a malformed frame and an
  unexpected message are counted and nothing crashes; the hard-stop state is journaled; an unusable
  database leaves it READY and retrying, never crashing.
* As a real process (``python -m actors.recorder``) over ipc://: rows it committed survive ``kill -9``,
  the file passes ``PRAGMA integrity_check``, and a restarted recorder that is replayed the same state
  and messages adds no duplicate.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from actors.recorder import Recorder
from hip3.config import REPO_ROOT, Config
from hip3.journal.schema import SCHEMA_VERSION, journal_path, table_counts
from hip3.messages import Bbo, HardStopState, Heartbeat, Msg
from hip3.runtime.bus import Bus, Publisher
from tests.actors.helpers import wait
from tests.conftest import make_config, stop_process
from tests.test_journal_db import EXPECTED, closed, one_of_each, submitted, user_fill

pytestmark = pytest.mark.timeout(60)

ENDPOINTS = ("signals", "exec", "positions", "user")
# Which endpoint carries which message (as in production).
_ON = {"Signal": "signals", "SignalFollowup": "signals", "PositionClosed": "positions", "Fill": "positions",
       "PositionSnapshot": "positions", "UserFill": "user", "OrderUpdate": "user", "FeedState": "user"}


def endpoint_of(msg: Msg) -> str:
    return _ON.get(type(msg).__name__, "exec")


def rows(run_dir: Path) -> dict[str, int]:
    path = journal_path(run_dir)
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return table_counts(conn)
    except sqlite3.OperationalError:
        return {}  # the schema is not created yet
    finally:
        conn.close()


class Publishers:
    """The test side plays every publisher the recorder subscribes to (and the supervisor's inbox)."""

    def __init__(self, cfg: Config, context: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        self.bus = Bus(cfg, "test", context=context, run_dir=cfg.run_path)
        self.pubs: dict[str, Publisher] = {e: self.bus.publisher(e) for e in (*ENDPOINTS, "control")}
        self.inbox = self.bus.puller("inbox")
        self.heartbeats: list[Heartbeat] = []

    def joined(self) -> bool:
        """True once the recorder subscribed to every endpoint (call until it is)."""
        for p in self.pubs.values():
            p.on_subscription()
        return all(p.subscriptions > 0 for p in self.pubs.values())

    def send(self, msgs: list[Msg]) -> None:
        for m in msgs:
            self.pubs[endpoint_of(m)].publish(m)

    def stats(self) -> dict[str, int]:
        self.heartbeats.extend(m for m in self.inbox.drain() if isinstance(m, Heartbeat))
        return self.heartbeats[-1].stats if self.heartbeats else {}

    def close(self) -> None:
        self.bus.close()


# -------------------------------------------------------------------------------------------------
# The actor as a thread over inproc://
# -------------------------------------------------------------------------------------------------


@pytest.fixture
def inproc(run_dir: Path) -> Iterator[tuple[Config, zmq.Context[zmq.Socket[bytes]]]]:
    from hip3.runtime.bus import prepare_run_dir

    cfg = make_config(run_dir, '[bus]\ntransport = "inproc"\n[supervisor]\nheartbeat_interval_ms = 50\n'
                               '[recorder]\ncommit_interval_ms = 20\n')
    prepare_run_dir(run_dir)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield cfg, ctx
    ctx.term()


def _run(rec: Recorder) -> threading.Thread:
    t = threading.Thread(target=rec.run, daemon=True)
    t.start()
    return t


def test_recorder_journals_what_it_hears_and_counts_what_it_cannot(inproc: Any, run_dir: Path) -> None:
    cfg, ctx = inproc
    pubs = Publishers(cfg, ctx)  # bind first: inproc needs the binder before the connector
    rec = Recorder(cfg, context=ctx)
    thread = _run(rec)
    try:
        assert wait(pubs.joined, 5)
        pubs.send(one_of_each())
        pubs.pubs["exec"].sock.send(b"\x93not a message")  # malformed frame
        pubs.send([Bbo(coin="xyz:GOLD", bid_px=1.0, bid_sz=1.0, ask_px=2.0, ask_sz=1.0, exch_ms=1, recv_ns=1),
                   submitted("")])  # unexpected, malformed
        pubs.pubs["control"].publish(HardStopState(latched=True, reason="test latch", epoch=1, since_ms=1))
        assert wait(lambda: rows(run_dir).get("closes") == 1 and rows(run_dir).get("hardstop_states") == 2, 5), \
            rows(run_dir)
        c = rows(run_dir)
        # Every kind, plus the latch at start (epoch 0) and the new one (epoch 1).
        assert c == {**EXPECTED, "hardstop_states": 2}
        assert wait(lambda: pubs.stats().get("journal_unexpected") == 1, 5), pubs.stats()
        st = pubs.stats()
        assert st["journal_malformed"] == 1 and st["bad_messages"] == 1 and st["journal_errors"] == 0
        assert st["journal_rows"] == sum(c.values()) - 1  # the snapshot summary is an update, not a row
        assert thread.is_alive() and rec.ready
        pubs.send(one_of_each())  # the same again (a replay): nothing new
        pubs.send([closed(coin="xyz:SILVER")])
        assert wait(lambda: rows(run_dir).get("closes") == 2, 5)
        assert rows(run_dir) == {**EXPECTED, "hardstop_states": 2, "closes": 2}
    finally:
        rec.stop()
        thread.join(5)
        pubs.close()
    assert not thread.is_alive()


def test_unusable_database_leaves_the_recorder_ready_and_retrying(inproc: Any, run_dir: Path) -> None:
    cfg, ctx = inproc
    journal_path(run_dir).mkdir()  # a directory where the file should be: cannot be opened
    pubs = Publishers(cfg, ctx)
    rec = Recorder(cfg, context=ctx)
    thread = _run(rec)
    try:
        assert wait(pubs.joined, 5)
        pubs.send([closed(), user_fill(1, "0x1")])
        assert wait(lambda: pubs.stats().get("journal_errors", 0) >= 2, 5), pubs.stats()
        assert thread.is_alive() and rec.ready and "retrying" in rec.ready_detail
        assert pubs.stats()["journal_pending"] == 3  # the latch at start, the close, the fill
        journal_path(run_dir).rmdir()  # the operator fixes it: the kept rows are written
        pubs.send([closed(coin="xyz:SILVER")])
        assert wait(lambda: rows(run_dir).get("closes") == 2, 5), rows(run_dir)
        assert rows(run_dir)["user_fills"] == 1
        assert wait(lambda: "retrying" not in rec.ready_detail, 2)
    finally:
        rec.stop()
        thread.join(5)
        pubs.close()
    assert not thread.is_alive()


# -------------------------------------------------------------------------------------------------
# A real recorder process: kill -9
# -------------------------------------------------------------------------------------------------


def _spawn(config: Path, run_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("HIP3_RUN_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "actors.recorder", "--config", str(config), "--run-dir",
                             str(run_dir)], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _batch(start: int, n: int) -> list[Msg]:
    """n orders, each with a userFill (2n rows in orders/user_fills, 2n... events)."""
    out: list[Msg] = []
    for i in range(start, start + n):
        out.append(submitted(f"0x{i:032x}"))
        out.append(user_fill(i, f"0x{i:032x}"))
    return out


@pytest.mark.slow
def test_committed_rows_survive_kill_9_and_a_restart_adds_no_duplicates(run_dir: Path) -> None:
    cfg = make_config(run_dir, "[supervisor]\nheartbeat_interval_ms = 100\n[recorder]\ncommit_interval_ms = 20\n")
    config = run_dir / "hip3.toml"
    config.write_text(f'run_dir = "{run_dir}"\nmode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n'
                      "[logging]\nstderr = false\n[supervisor]\nheartbeat_interval_ms = 100\n"
                      "[recorder]\ncommit_interval_ms = 20\n")
    from hip3.runtime.bus import prepare_run_dir

    prepare_run_dir(run_dir)
    pubs = Publishers(cfg)
    proc = _spawn(config, run_dir)
    try:
        assert wait(pubs.joined, 15), "the recorder never subscribed"
        first = _batch(0, 200)
        pubs.send(first)
        assert wait(lambda: rows(run_dir).get("user_fills") == 200, 10), rows(run_dir)
        # Keep publishing; kill -9 while rows are being written.
        stop = threading.Event()
        sent = [200]

        def stream() -> None:
            i = 200
            while not stop.is_set() and i < 20_000:
                pubs.send(_batch(i, 20))
                i += 20
                sent[0] = i
                time.sleep(0.002)

        t = threading.Thread(target=stream, daemon=True)
        t.start()
        assert wait(lambda: rows(run_dir).get("user_fills", 0) >= 1000, 15)
        seen = rows(run_dir)["user_fills"]  # committed: a reader sees them
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        stop.set()
        t.join(5)
        conn = sqlite3.connect(journal_path(run_dir))
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        after_kill = table_counts(conn)
        conn.close()
        assert after_kill["user_fills"] >= seen and after_kill["orders"] >= seen
        assert after_kill["user_fills"] <= sent[0]

        # Restart: replay everything the first process heard (as XPUB state would be), plus 50 new orders.
        proc = _spawn(config, run_dir)
        for p in pubs.pubs.values():
            p.subscriptions = 0
        assert wait(pubs.joined, 15)
        pubs.send(first)
        pubs.send(_batch(0, sent[0]))
        pubs.send(_batch(50_000, 50))
        assert wait(lambda: rows(run_dir).get("user_fills") == sent[0] + 50, 20), (rows(run_dir), sent[0])
        time.sleep(0.2)
        final = rows(run_dir)
        assert final["user_fills"] == final["orders"] == sent[0] + 50
        assert final["order_events"] == final["orders"]  # one 'submitted' each, never twice
        assert wait(lambda: pubs.stats().get("journal_dupes", 0) >= after_kill["user_fills"], 5), pubs.stats()
    finally:
        stop_process(proc, 5)
        pubs.close()
    assert proc.returncode == 0  # the second one stopped cleanly on SIGTERM
    conn = sqlite3.connect(journal_path(run_dir))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert msgspec.json.decode(version) == SCHEMA_VERSION

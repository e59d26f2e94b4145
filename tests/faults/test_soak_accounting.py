"""The soak's "orders lost": read without a race, and a journaled order that never reached the simulator
explained from hip3's own files (killed before its frame, written into a dropped connection, refused
before the order log) or else counted lost. Crafted run directories, and one simulator for the dropped
connection as it happens."""

from __future__ import annotations

import json
import select
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hip3.hyperliquid.frames import PostResponse
from hip3.hyperliquid.signing import sign_l1_action
from hip3.hyperliquid.ws import WsClient
from hip3.sim.app import SimServer
from tests.faults.accounting import (
    DROPPED,
    KILLED,
    LOST,
    REFUSED,
    classify_unreceived,
    journal_lines,
    recorder_view,
    unreceived,
)
from tests.faults.session import Session

pytestmark = pytest.mark.timeout(30)

T0 = 1_795_000_000_000  # epoch ms of the first journal line


def _order(cloid: str) -> str:
    return json.dumps({"time_ms": T0, "nonce": T0, "action_type": "order", "cloids": [cloid],
                       "reduce_only": [False], "status": "ok"}) + "\n"


def test_an_order_journaled_between_the_two_reads_is_not_lost(run_dir: Path) -> None:
    """The session still trades while the soak counts: the journal line is written right before the
    frame, so the order log may show it a moment later. ``Session.lost_orders`` (order log read first)
    counts it lost; ``unreceived`` reads the journal first and waits for the order log."""
    s = Session(run_dir)
    (run_dir / "sim").mkdir()
    (run_dir / "sim" / "orders.jsonl").write_text(_order("0xa"))
    (run_dir / "sent_intents.log").write_text(f"{T0} i-a 0xa\n{T0 + 5} i-b 0xb\n{T0 + 6} i-torn 0x")

    def frame_arrives() -> None:
        with (run_dir / "sim" / "orders.jsonl").open("a") as f:
            f.write(_order("0xb"))

    assert "0xb" in s.lost_orders()  # the race: its frame is on its way (and the torn line counts too)
    timer = threading.Timer(0.3, frame_arrives)
    timer.start()
    try:
        lines, missing = unreceived(s, grace_s=5.0)
    finally:
        timer.join()
    assert [c for _, _, c in lines] == ["0xa", "0xb"]  # the torn last line is not an order
    assert missing == []
    (run_dir / "sent_intents.log").write_text(f"{T0} i-a 0xa\n{T0 + 5} i-b 0xb\n{T0 + 9} i-c 0xc\n")
    lines, missing = unreceived(s, grace_s=0.3)
    assert missing == [(T0 + 9, "i-c", "0xc")]


def _died(at_ms: int, exitcode: int = -9) -> dict[str, Any]:
    return {"ts": at_ms / 1000, "event": "actor_failed", "actor_": "executor", "exitcode": exitcode}


def _down(at_ms: int) -> dict[str, Any]:
    return {"ts": at_ms / 1000, "event": "ws disconnected: recv failed: connection closed by peer"}


def test_each_way_of_never_reaching_the_exchange_is_told_apart() -> None:
    lines = [
        (T0, "i1", "0x1"),            # received
        (T0 + 100, "i2", "0x2"),      # refused before the order log (hip3 saw the refusal)
        (T0 + 200, "i3", "0x3"),      # the executor killed before the frame: the last line of its life
        (T0 + 200, "i4", "0x4"),      # ... same batch
        (T0 + 1_000, "i5", "0x5"),    # the new executor; its connection dropped under the frame
        (T0 + 2_000, "i6", "0x6"),    # received (new connection)
        (T0 + 3_000, "i7", "0x7"),    # never received, nothing explains it
        (T0 + 4_000, "i8", "0x8"),    # a kill follows, but a later frame of the same life arrived
        (T0 + 4_100, "i9", "0x9"),    # received, before that death
        (T0 + 6_000, "i10", "0x10"),  # submitted, and its connection dropped only 1.5 s later
        (T0 + 12_000, "i11", "0x11"), # the executor died, but not of a SIGKILL (a crash: a problem)
        (T0 + 15_000, "i12", "0x12"), # refused by the client before anything left (not connected)
    ]
    received = {"0x1", "0x6", "0x9"}
    missing = [e for e in lines if e[2] not in received]
    supervisor = [_died(T0 + 250), _died(T0 + 4_300), _died(T0 + 12_050, exitcode=1)]
    executor = [_down(T0 + 1_020), _down(T0 + 7_500), {"ts": (T0 + 3_001) / 1000, "event": "ready"}]
    view = {
        "0x2": ["rejected: exchange: Action expired: expiresAfter 1 < 2"],
        "0x5": ["submitted: time_stop", "rejected: timeout"],  # a flatten: its reason rides along
        "0x7": ["submitted"],
        "0x8": ["submitted"],
        "0x10": ["submitted", "rejected: timeout"],
        "0x12": ["rejected: send_failed: post while not connected"],
    }
    why = classify_unreceived(lines, missing, executor, supervisor, view)
    assert why == {
        "0x2": REFUSED,
        "0x3": KILLED,
        "0x4": KILLED,
        "0x5": DROPPED,
        "0x7": LOST,
        "0x8": LOST,
        "0x10": LOST,
        "0x11": LOST,
        "0x12": REFUSED,
    }
    # A kill right after a line whose "submitted" was published: the frame had been written, so a death
    # cannot explain it; and a disconnect cannot explain an order never submitted.
    assert classify_unreceived(lines, [lines[2]], executor, supervisor, {"0x3": ["submitted"]}) == {"0x3": LOST}
    assert classify_unreceived(lines, [lines[4]], executor, supervisor, {}) == {"0x5": LOST}


def test_recorder_view_reads_the_order_events(run_dir: Path) -> None:
    assert recorder_view(run_dir) == {}
    db = sqlite3.connect(run_dir / "journal.sqlite")
    db.execute("CREATE TABLE order_events (order_key TEXT, event TEXT, reason TEXT, rec_ns INTEGER)")
    db.executemany("INSERT INTO order_events VALUES (?,?,?,?)",
                   [("0xa", "rejected", "timeout", 2), ("0xa", "submitted", "", 1), ("0xb", "filled", None, 3)])
    db.commit()
    db.close()
    assert recorder_view(run_dir) == {"0xa": ["submitted", "rejected: timeout"], "0xb": ["filled"]}
    assert journal_lines(run_dir) == []


def test_a_frame_written_into_a_connection_the_exchange_dropped_never_reaches_its_order_log(
    sim_server: SimServer, paper_key: str, run_dir: Path
) -> None:
    """``DROPPED`` as it happens: the simulator aborts the order-entry connection (the soak's ``drop``,
    and every ``rate_limit_http`` fault), the client writes its next frame before it has read the reset:
    the frame is lost in the kernel, the simulator logs nothing, and the post ends "disconnected"
    (outcome unknown, which the executor resolves at its post timeout; the cloid is never re-sent)."""
    log_path = run_dir / "orders.jsonl"
    c = WsClient(sim_server.ws_url, post_timeout_s=5.0, reconnect_base_s=60.0)
    got: list[PostResponse] = []

    def signed_noop() -> dict[str, Any]:
        nonce = int(time.time() * 1000)
        action: dict[str, object] = {"type": "noop"}
        return {"action": action, "nonce": nonce, "signature": sign_l1_action(paper_key, action, None, nonce, False)}

    def read_until(pred: Any, timeout_s: float = 5.0) -> bool:
        end = time.monotonic() + timeout_s
        while not pred() and time.monotonic() < end and c.fileno() >= 0:
            p = select.poll()  # not select(): a long test session can hold more than 1,024 descriptors
            p.register(c.fileno(), select.POLLIN)
            p.poll(50)
            c.poll_read()
        return bool(pred())

    try:
        assert c.connect()
        c.post("action", signed_noop(), got.append)  # the control: on a live connection it is logged
        assert read_until(lambda: bool(got)) and got[0].type == "action"
        assert len(log_path.read_text().splitlines()) == 1
        assert sim_server.drop() >= 1
        time.sleep(0.2)  # the reset has arrived; the client has not read since
        c.post("action", signed_noop(), got.append)
        read_until(lambda: c.state == "disconnected", 2.0)
        assert c.state == "disconnected"
        assert [r.type for r in got] == ["action", "disconnected"]
        time.sleep(0.2)
        assert len(log_path.read_text().splitlines()) == 1  # never reached the simulator
    finally:
        c.close()

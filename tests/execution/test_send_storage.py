"""The executor's send path on a full disk (no sockets: a scripted order-entry transport). Before the fix
the first nonce past the persisted ceiling raised an ``OSError`` out of the send path (and so did the
journal's append): the executor crash-looped and could not flatten. Now entries stop, with one line as
READY's detail (what ``status`` shows) and one critical alert, while flattens and the hard stop go on;
READY comes back once the disk takes writes again."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3 import clock
from hip3.hyperliquid.nonce import NonceManager
from hip3.messages import Alert, OrderRejected, OrderSubmitted, Ready
from tests.execution.helpers import GOLD, SILVER, entry, flatten, pos, snap
from tests.execution.send_helpers import NOW_MS, Rig, ScriptedWs, published
from tests.fs_faults import full_tmpfs


def _storage_rig(where: Path, ws: ScriptedWs, nonces: NonceManager | None = None) -> Rig:
    """The real signing path: nonces from a file in ``where`` (or the given manager), then the signer."""
    return Rig(where, ws, nonces=nonces or NonceManager(where / "nonce", reserve_ms=2000), stub_signing=False)


def _inbox(ex: Rig) -> list[object]:
    return list(ex.host.inbox)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[tuple[Rig, ScriptedWs, Path]]:
    where = tmp_path / "run"
    with full_tmpfs(where) as fill:
        ws = ScriptedWs([1])
        ex = _storage_rig(where, ws)
        ex.send.on_tick()  # reserves the nonce ceiling ahead of the clock, as the executor does
        fill()
        try:
            yield ex, ws, where
        finally:
            ex.close()


def _past_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock 3 s on, past the ceiling reserved 2 s ahead (a full disk for that long), without waiting."""
    real = clock.time_ns
    monkeypatch.setattr(clock, "time_ns", lambda: real() + 3_000_000_000)


def test_full_disk_stops_entries_and_flattens_still_leave(full_disk: tuple[Rig, ScriptedWs, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ex, ws, _ = full_disk
    _past_the_ceiling(monkeypatch)
    v, _ = ex.core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.accepted
    ex.send.pump()  # must not raise OSError out of the send path
    assert ws.posts == 0
    rejected = [m for m in published(ex) if isinstance(m, OrderRejected)]
    assert [(r.coin, r.benign) for r in rejected] == [(GOLD, True)] and "ENOSPC" in rejected[0].reason
    assert not ex.core.gates.pending.is_pending(GOLD)
    # One line: READY off with the reason, one critical alert.
    assert not ex.host.ready and ex.host.ready_detail.startswith("entries stopped: cannot write the nonce ceiling ")
    assert "(ENOSPC)" in ex.host.ready_detail
    alerts = [m for m in _inbox(ex) if isinstance(m, Alert)]
    assert [a.level for a in alerts] == ["critical"] and "flattens, cancels and the hard stop go on" in alerts[0].text
    # An entry intent is now refused at intake; a flatten leaves.
    ex.intake.on_intent(entry(SILVER))
    assert ex.host.stats.get("entry_rejected_not_ready") == 1
    ex.send.snapshot = snap(pos(GOLD))
    ex.intake.on_intent(flatten(GOLD))
    subs = [m for m in published(ex) if isinstance(m, OrderSubmitted)]
    assert [(s.coin, s.reduce_only) for s in subs] == [(GOLD, True)] and ws.posts == 1
    for _ in range(3):
        ex.send.on_tick()
        ex.send.sync_journal()
    assert len([m for m in _inbox(ex) if isinstance(m, Alert)]) == 1  # said once


def test_hard_stop_flattens_on_a_full_disk(full_disk: tuple[Rig, ScriptedWs, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ex, ws, _ = full_disk
    _past_the_ceiling(monkeypatch)
    ex.send.snapshot = snap(pos(GOLD, "2"), pos(SILVER, "3"))
    ex.flattener.start(1, time.monotonic_ns())
    ex.core.set_hard_stop(True, 0)
    ex.intake.hardstop_step()
    subs = [m for m in published(ex) if isinstance(m, OrderSubmitted)]
    assert sorted(s.coin for s in subs) == [GOLD, SILVER] and all(s.kind == "hardstop" for s in subs)
    assert ws.posts >= 1 and not ex.host.ready


def test_ready_comes_back_when_the_disk_takes_writes_again(full_disk: tuple[Rig, ScriptedWs, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ex, _, where = full_disk
    _past_the_ceiling(monkeypatch)
    ex.core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    ex.send.pump()
    assert not ex.host.ready
    ex.send.on_tick()
    assert not ex.host.ready  # still full
    for p in where.glob(".filler*"):
        p.unlink()
    ex.send.on_tick()
    assert ex.host.ready and ex.host.ready_detail == "order entry connected, positions synced"
    assert [r.ready for r in _inbox(ex) if isinstance(r, Ready)] == [False, True]
    v, _ = ex.core.submit_entry(entry(SILVER), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.accepted
    ex.send.pump()
    assert any(isinstance(m, OrderSubmitted) and m.coin == SILVER for m in published(ex))


def test_a_journal_the_disk_refuses_stops_entries_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = ScriptedWs([1])
    ex = _storage_rig(tmp_path, ws, NonceManager(None))  # the journal alone refuses
    real = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    ex.core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    ex.core.submit_flatten(flatten(SILVER), now_ns=0)
    ex.send.pump()
    subs = [m for m in published(ex) if isinstance(m, OrderSubmitted)]
    assert [(s.coin, s.reduce_only) for s in subs] == [(SILVER, True)]
    assert [m.coin for m in published(ex) if isinstance(m, OrderRejected)] == [GOLD]
    assert not ex.host.ready and "sent-intent journal" in ex.host.ready_detail
    monkeypatch.setattr(os, "write", real)
    ex.send.on_tick()
    assert ex.host.ready
    assert "f" in (tmp_path / "sent_intents.log").read_text()  # the flatten's line, written late
    ex.close()

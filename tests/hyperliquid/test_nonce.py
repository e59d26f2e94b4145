"""NonceManager: strictly increasing, persisted high-water mark, exchange window, single owner."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hip3.hyperliquid.nonce import DAY_MS, NonceError, NonceManager

T0 = 1_769_594_065_700


def test_monotonic_same_ms(tmp_path: Path) -> None:
    with NonceManager(tmp_path / "n") as nm:
        out = [nm.next(T0) for _ in range(100)]
    assert out == list(range(T0, T0 + 100))


def test_follows_clock_and_offset() -> None:
    clock = [T0]
    nm = NonceManager(None, clock_ms=lambda: clock[0])
    assert nm.next() == T0
    clock[0] += 50
    assert nm.next() == T0 + 50
    nm.set_server_offset(1000)
    assert nm.next() == T0 + 1050
    nm.set_server_offset(-5000)  # server behind: never go backwards
    assert nm.next() == T0 + 1051
    with pytest.raises(ValueError):
        NonceManager(None).next()


def test_restart_never_reuses(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "nonce"
    nm = NonceManager(path, reserve_ms=2000)
    issued = [nm.next(T0) for _ in range(10)]
    assert nm.fsyncs == 1  # one reservation covers the burst
    nm.close()  # a "crash": no final write
    nm2 = NonceManager(path)
    first = nm2.next(T0)  # the clock did not move (or went back)
    assert first > max(issued)
    assert first > T0 + 2000  # above the reserved ceiling
    assert nm2.next(T0 - 10_000) == first + 1
    nm2.close()


def test_reserve_ahead_keeps_the_fsync_off_next(tmp_path: Path) -> None:
    """Without it, orders seconds apart would pay the ceiling's two fsyncs inside next(), before their
    frame; a timer calling reserve_ahead keeps the ceiling ahead, so next() writes nothing."""
    path = tmp_path / "nonce"
    nm = NonceManager(path, reserve_ms=2000)
    now = T0
    issued = []
    for _ in range(20):  # one order every 3 s, the timer ticking every 100 ms in between
        for _ in range(30):
            now += 100
            nm.reserve_ahead(now)
        before = nm.fsyncs
        issued.append(nm.next(now))
        assert nm.fsyncs == before  # no write on the send path
    assert issued == sorted(set(issued))
    assert not nm.reserve_ahead(now)  # more than half a reserve left: nothing to write
    nm.close()
    nm2 = NonceManager(path)  # a crash right after: the next nonce is above everything issued
    assert nm2.next(now) > max(issued)
    nm2.close()


def test_without_reserve_ahead_sparse_orders_each_pay_an_fsync(tmp_path: Path) -> None:
    with NonceManager(tmp_path / "nonce", reserve_ms=2000) as nm:
        for i in range(5):
            nm.next(T0 + i * 3000)
        assert nm.fsyncs == 5


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-3000, 3000), st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_strictly_increasing_across_restarts(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, bool, bool]]
) -> None:
    path = tmp_path_factory.mktemp("n") / "nonce"
    nm = NonceManager(path, reserve_ms=500)
    now = T0
    prev = 0
    for delta, restart, reserve in steps:
        now += delta
        if reserve:
            nm.reserve_ahead(now)
        if restart:
            nm.close()
            nm = NonceManager(path, reserve_ms=500)
        n = nm.next(now)
        assert n > prev
        assert n >= now
        prev = n
    nm.close()


def test_window_refusal(tmp_path: Path) -> None:
    path = tmp_path / "nonce"
    path.write_text(str(T0 + 2 * DAY_MS))  # state far ahead (clock was wrong earlier)
    with NonceManager(path) as nm, pytest.raises(NonceError):
        nm.next(T0)
    nm = NonceManager(None)
    with pytest.raises(NonceError):
        nm.next(-3 * DAY_MS)  # bogus clock
    nm2 = NonceManager(None)
    nm2.next(T0)
    with pytest.raises(NonceError):
        nm2.next(T0 - DAY_MS)  # clock jumped back a day: last+1 is now too far ahead


def test_corrupt_state_refused(tmp_path: Path) -> None:
    path = tmp_path / "nonce"
    path.write_text("garbage")
    with pytest.raises(NonceError):
        NonceManager(path)


def test_single_owner(tmp_path: Path) -> None:
    path = tmp_path / "nonce"
    nm = NonceManager(path)
    with pytest.raises(NonceError):
        NonceManager(path)
    nm.close()
    NonceManager(path).close()


def _child(path: str, q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        NonceManager(path)
        q.put("acquired")
    except NonceError:
        q.put("refused")


def test_single_owner_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "nonce"
    nm = NonceManager(path)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(str(path), q))
    p.start()
    p.join(10)
    assert q.get(timeout=5) == "refused"
    nm.close()


# -------------------------------------------------------------------------------------------------
# Unusable state: one line naming the file and what to do; never READY while every nonce is refused
# -------------------------------------------------------------------------------------------------


def test_problem_follows_the_exchange_window_and_next_refuses_with_the_same_line(tmp_path: Path) -> None:
    path = tmp_path / "nonce"
    path.write_text(str(T0 + DAY_MS + 3_600_000))  # 25 h ahead (a clock that was a day fast, then fixed)
    with NonceManager(path) as nm:
        line = nm.problem(T0)
        assert line is not None and "\n" not in line
        assert str(path) in line and "25.0 h ahead" in line and "1 day" in line and "clock" in line
        with pytest.raises(NonceError) as exc:
            nm.next(T0)
        assert str(exc.value) == line
        # The clock catches up past the window's edge (with the safety margin): usable again.
        later = T0 + 3_600_000 + 61_000
        assert nm.problem(later) is None
        assert nm.next(later) == T0 + DAY_MS + 3_600_000 + 1


def test_a_ceiling_ahead_but_inside_the_window_is_usable(tmp_path: Path) -> None:
    path = tmp_path / "nonce"
    path.write_text(str(T0 + DAY_MS - 120_000))  # 2 minutes inside the exchange's +1 day
    with NonceManager(path) as nm:
        assert nm.problem(T0) is None
        assert nm.next(T0) == T0 + DAY_MS - 120_000 + 1
    nm2 = NonceManager(None)
    nm2.next(T0)
    nm2.set_server_offset(-DAY_MS)  # the exchange's clock turns out a day behind ours: its view decides
    assert nm2.problem(T0) is not None and "in-memory" in (nm2.problem(T0) or "")


@pytest.mark.parametrize("content", ["garbage", "", "12 34", "-5", "1" * 30, "\xff\xfe"])
def test_corrupt_state_is_one_line_naming_the_file_and_what_to_do(tmp_path: Path, content: str) -> None:
    path = tmp_path / "nonce"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(NonceError) as exc:
        NonceManager(path)
    line = str(exc.value)
    assert line.startswith(f"nonce state {path} is corrupt") and "delete it" in line and "\n" not in line
    path.write_text("1")  # repaired: the refused manager held no lock
    NonceManager(path).close()


def test_unreadable_state_and_lock_are_nonce_errors_not_tracebacks(tmp_path: Path) -> None:
    import os

    d = tmp_path / "a"
    d.mkdir()
    (d / "nonce").mkdir()  # a directory where the file should be
    with pytest.raises(NonceError, match=r"cannot read nonce state .*nonce: not a regular file"):
        NonceManager(d / "nonce")
    e = tmp_path / "b"
    e.mkdir()
    (e / "nonce.lock").mkdir()  # the owner lock
    with pytest.raises(NonceError, match=r"cannot open the nonce lock .*nonce\.lock"):
        NonceManager(e / "nonce")
    f = tmp_path / "c"
    f.mkdir()
    os.mkfifo(f / "nonce")  # must not hang the start
    with pytest.raises(NonceError, match="not a regular file"):
        NonceManager(f / "nonce")

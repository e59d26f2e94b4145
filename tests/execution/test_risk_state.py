"""The loss limits survive an executor restart (``hip3.execution.risk_state``), the daily loss cap, and a
saved state that cannot be used fails closed. No sockets: the state goes through the real file, and a
"restart" is a fresh monitor, soft gates and flattener restored from it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from hip3.execution.core import ExecutionCore
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.journal import SentIntentJournal
from hip3.execution.params import (
    BurstParams,
    CorrelationCooldownParams,
    ExecutorParams,
    HourlyDrawdownParams,
    MarketHealthParams,
    ReentryDelayParams,
    RiskParams,
    SoftGateParams,
    TiltGuardParams,
)
from hip3.execution.risk import MS_PER_DAY, RiskMonitor
from hip3.execution.risk_keeper import RiskKeeper
from hip3.execution.risk_state import STATE_FILE, RiskStateError, RiskStateStore
from hip3.execution.soft_gates import SoftGates
from hip3.messages import HardStopState, OrderRejected
from tests.execution.helpers import GOLD, SILVER, SPECS, closed, entry, pos, snap
from tests.terms_helpers import known_terms

DAY0 = 20_000 * MS_PER_DAY  # 2024-10-04 00:00 UTC
T = DAY0 + 10 * 3_600_000  # 10:00 UTC
MIN = 60_000

SOFT = SoftGateParams(
    hourly_drawdown=HourlyDrawdownParams(enabled=True, max_loss_usd=10.0),
    correlation_cooldown=CorrelationCooldownParams(enabled=True, max_closes=3, window_ms=MIN, cooldown_ms=5 * MIN),
    burst=BurstParams(enabled=True, window_ms=10 * MIN, max_signals=3, cooldown_ms=5 * MIN),
    tilt_guard=TiltGuardParams(enabled=True, max_consecutive_losses=3, cooldown_ms=5 * MIN),
    reentry_delay=ReentryDelayParams(enabled=True, delay_ms=MIN),
    market_health=MarketHealthParams(enabled=True, window_trades=5, min_samples=3, reprobe_after_ms=2 * 3_600_000),
)
RISK = RiskParams(max_loss_usd=50.0, daily_loss_cap_usd=100.0, max_consecutive_failures=3, max_flatten_failed=2,
                  max_rejections_per_bucket=3, slippage_consecutive_trades=3)


def unlatched(epoch: int = 0) -> HardStopState:
    return HardStopState(latched=False, reason=None, epoch=epoch, since_ms=None)


def latched(epoch: int, reason: str = "x") -> HardStopState:
    return HardStopState(latched=True, reason=reason, epoch=epoch, since_ms=T)


class Executor:
    """What an executor holds of the limits, started in ``run_dir`` like the real one (store before
    the sent-intent journal, restore before the first event)."""

    def __init__(self, run_dir: Path, hardstop: HardStopState | None = None, risk: RiskParams = RISK,
                 soft: SoftGateParams = SOFT, now_ms: int = T) -> None:
        self.store = RiskStateStore(run_dir)
        SentIntentJournal(run_dir, now_ms=now_ms, retention_ms=600_000).close()
        self.risk = RiskMonitor(risk)
        self.soft = SoftGates(soft)
        self.flattener = HardStopFlattener(risk, SPECS)
        self.scheduled = 0
        self.keeper = RiskKeeper(self.store, self.risk, self.soft, self.flattener, schedule=self._schedule)
        self.problem = self.keeper.restore(hardstop or unlatched(), now_ms)

    def _schedule(self) -> None:
        self.scheduled += 1

    def end_of_turn(self, now_ms: int = T) -> str | None:
        return self.keeper.save(now_ms)


def loss(usd: str, coin: str = GOLD, fees: str = "0") -> object:
    return closed(coin=coin, pnl=usd, fees=fees)


# ----------------------------------------------------------------------------- every limit continues


@pytest.mark.parametrize(
    ("name", "before", "trip"),
    [
        # one below each limit, then a restart, then the event that must trip it
        ("consecutive_losses", lambda x: [x.risk.on_position_closed(loss("-1"), T) for _ in range(3)],
         lambda x: x.risk.on_position_closed(loss("-1"), T)),
        ("max_loss", lambda x: x.risk.on_position_closed(loss("-49", fees="0.5"), T),
         lambda x: x.risk.on_position_closed(loss("0.4", fees="1.0"), T)),  # a win that loses its fees
        ("flatten_failed", lambda x: [x.risk.on_flatten_failed("timeout") for _ in range(2)],
         lambda x: x.risk.on_flatten_failed("timeout")),
        ("rejections", lambda x: [x.risk.on_order_rejected(_rej(), T) for _ in range(3)],
         lambda x: x.risk.on_order_rejected(_rej(), T + MIN)),  # the same hour bucket
        ("slippage", lambda x: [x.risk.on_entry_filled(80.0, Decimal("99.2"), True, 99.2) for _ in range(2)],
         lambda x: x.risk.on_entry_filled(80.0, Decimal("99.2"), True, 99.2)),
    ],
)
def test_each_hardstop_trigger_continues_after_a_restart(tmp_path: Path, name: str,
                                                         before: Callable[[Executor], object],
                                                         trip: Callable[[Executor], str | None]) -> None:
    first = Executor(tmp_path)
    before(first)
    assert first.risk.reason is None
    assert first.end_of_turn() is None
    # killed here; the next executor starts from the file
    second = Executor(tmp_path)
    assert second.problem is None
    assert (trip(second) or "").startswith(name)
    # what the old executor did: a fresh monitor needs the whole streak again
    assert trip(Executor(tmp_path / "fresh")) is None


def _rej() -> OrderRejected:
    return OrderRejected(cloid="0x1", coin=GOLD, reason="exchange: Insufficient margin", benign=False,
                         reduce_only=False, recv_ns=0)


def test_soft_gates_continue_after_a_restart(tmp_path: Path) -> None:
    """Tilt guard, re-entry delay, hourly drawdown, correlation cooldown, burst and market health: each
    blocks the restarted executor exactly as it blocked the old one, and expires at the same time."""
    first = Executor(tmp_path)
    s = first.soft
    for i in range(3):  # three losses: tilt guard (3 in a row) and correlation cooldown (3 closes a minute)
        s.on_position_closed(closed(coin=SILVER, pnl="-3"), T + i)
    s.on_position_closed(closed(coin=GOLD, pnl="-2"), T + 3)  # SILVER 3 of 3 losses: market health
    for i in range(3):
        s.record_executed("xyz:TSLA", T + 10 + i)  # burst: 3 signals -> cooldown
    first.end_of_turn()
    second = Executor(tmp_path)
    # time only moves forward (a check expires windows)
    assert (second.soft.check(GOLD, 20.0, T + 20) or "").startswith("MaxDrawdown")  # -11 <= -10 this hour
    assert Executor(tmp_path / "fresh").soft.check(GOLD, 20.0, T + 20) is None  # the old executor's view
    third = Executor(tmp_path)
    for t in (T + 20, T + 2 * MIN, T + 4 * MIN, T + 6 * MIN, T + 61 * MIN):
        for coin in (GOLD, SILVER, "xyz:TSLA"):
            assert third.soft.check(coin, 20.0, t) == first.soft.check(coin, 20.0, t), (coin, t)
    assert third.soft.check(GOLD, 20.0, T + 61 * MIN) is None  # a new hour, no cooldown left
    assert (third.soft.check(SILVER, 20.0, T + 61 * MIN) or "").startswith("MarketHealth")


def test_the_saved_state_is_exactly_the_live_one(tmp_path: Path) -> None:
    first = Executor(tmp_path)
    first.risk.on_position_closed(loss("-7", fees="0.25"), T)
    first.risk.on_order_rejected(_rej(), T)
    first.soft.on_position_closed(closed(pnl="-7", fees="0.25"), T)
    first.soft.record_executed(GOLD, T)
    first.end_of_turn()
    second = Executor(tmp_path)
    assert second.risk.export() == first.risk.export()
    assert second.soft.export() == first.soft.export()
    assert second.risk.realized_usd == Decimal("-7.25")


def test_a_change_is_saved_once_at_the_end_of_the_turn(tmp_path: Path) -> None:
    x = Executor(tmp_path)
    base = x.scheduled
    x.risk.on_position_closed(loss("-1"), T)
    x.soft.on_position_closed(closed(pnl="-1"), T)
    assert x.scheduled == base + 1  # one save scheduled for the turn, however many changes
    saves = x.keeper.saves
    assert x.end_of_turn() is None and x.keeper.saves == saves + 1
    assert x.end_of_turn() is None and x.keeper.saves == saves + 1  # nothing new: no write
    x.soft.check(GOLD, 20.0, T + MIN)  # a check (send path) changes nothing durable
    assert x.scheduled == base + 1


def _slots(run_dir: Path) -> list[Path]:
    return [run_dir / f"{STATE_FILE}.a", run_dir / f"{STATE_FILE}.b"]


def _newest(run_dir: Path) -> Path:
    return max((p for p in _slots(run_dir) if p.exists()), key=lambda p: int(p.read_bytes().split()[1]))


def test_a_save_cut_short_leaves_the_previous_save_and_says_so(tmp_path: Path) -> None:
    """Saves alternate between two slots written in place: a write cut short (SIGKILL between its pages, a
    host crash before the fsync) tears the newest slot only, and the other still holds the save before."""
    x = Executor(tmp_path)
    x.risk.on_position_closed(loss("-5"), T)
    x.end_of_turn()
    x.risk.on_position_closed(loss("-1"), T)
    x.end_of_turn()
    x.keeper.sync()
    assert Executor(tmp_path).risk.realized_usd == Decimal(-6)
    newest = _newest(tmp_path)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2] + b"\x00" * (len(data) - len(data) // 2))  # the tail never came
    y = Executor(tmp_path)
    assert y.problem is None and y.risk.realized_usd == Decimal(-5)  # one save older, never zero
    assert "fails its checksum" in y.store.note and "continuing from save" in y.store.note
    y.risk.on_position_closed(loss("-2"), T)
    y.end_of_turn()  # overwrites the older slot, keeps the good one
    assert Executor(tmp_path).risk.realized_usd == Decimal(-7)


# ----------------------------------------------------------------------------- the hard stop across a restart


def test_a_fired_trigger_is_requested_again_if_the_latch_never_came(tmp_path: Path) -> None:
    first = Executor(tmp_path, unlatched(4))
    for _ in range(4):
        reason = first.risk.on_position_closed(loss("-1"), T)
    assert (reason or "").startswith("consecutive_losses")
    first.end_of_turn()  # saved; then killed before the supervisor latched
    again = Executor(tmp_path, unlatched(4))
    assert (again.problem or "").startswith("consecutive_losses") and "requested again" in (again.problem or "")
    assert Executor(tmp_path, latched(5)).problem is None  # it did latch: nothing to ask


def test_an_operator_reset_while_down_resets_the_limits_but_not_the_day(tmp_path: Path) -> None:
    first = Executor(tmp_path, latched(5))
    first.risk.on_position_closed(loss("-60"), T)  # max_loss fired
    first.end_of_turn()
    after = Executor(tmp_path, unlatched(6))  # the operator reset the latch while it was down
    assert after.problem is None and after.risk.reason is None and after.risk.realized_usd == 0
    assert after.risk.daily_realized_usd == Decimal(-60)
    relatched = Executor(tmp_path / "b", latched(5))
    relatched.risk.on_position_closed(loss("-60"), T)
    relatched.end_of_turn()
    assert Executor(tmp_path / "b", latched(7)).risk.reason is None  # reset (6) and latched again (7)
    assert Executor(tmp_path / "b", latched(5)).risk.reason is not None  # nothing happened


def test_a_hardstop_flatten_keeps_its_attempts_across_a_restart(tmp_path: Path) -> None:
    """A crash-looping executor must still reach the slow cadence and its alert."""
    first = Executor(tmp_path, latched(3))
    first.flattener.start(3, 0)
    first.keeper.note_hardstop(latched(3), T)
    for i in range(3):
        first.flattener.step(snapshot=snap(pos(GOLD)), marks={GOLD: Decimal(10)}, inflight_posts=0,
                             now_ns=i * 2_000_000_000)
    assert first.flattener.attempts == 3
    first.end_of_turn()
    second = Executor(tmp_path, latched(3))
    second.flattener.start(3, 0)
    second.keeper.note_hardstop(latched(3), T)
    step = second.flattener.step(snapshot=snap(pos(GOLD)), marks={GOLD: Decimal(10)}, inflight_posts=0, now_ns=0)
    assert second.flattener.attempts == 4 and step.progress is not None and step.progress.alert
    other = Executor(tmp_path, latched(9))  # a new latch: a new sequence
    other.flattener.start(9, 0)
    other.keeper.note_hardstop(latched(9), T)
    assert other.flattener.attempts == 0


# ----------------------------------------------------------------------------- the daily loss cap


def test_daily_cap_latches_and_refuses_entries_for_the_rest_of_the_utc_day() -> None:
    r = RiskMonitor(RiskParams(max_loss_usd=1000.0, daily_loss_cap_usd=100.0))
    assert r.on_position_closed(loss("-60"), DAY0 + 1) is None
    assert r.entry_block(DAY0 + 2) is None
    reason = r.on_position_closed(loss("-39.5", fees="0.5"), DAY0 + 3)  # net -40: the day at -100
    assert reason is not None and reason.startswith("daily_loss") and "2024-10-04" in reason
    r.reset()  # the operator's reset re-arms the latch's triggers, not the day's budget
    assert r.reason is None and r.realized_usd == 0
    block = r.entry_block(DAY0 + MS_PER_DAY - 1)
    assert block is not None and block[0] == "DailyLossCap" and "00:00 UTC" in block[1]
    assert r.entry_block(DAY0 + MS_PER_DAY) is None  # midnight UTC: a new day's budget
    assert r.on_position_closed(loss("-99"), DAY0 + MS_PER_DAY + 5) is None  # counted from zero
    assert r.daily_realized_usd == Decimal(-99)


def test_daily_cap_rolls_over_at_utc_midnight_with_an_injected_clock() -> None:
    r = RiskMonitor(RiskParams(max_loss_usd=1000.0, daily_loss_cap_usd=100.0))
    assert r.on_position_closed(loss("-90"), DAY0 + MS_PER_DAY - 1) is None  # 23:59:59.999
    assert r.on_position_closed(loss("-90"), DAY0 + MS_PER_DAY) is None  # 00:00:00.000: a new day
    assert (r.on_position_closed(loss("-10"), DAY0 + 2 * MS_PER_DAY - 1) or "").startswith("daily_loss")
    # A clock that steps back does not give the budget back.
    r2 = RiskMonitor(RiskParams(max_loss_usd=1000.0, daily_loss_cap_usd=100.0))
    r2.on_position_closed(loss("-90"), DAY0 + MS_PER_DAY + 10)
    assert (r2.on_position_closed(loss("-10"), DAY0 + MS_PER_DAY - 10) or "").startswith("daily_loss")


def test_daily_cap_crosses_a_restart_and_the_day_rolls_over_across_one(tmp_path: Path) -> None:
    risk = RiskParams(max_loss_usd=1000.0, daily_loss_cap_usd=100.0)
    first = Executor(tmp_path, risk=risk)
    first.risk.on_position_closed(loss("-95"), T)
    first.end_of_turn()
    same_day = Executor(tmp_path, risk=risk, now_ms=T + 3_600_000)
    assert (same_day.risk.on_position_closed(loss("-5"), T + 3_600_000) or "").startswith("daily_loss")
    fresh = Executor(tmp_path / "fresh", risk=risk)  # the old executor forgot the morning
    assert fresh.risk.on_position_closed(loss("-5"), T + 3_600_000) is None
    next_day = Executor(tmp_path, risk=risk, now_ms=T + MS_PER_DAY)
    assert next_day.risk.on_position_closed(loss("-5"), T + MS_PER_DAY) is None
    assert next_day.risk.daily_realized_usd == Decimal(-5)


def test_core_refuses_entries_after_the_daily_cap_until_midnight(tmp_path: Path) -> None:
    core = ExecutionCore(ExecutorParams(), RiskParams(daily_loss_cap_usd=20.0), SoftGateParams(), SPECS,
                         SentIntentJournal(tmp_path, now_ms=T, retention_ms=600_000), terms=known_terms(SPECS))
    core.gates.set_mark(GOLD, 10.0)
    core.on_position_closed(loss("-25"), T)
    assert (core.take_hardstop_request() or "").startswith("daily_loss")
    core.set_hard_stop(True, 0)
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=T)
    assert v.reason == "HardStop"
    core.set_hard_stop(False, 0)  # the operator's reset
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=T + 1)
    assert not v.accepted and v.reason == "DailyLossCap"
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=DAY0 + MS_PER_DAY)
    assert v.accepted


# ----------------------------------------------------------------------------- fails closed


def _saved(tmp_path: Path) -> list[Path]:
    """Two saves (both slots written): the first a fresh start, the second with a loss of 5."""
    x = Executor(tmp_path)
    x.risk.on_position_closed(loss("-5"), T)
    x.end_of_turn()
    x.keeper.close(T)
    return [p for p in _slots(tmp_path) if p.exists()]


def _flip_a_digit(data: bytes) -> bytes:
    i = data.index(b'"consecutive_losses":') + len(b'"consecutive_losses":')
    return data[:i] + b"7" + data[i + 1:]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: d[: len(d) // 2], "fails its checksum"),  # torn
        (lambda d: b"", "no valid header"),
        (lambda d: b"\x00" * 64, "no valid header"),
        (_flip_a_digit, "fails its checksum"),  # decodes, but is not what was written
        (lambda d: d.replace(b'"schema":1', b'"schema":2'), "fails its checksum"),
    ],
)
def test_a_damaged_state_fails_closed(tmp_path: Path, damage: Callable[[bytes], bytes], expected: str) -> None:
    slots = _saved(tmp_path)
    assert len(slots) == 2
    for path in slots:
        path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RiskStateError) as e:
        RiskStateStore(tmp_path).load()
    assert expected in str(e.value) and str(slots[0]) in str(e.value) and "\n" not in str(e.value)


def _rewrite(path: Path, edit: Callable[[dict[str, object]], None]) -> None:
    """A slot with a valid header and checksum but the given content (the store's own format)."""
    import zlib

    head, _, rest = path.read_bytes().partition(b"\n")
    magic, seq, _, length = head.split(b" ")
    state = json.loads(rest[: int(length)])
    edit(state)
    body = msgspec.json.encode(state)
    path.write_bytes(b"%s %s %d %d\n%s\n" % (magic, seq, zlib.crc32(body), len(body), body))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s.__setitem__("schema", 99), "schema 99"),
        (lambda s: s["risk"].__setitem__("realized_usd", "NaN"), "impossible values"),  # type: ignore[index]
        (lambda s: s["risk"].__setitem__("consecutive_losses", -3), "impossible values"),  # type: ignore[index]
    ],
)
def test_a_state_with_impossible_content_fails_closed(tmp_path: Path, edit: Callable[[dict[str, object]], None],
                                                      expected: str) -> None:
    _saved(tmp_path)
    _rewrite(_newest(tmp_path), edit)  # checksummed, so not a torn write: refused, not skipped
    with pytest.raises(RiskStateError) as e:
        RiskStateStore(tmp_path).load()
    assert expected in str(e.value)


def test_unreadable_or_missing_state_fails_closed(tmp_path: Path) -> None:
    for slot in _slots(tmp_path / "a"):
        slot.mkdir(parents=True)  # directories where the files should be
    with pytest.raises(RiskStateError, match="cannot be read"):
        RiskStateStore(tmp_path / "a").load()
    # No file, but an executor ran here before (its sent-intent journal exists): lost, not new.
    (tmp_path / "b").mkdir()
    SentIntentJournal(tmp_path / "b", now_ms=T, retention_ms=1000).close()
    with pytest.raises(RiskStateError, match="is missing, but an executor ran"):
        RiskStateStore(tmp_path / "b").load()
    assert RiskStateStore(tmp_path / "c").load() is None  # a new run directory: nothing expected
    if os.geteuid() != 0:  # root reads anything
        for slot in _saved(tmp_path / "d"):
            slot.chmod(0)
        with pytest.raises(RiskStateError, match="cannot be read"):
            RiskStateStore(tmp_path / "d").load()


def test_an_unusable_state_refuses_entries_requests_the_stop_and_waits_for_the_reset(tmp_path: Path) -> None:
    slots = _saved(tmp_path)
    bad = [p.read_bytes()[:40] for p in slots]
    for p, b in zip(slots, bad, strict=True):
        p.write_bytes(b)
    x = Executor(tmp_path, unlatched(2))
    assert x.problem is not None and "fails its checksum" in x.problem and "entries refused" in x.problem
    assert "\n" not in x.problem
    assert (x.risk.entry_block(T) or ("", ""))[0] == "RiskStateUnusable"
    x.risk.on_position_closed(loss("-1"), T)
    assert x.end_of_turn() is None and [p.read_bytes() for p in slots] == bad  # never overwritten before the reset
    again = Executor(tmp_path, unlatched(2))  # another restart: still refused, never from zero
    assert again.problem is not None and again.risk.entry_block(T) is not None
    again.keeper.note_hardstop(latched(3), T)
    assert [p.read_bytes() for p in slots] == bad
    again.keeper.note_hardstop(unlatched(4), T)  # the operator's reset: from zero, the bad files kept aside
    assert again.risk.entry_block(T) is None and again.risk.realized_usd == 0
    assert again.end_of_turn() is None
    assert sorted(p.read_bytes() for p in tmp_path.glob(f"{STATE_FILE}.?.unusable-*")) == sorted(bad)
    assert Executor(tmp_path, unlatched(4)).problem is None


def test_a_state_that_cannot_be_written_requests_the_stop_once_and_retries(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import hip3.execution.risk_state as rs

    x = Executor(tmp_path)
    x.risk.on_position_closed(loss("-1"), T)
    real = rs.os.pwrite

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rs.os, "pwrite", full_disk)
    problem = x.end_of_turn()
    assert problem is not None and "cannot be written: No space left on device" in problem and "\n" not in problem
    assert x.end_of_turn() is None  # asked once; retried every second meanwhile
    monkeypatch.setattr(rs.os, "pwrite", real)
    assert x.end_of_turn() is None and RiskStateStore(tmp_path).load() is not None  # written at last
    assert Executor(tmp_path).risk.realized_usd == Decimal(-1)


# ----------------------------------------------------------------------------- closes missed while down


def _journal(path: Path, *closes: object) -> None:
    """The recorder's journal holding ``closes`` (written by the recorder's own writer)."""
    from hip3.journal.db import JournalWriter

    w = JournalWriter(path)
    for c in closes:
        assert w.add(c)  # type: ignore[arg-type]
    w.flush()
    w.close()


def _close(pnl: str, closed_ms: int, coin: str = GOLD, size: str = "1.50") -> object:
    return msgspec.structs.replace(closed(coin=coin, pnl=pnl), closed_ms=closed_ms, size=Decimal(size))


def test_closes_published_while_the_executor_was_down_count_once(tmp_path: Path) -> None:
    from hip3.journal.schema import JOURNAL_FILE

    params = RiskParams(max_consecutive_failures=3, max_loss_usd=1000.0, daily_loss_cap_usd=1000.0)
    a, b, c, d = (_close("-1", T + i * 1000) for i in range(4))
    store = RiskStateStore(tmp_path)  # before the sent-intent journal, as the executor does
    core = ExecutionCore(ExecutorParams(), params, SoftGateParams(), SPECS,
                         SentIntentJournal(tmp_path, now_ms=T, retention_ms=600_000))
    keeper = RiskKeeper(store, core.risk, core.soft)
    keeper.restore(unlatched(), T)
    for x in (a, b):
        core.on_position_closed(x, T)  # type: ignore[arg-type]
    keeper.save(T + 1500)
    # killed; c and d were published to nobody, but the recorder kept them (and a and b)
    _journal(tmp_path / JOURNAL_FILE, a, b, c, d)
    store2 = RiskStateStore(tmp_path)
    core2 = ExecutionCore(ExecutorParams(), params, SoftGateParams(), SPECS,
                          SentIntentJournal(tmp_path, now_ms=T + 5000, retention_ms=600_000))
    keeper2 = RiskKeeper(store2, core2.risk, core2.soft)
    assert keeper2.restore(unlatched(), T + 5000) is None
    assert keeper2.catch_up(tmp_path / JOURNAL_FILE, core2.on_position_closed) == (2, None)
    assert (core2.take_hardstop_request() or "").startswith("consecutive_losses: 4 > 3")
    assert core2.risk.realized_usd == Decimal(-4)
    core2.on_position_closed(d, T + 6000)  # type: ignore[arg-type]  # the bus delivered d after all
    assert core2.risk.realized_usd == Decimal(-4) and core2.risk.consecutive_losses == 4


def test_a_journal_that_cannot_be_read_is_one_line_and_nothing_counted(tmp_path: Path) -> None:
    x = Executor(tmp_path)
    x.end_of_turn()
    y = Executor(tmp_path)
    applied: list[object] = []
    assert y.keeper.catch_up(tmp_path / "none.sqlite", lambda c, t: applied.append(c)) == (0, None)
    (tmp_path / "bad.sqlite").write_bytes(b"not a database at all" * 100)
    n, problem = y.keeper.catch_up(tmp_path / "bad.sqlite", lambda c, t: applied.append(c))
    assert n == 0 and problem is not None and "cannot be read" in problem and "\n" not in problem
    assert not applied

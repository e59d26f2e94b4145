"""What the supervisor tells a person: the rules of ``hip3.ops.alert_rules`` on the real supervisor core
(fake actors, a hand-moved clock; ``tests/supervisor_harness.py``), delivered through apprise to a local
receiver on 127.0.0.1."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT
from hip3.messages import Alert, HardStopProgress, Heartbeat, PositionClosed, Ready
from hip3.ops.alert_rules import COVERED
from hip3.runtime.hardstop import LATCH_FILE
from tests.ops.receiver import Receiver
from tests.supervisor_harness import Core

ACTORS = ("feed", "position_tracker", "executor", "detector")
EXTRA = """max_restarts = 4
[alerts]
enabled = true
label = "drill"
rate_limit_count = 10
entries_blocked_s = 120
feed_down_s = 20
crash_loop_restarts = 2
"""


@pytest.fixture
def rcv() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def core(run_dir: Path, rcv: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Core]:
    monkeypatch.setenv("HIP3_ALERT_URLS", rcv.url())
    c = Core(run_dir, ACTORS, EXTRA)
    try:
        yield c
    finally:
        c.close()


def turn(core: Core, ms: float = 100, stats: dict[str, dict[str, int]] | None = None) -> None:
    """Time passes, every running actor heartbeats (with ``stats``), the loop turns."""
    core.step()  # what the test sent is read first: the heartbeats below carry the READY it set
    core.clock.advance_ms(ms)
    for name, slot in core.sup.slots.items():
        if slot.state in ("starting", "running") and slot.pid is not None:
            core.send(Heartbeat(actor=name, pid=slot.pid, ready=slot.ready, hardstop_epoch=0,
                                stats=(stats or {}).get(name, {})))
    core.step()


def start(core: Core) -> None:
    """Every actor READY; the detector's detail is the one that says entries may go."""
    core.start_all()
    core.send(Ready(actor="detector", pid=core.pid("detector"), ready=True, detail="entries allowed"))
    core.step()


def titles(rcv: Receiver) -> list[str]:
    return [m["title"] for m in rcv.messages]


def test_hard_stop_latched_flat_and_reset_reach_a_person(core: Core, rcv: Receiver) -> None:
    start(core)
    assert rcv.wait(lambda m: len(m) >= 1)
    assert rcv.messages[0]["title"] == "hip3 drill: info started"
    assert "hip3 started in paper mode: 2 markets, 4 actors" in rcv.messages[0]["message"]
    core.ask({"cmd": "hardstop", "reason": "drill"})
    assert rcv.wait(lambda m: len(m) >= 2)
    latched = rcv.messages[1]
    assert latched["title"] == "hip3 drill: CRITICAL hard stop latched" and latched["type"] == "failure"
    assert "hard stop latched (epoch 1): operator: drill" in latched["message"]
    # The executor is still flattening: its "cannot flatten" alert, then done.
    core.send(Alert(level="critical", actor="executor",
                    text="hard stop cannot flatten: 2 positions, 1 open orders after 5 attempts"))
    core.send(HardStopProgress(epoch=1, positions=2, open_orders=1, attempts=5, done=False, alert=True))
    turn(core)
    core.send(HardStopProgress(epoch=1, positions=0, open_orders=0, attempts=7, done=True, alert=False))
    turn(core)
    turn(core)  # the same progress again: said once
    core.ask({"cmd": "reset-hardstop"})
    assert rcv.wait(lambda m: len(m) >= 5)
    turn(core)
    assert titles(rcv) == ["hip3 drill: info started", "hip3 drill: CRITICAL hard stop latched",
                           "hip3 drill: CRITICAL executor: cannot flatten", "hip3 drill: ok flat",
                           "hip3 drill: info hard stop reset"]
    assert "2 positions, 1 open orders after 5 attempts" in rcv.messages[2]["message"]
    assert "flat, no position and no open order left of hip3's, after 7 attempts" in rcv.messages[3]["message"]


def test_a_crash_loop_is_said_before_the_restart_limit_and_at_it(core: Core, rcv: Receiver) -> None:
    start(core)
    for _ in range(40):  # the detector keeps dying; the backoff doubles from 50 ms
        det = core.sup.slots["detector"]
        if det.state == "failed":
            break
        if det.handle is not None and det.state in ("starting", "running"):
            det.handle.code = 1  # type: ignore[attr-defined]
        turn(core, 500)
    assert core.sup.slots["detector"].state == "failed"
    assert rcv.wait(lambda m: any("restart limit" in t for t in titles(rcv)) and len(m) >= 4)
    t = titles(rcv)
    loop = [m["message"] for m in rcv.messages if m["title"] == "hip3 drill: WARNING detector: crash loop"]
    assert len(loop) == 1 and loop[0].startswith("detector restarted 2 times within 60 s")
    limit = t.index("hip3 drill: CRITICAL detector: restart limit")
    assert t.index("hip3 drill: WARNING detector: crash loop") < limit
    assert "hip3 drill: CRITICAL hard stop latched" in t  # the limit latches it


def test_entries_blocked_for_long_and_allowed_again(core: Core, rcv: Receiver) -> None:
    start(core)
    blocked = ("entries blocked: dex 'xyz' has no usable collateral (0 < 10 USDC free; ...): move USDC to it: "
               "`python supervisor.py fund-dex --usd N`")
    core.send(Ready(actor="detector", pid=core.pid("detector"), ready=True, detail=blocked))
    core.send(Alert(level="warning", actor="position_tracker", text="entries refused: dex 'xyz' has no usable"))
    for _ in range(11):
        turn(core, 10_000)  # 110 s: not yet
    assert rcv.wait(lambda m: len(m) >= 1)
    assert titles(rcv) == ["hip3 drill: info started"]  # the tracker's own alert is not sent at once
    turn(core, 10_000)
    assert rcv.wait(lambda m: len(m) >= 2)
    assert rcv.messages[1]["title"] == "hip3 drill: WARNING entries blocked"
    assert "no entry for 2.0 min: dex 'xyz' has no usable collateral" in rcv.messages[1]["message"]
    assert "fund-dex" in rcv.messages[1]["message"]
    for _ in range(10):
        turn(core, 10_000)  # said once
    core.send(Ready(actor="detector", pid=core.pid("detector"), ready=True, detail="entries allowed"))
    turn(core)
    assert rcv.wait(lambda m: len(m) >= 3)
    assert rcv.messages[2]["title"] == "hip3 drill: ok entries allowed again"
    assert len(rcv.messages) == 3


def test_a_feed_down_for_long_and_stale_markets_then_fresh_again(core: Core, rcv: Receiver) -> None:
    start(core)
    core.send(Ready(actor="feed", pid=core.pid("feed"), ready=False, detail="disconnected"))
    for _ in range(3):
        turn(core, 10_000)
    core.send(Ready(actor="feed", pid=core.pid("feed"), ready=True, detail="streaming 2 markets"))
    turn(core, stats={"feed": {"stale_markets": 0}})
    core.send(Alert(level="warning", actor="feed", text="feed: stale market data: xyz:GOLD/bbo, xyz:GOLD/ctx"))
    turn(core, stats={"feed": {"stale_markets": 1}})
    turn(core, stats={"feed": {"stale_markets": 0}})
    assert rcv.wait(lambda m: len(m) >= 5), titles(rcv)
    assert titles(rcv)[1:] == ["hip3 drill: WARNING feed not READY", "hip3 drill: ok feed fresh again",
                               "hip3 drill: WARNING feed: stale market data", "hip3 drill: ok feed fresh again"]
    assert "has not been READY for 20 s: disconnected" in rcv.messages[1]["message"]
    assert "xyz:GOLD/bbo" in rcv.messages[3]["message"]


def test_a_latch_the_disk_refuses_is_said_and_so_is_its_repair(core: Core, rcv: Receiver, run_dir: Path) -> None:
    start(core)
    path = run_dir / LATCH_FILE
    path.unlink()
    path.mkdir()
    (path / "x").write_text("keeps os.replace away")
    core.ask({"cmd": "hardstop", "reason": "disk drill"})
    turn(core)
    shutil.rmtree(path)
    for _ in range(100):
        turn(core, 200)
        if core.sup.latch.persisted:
            break
    turn(core)
    assert rcv.wait(lambda m: len(m) >= 4)
    t = titles(rcv)
    assert "hip3 drill: CRITICAL hard stop NOT SAVED" in t and "hip3 drill: ok hard stop saved" in t
    # The supervisor's own alert about it is not sent a second time.
    assert sum("in memory only" in m["message"] for m in rcv.messages) == 1


def test_other_actor_alerts_are_forwarded_and_rate_limited(run_dir: Path, rcv: Receiver,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIP3_ALERT_URLS", rcv.url())
    core = Core(run_dir, ACTORS, EXTRA.replace("rate_limit_count = 10", "rate_limit_count = 2"))
    try:
        start(core)
        for i in range(6):
            core.send(Alert(level="critical", actor="position_tracker", text=f"ownership ledger cannot save #{i}"))
        core.send(Alert(level="warning", actor="recorder", text="journal run/journal.sqlite: disk full"))
        turn(core)
        assert rcv.wait(lambda m: len(m) >= 4)
        turn(core)
        t = titles(rcv)
        assert t.count("hip3 drill: CRITICAL position_tracker: alert") == 2
        assert t.count("hip3 drill: WARNING recorder: alert") == 1
        # The window frees (10 minutes later): the latest held back, with the count.
        for _ in range(61):
            turn(core, 10_000)
        assert rcv.wait(lambda m: len(m) >= 5)
        last = rcv.messages[-1]["message"]
        assert last.startswith("ownership ledger cannot save #5") and "3 more 'actor:position_tracker' alerts" in last
    finally:
        core.close()


def test_the_daily_summary_after_midnight_utc(core: Core, rcv: Receiver) -> None:
    router = core.sup.notifier
    assert router is not None
    day = 20_000  # days since the epoch
    wall = [day * 86_400_000 + 3_600_000]
    router.wall_ms = lambda: wall[0]
    start(core)
    for pnl, fees, closed in (("1.50", "0.10", 10), ("-0.40", "0.10", 20), ("2.00", "0.20", 86_400_000 + 5)):
        core.sup.trading.on_message(PositionClosed(
            coin="xyz:GOLD", is_long=True, size=Decimal(1), entry_px=Decimal(1), exit_px=Decimal(1),
            pnl_usd=Decimal(pnl), fees_usd=Decimal(fees), hold_ms=1000, exit_reason="mark_regression",
            closed_ms=day * 86_400_000 + closed))
    turn(core)
    wall[0] = (day + 1) * 86_400_000 + 1000
    turn(core)
    turn(core)
    assert rcv.wait(lambda m: len(m) >= 2)
    assert titles(rcv)[1] == "hip3 drill: info day 2024-10-04 (UTC)"
    text = rcv.messages[1]["message"]
    assert "day 2024-10-04 (UTC): 2 trades, 50 % won; PnL +1.10 USD before fees, fees 0.20, net +0.90 USD" in text
    assert "journal unreadable" in text  # no recorder here: the supervisor's own closes
    assert len(rcv.messages) == 2


def test_the_stop_message_says_what_stays_open(core: Core, rcv: Receiver) -> None:
    start(core)
    core.sup.shutdown()
    core.sup.notifier.close(core.sup)  # type: ignore[union-attr]
    core.sup.notifier = None
    assert titles(rcv)[-1] == "hip3 drill: info stopped"
    assert "left at the exchange: UNKNOWN" in rcv.messages[-1]["message"]


def test_covered_alert_texts_still_match_what_the_actors_send() -> None:
    """Each prefix the rules fold into a state rule must be the start of a text an actor (or the supervisor)
    sends: a changed wording would otherwise reach a person twice, or not at all."""
    # Every module that sends, but not the rules themselves (they hold the prefixes: the test could not fail).
    sources = "\n".join(p.read_text() for d in ("actors", "hip3") for p in (REPO_ROOT / d).rglob("*.py")
                         if "ops" not in p.relative_to(REPO_ROOT).parts)
    for (_actor, prefix), _kind in COVERED.items():
        assert re.search(r'f?"' + re.escape(prefix), sources), prefix


def test_alerts_enabled_without_a_destination_refuse_the_start(run_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIP3_ALERT_URLS", raising=False)
    from hip3.ops.alerts import AlertsError

    with pytest.raises(AlertsError, match="HIP3_ALERT_URLS holds no destination"):
        Core(run_dir, ACTORS, EXTRA)


def test_the_daily_summary_reads_the_journal_with_the_fills_fees(tmp_path: Path) -> None:
    """The summary's source is the journal: every session of the day, fees from the exchange's fills (the
    closes' own fees can lack the exit's), nothing of the day before or after."""
    from hip3.journal.schema import journal_path
    from hip3.ops.alert_rules import day_summary
    from tests.test_report import T0_MS, journal, session

    journal(journal_path(tmp_path), session())
    day = T0_MS // 86_400_000
    text = day_summary(tmp_path, day * 86_400_000, (day + 1) * 86_400_000, [])
    # tests/test_report.py's session: 4 trades, PnL 0.63 before fees, fees 0.14 (from fills where recorded).
    assert "4 trades, 50 % won; PnL +0.63 USD before fees, fees 0.14, net +0.49 USD (journal)" in text
    empty = day_summary(tmp_path, (day + 1) * 86_400_000, (day + 2) * 86_400_000, [])
    assert "0 trades; PnL +0.00 USD before fees, fees 0.00, net +0.00 USD (journal)" in empty

"""The executor as a real process (``python -m actors.executor``, ipc bus, the simulator): it loses money up
to one below a limit, is killed with SIGKILL, is restarted, and the next loss trips the limit. Before, a
restarted executor started every loss limit from zero. Also: the daily loss cap across a restart refuses
entries, and a damaged saved state fails closed (the stop requested, entries refused, the file kept)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from hip3.config import Config, parse_config
from hip3.execution.risk_state import STATE_FILE, RiskState, RiskStateError, RiskStateStore
from hip3.messages import HardStopRequest, Heartbeat, PositionClosed, Ready
from hip3.sim.app import SimServer
from tests.actors.helpers import account_of, entry, wait
from tests.actors.test_executor_restart import MARKETS, Harness


def _config(run_dir: Path, sim: SimServer, account: str, risk: str) -> tuple[Config, Path]:
    text = f"""run_dir = "{run_dir}"
mode = "paper"
[exchange]
network = "sim"
rest_url = "{sim.url}"
account_address = "{account}"
[bus]
transport = "ipc"
[logging]
stderr = false
[supervisor]
heartbeat_interval_ms = 100
[executor]
max_total_notional_usd = 1000.0
[risk]
{risk}
""" + "".join(f'[[markets]]\ncoin = "{m}"\n' for m in MARKETS)
    path = run_dir / "executor.toml"
    path.write_text(text)
    return parse_config(text, str(path)), path


class RiskHarness(Harness):
    """The executor harness that also keeps the hard-stop requests the executor sends the supervisor."""

    def __init__(self, cfg: Config, cfg_path: Path, run_dir: Path, key: str, sim: SimServer) -> None:
        super().__init__(cfg, cfg_path, run_dir, key, sim)
        self.requests: list[HardStopRequest] = []

    def tick(self) -> None:
        self.feed.pump()
        self.positions.on_subscription()
        for m in self.inbox.drain():
            if isinstance(m, Ready) and m.actor == "executor":
                self.ready_msgs.append(m)
            elif isinstance(m, Heartbeat) and m.actor == "executor":
                self.stats_by_pid[m.pid] = dict(m.stats)
            elif isinstance(m, HardStopRequest) and m.source == "executor":
                self.requests.append(m)

    def close(self, pnl: str, fees: str = "0") -> PositionClosed:
        """A position closed at a loss, as the position tracker reports it."""
        now_ms = int(time.time() * 1000)
        closed = PositionClosed(
            coin="xyz:GOLD", is_long=True, size=Decimal(1), entry_px=Decimal(100), exit_px=Decimal(99),
            pnl_usd=Decimal(pnl), fees_usd=Decimal(fees), hold_ms=1000, exit_reason="time_stop", closed_ms=now_ms)
        self.positions.publish(closed)
        time.sleep(0.002)  # distinct close times, as distinct closes have
        return closed

    def saved(self) -> RiskState | None:
        try:
            return RiskStateStore(self.run_dir).load()
        except RiskStateError:
            return None

    def requested(self, prefix: str) -> bool:
        return any(r.reason.startswith(prefix) for r in self.requests)


@pytest.fixture
def make(run_dir: Path, sim_server: SimServer, paper_key: str) -> Iterator[Callable[[str], RiskHarness]]:
    made: list[RiskHarness] = []

    def _make(risk: str) -> RiskHarness:
        cfg, path = _config(run_dir, sim_server, account_of(paper_key), risk)
        made.append(RiskHarness(cfg, path, run_dir, paper_key, sim_server))
        return made[-1]

    yield _make
    for h in made:
        h.stop()


@pytest.mark.parametrize(
    ("risk", "losses", "is_saved", "trip", "reason"),
    [
        # 3 losses in a row allowed; the 4th latches
        ("max_consecutive_failures = 3\nmax_loss_usd = 1000.0\ndaily_loss_cap_usd = 1000.0",
         [("-1", "0")] * 3, lambda s: s.risk.consecutive_losses == 3, ("-1", "0"), "consecutive_losses: 4 > 3"),
        # $19.50 lost (net of fees) of a $20 limit; the next 60 cents trip it
        ("max_consecutive_failures = 100\nmax_loss_usd = 20.0\ndaily_loss_cap_usd = 1000.0",
         [("-12", "0.5"), ("-6.5", "0.5")], lambda s: s.risk.realized_usd == Decimal("-19.5"), ("0.4", "1.0"),
         "max_loss: realised pnl -20.1 < -20"),
    ],
    ids=["consecutive_losses", "max_loss"],
)
def test_a_loss_limit_one_short_trips_on_the_next_loss_after_a_sigkill(
        make: Callable[[str], RiskHarness], risk: str, losses: list[tuple[str, str]],
        is_saved: Callable[[RiskState], bool], trip: tuple[str, str], reason: str) -> None:
    h = make(risk)
    h.start()
    for pnl, fees in losses:
        h.close(pnl, fees)
    # The executor counted them (and saved them at the end of that loop turn), without tripping.
    assert wait(lambda: (s := h.saved()) is not None and is_saved(s), 10, h.tick), h.saved()
    assert not h.requests
    h.kill()
    h.start()
    time.sleep(0.2)
    h.tick()
    assert not h.requests  # nothing fired at the restart itself
    h.close(*trip)
    assert wait(lambda: h.requested(reason), 10, h.tick), [r.reason for r in h.requests]


def test_the_daily_cap_crosses_a_restart_and_refuses_entries(make: Callable[[str], RiskHarness]) -> None:
    h = make("max_loss_usd = 1000.0\nmax_consecutive_failures = 100\ndaily_loss_cap_usd = 10.0")
    h.start()
    h.close("-5.5", "0.5")  # $6 of the day's $10
    assert wait(lambda: (s := h.saved()) is not None and s.risk.daily_realized_usd == Decimal(-6), 10, h.tick)
    h.kill()
    h.start()
    before = h.stats().get("entry_intents", 0)
    h.close("-3.5", "0.5")  # $10 of $10: the cap, reached across the restart
    assert wait(lambda: h.requested("daily_loss: realised pnl on "), 10, h.tick), [r.reason for r in h.requests]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert any(today in r.reason and "<= -10" in r.reason for r in h.requests)
    # No supervisor latched it here: the executor's own gate refuses the next entry all the same.
    assert h.intents.send(entry(h.sim, "xyz:GOLD", is_buy=True))
    assert wait(lambda: h.stats().get("entry_rejected:DailyLossCap", 0) == 1, 10, h.tick), h.stats()
    assert h.stats().get("entry_intents", 0) == before + 1


def test_a_damaged_risk_state_fails_closed_in_a_real_executor(make: Callable[[str], RiskHarness],
                                                              run_dir: Path) -> None:
    h = make("max_loss_usd = 1000.0")
    h.start()
    h.close("-5")
    assert wait(lambda: (s := h.saved()) is not None and s.risk.realized_usd == Decimal(-5), 10, h.tick)
    h.kill()
    slots = [run_dir / f"{STATE_FILE}.a", run_dir / f"{STATE_FILE}.b"]
    damaged = [p.read_bytes()[:-30] for p in slots]  # both torn: no save left to continue from
    for p, d in zip(slots, damaged, strict=True):
        p.write_bytes(d)
    h.start()  # READY all the same: a hard-stop flatten needs this executor
    assert wait(lambda: h.requested(f"risk state {slots[0]} fails its checksum"), 10, h.tick), h.requests
    text = h.requests[-1].reason
    assert "\n" not in text and "entries refused until the operator resets the hard stop" in text
    assert h.intents.send(entry(h.sim, "xyz:GOLD", is_buy=True))
    assert wait(lambda: h.stats().get("entry_rejected:RiskStateUnusable", 0) == 1, 10, h.tick), h.stats()
    h.close("-1")
    time.sleep(0.3)
    assert [p.read_bytes() for p in slots] == damaged  # never overwritten with a state started from zero


def test_losses_booked_while_the_executor_was_down_count_from_the_recorders_journal(
        make: Callable[[str], RiskHarness], run_dir: Path) -> None:
    """An IOC flatten sent just before the crash fills after it: its close reaches no executor on the bus,
    but the recorder journals it, and the restarted executor counts it (once)."""
    from hip3.journal.db import JournalWriter
    from hip3.journal.schema import JOURNAL_FILE

    h = make("max_consecutive_failures = 3\nmax_loss_usd = 1000.0\ndaily_loss_cap_usd = 1000.0")
    recorder = JournalWriter(run_dir / JOURNAL_FILE)
    h.start()
    for _ in range(2):
        assert recorder.add(h.close("-1"))
    assert wait(lambda: (s := h.saved()) is not None and s.risk.consecutive_losses == 2, 10, h.tick)
    h.kill()
    for _ in range(2):  # published while no executor runs: only the recorder gets them
        assert recorder.add(h.close("-1"))
    recorder.flush()
    recorder.close()
    h.start()
    assert wait(lambda: h.requested("consecutive_losses: 4 > 3"), 10, h.tick), [r.reason for r in h.requests]
    assert wait(lambda: (s := h.saved()) is not None and s.risk.realized_usd == Decimal(-4), 10, h.tick), h.saved()

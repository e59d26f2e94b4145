"""Two exchange refusals that must not drive the hard stop: an insufficient-margin refusal (an unfunded dex)
never counts toward the rejection trigger, and a close refused below the $10 minimum ends the hard-stop
flatten in a defined state ("done, dust left") instead of a retry loop."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

from hip3.execution.core import ExecutionCore
from hip3.execution.dust import DustBook
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.journal import SentIntentJournal
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.hyperliquid.errors import ERR_MIN_TRADE_NTL, ERR_PERP_MARGIN
from hip3.hyperliquid.responses import ExchangeResponse
from hip3.messages import OrderRejected
from tests.execution.helpers import GOLD, MS, SILVER, SPECS, TSLA, D, answer, entry, pos, snap
from tests.terms_helpers import known_terms

NOW_MS = 1_700_000_000_000


def ok(*statuses: object) -> ExchangeResponse:
    return answer({"type": "action", "payload": {"status": "ok", "response": {"type": "order",
                                                                               "data": {"statuses": list(statuses)}}}})


def make(tmp_path: Path, risk: RiskParams) -> ExecutionCore:
    cl = itertools.count(1)
    j = SentIntentJournal(tmp_path, now_ms=NOW_MS, retention_ms=600_000)
    core = ExecutionCore(ExecutorParams(max_total_notional_usd=1000.0), risk, SoftGateParams(), SPECS, j,
                         make_cloid=lambda: f"0x{next(cl):032x}", terms=known_terms(SPECS))
    for c in SPECS:
        core.gates.set_mark(c, 10.0)
    return core


def _send_all(core: ExecutionCore, post_id: int, now_ns: int) -> int:
    b = core.next_batch(now_ns)
    assert b is not None
    core.prepare_send(b, NOW_MS)
    core.on_sent(b, post_id, post_id, now_ns)
    return len(b.orders)


def test_margin_refusals_never_latch_the_rejection_trigger(tmp_path: Path) -> None:
    core = make(tmp_path, RiskParams(max_rejections_per_bucket=1))
    for i, coin in enumerate((GOLD, SILVER, TSLA), start=1):
        v, _ = core.submit_entry(entry(coin), snapshot=snap(), now_ns=i, now_ms=NOW_MS)
        assert v.accepted, v
        n = _send_all(core, i, i)
        events = core.on_post_response(i, ok(*[{"error": f"{ERR_PERP_MARGIN} asset=110000"}] * n), i, NOW_MS)
        rej = [e for e in events if isinstance(e, OrderRejected)]
        assert rej and all(r.benign for r in rej)
    # Three refusals with a trigger at one: an unfunded dex latched the hard stop before.
    assert core.take_hardstop_request() is None
    assert core.risk.rejections_in_bucket == 0


def test_a_close_refused_below_the_minimum_ends_the_hard_stop_with_dust_listed(tmp_path: Path) -> None:
    risk = RiskParams(flatten_fast_attempts=3, flatten_fast_interval_ms=1000)
    core = make(tmp_path, risk)
    flattener = HardStopFlattener(risk, SPECS, dust=core.dust)
    marks = {GOLD: D(10), SILVER: D(10)}
    view = snap(pos(GOLD, "0.5"), pos(SILVER, "3"))  # GOLD is worth $5: below the exchange's $10
    core.on_snapshot(view)
    flattener.start(1, 0)
    step = flattener.step(snapshot=view, marks=marks, inflight_posts=0, now_ns=0)
    assert {o.coin for o in step.orders} == {GOLD, SILVER}
    core.submit_hardstop(step)
    assert _send_all(core, 1, 0) == 2
    gold_first = [o.coin for o in step.orders] == [GOLD, SILVER]
    statuses = [{"error": ERR_MIN_TRADE_NTL + " asset=110000"}, {"filled": {"totalSz": "3", "avgPx": "9.95",
                                                                              "oid": 5}}]
    events = core.on_post_response(1, ok(*(statuses if gold_first else statuses[::-1])), 1, NOW_MS)
    assert any(isinstance(e, OrderRejected) and e.coin == GOLD and e.benign for e in events)
    assert core.dust.stuck() == {GOLD: D("0.5")}
    assert len(core.dust.take_new()) == 1 and core.dust.take_new() == []  # said once

    after = snap(pos(GOLD, "0.5"))  # SILVER closed; GOLD is still there
    core.on_snapshot(after)
    progress = []
    for t in range(1, 30):  # 29 s of hard-stop steps: no new order for the dust, then "done"
        s = flattener.step(snapshot=after, marks=marks, inflight_posts=0, now_ns=t * 1000 * MS)
        assert not s.orders and not s.cancels
        if s.progress is not None:
            progress.append(s.progress)
    assert len(progress) == 1
    done = progress[0]
    assert done.done and done.positions == 0 and done.alert and done.dust == ("xyz:GOLD 0.5",)

    # The position changes (a late fill doubled it): it is worth closing again.
    grown = snap(pos(GOLD, "1.5"))
    core.on_snapshot(grown)
    assert not core.dust.is_stuck(GOLD)
    s = flattener.step(snapshot=grown, marks=marks, inflight_posts=0, now_ns=40_000 * MS)
    assert [o.coin for o in s.orders] == [GOLD] and s.orders[0].sz == D("1.5")


def test_only_the_minimum_value_refusal_makes_dust() -> None:
    book = DustBook()
    assert not book.on_rejected(GOLD, D("0.5"), "exchange: Reduce only order would increase position.")
    assert not book.on_rejected(GOLD, None, "exchange: " + ERR_MIN_TRADE_NTL)  # size unknown: no claim
    assert book.on_rejected(GOLD, D("0.5"), "exchange: minTradeNtlRejected")
    assert not book.on_rejected(GOLD, D("0.5"), "exchange: " + ERR_MIN_TRADE_NTL)  # already known
    line = book.take_new()[0]
    assert line.startswith("xyz:GOLD: the exchange refused to close 0.5 (below its $10 minimum order value")
    assert "close it by hand" in line
    assert book.observe_all([(SILVER, Decimal(1))]) == [GOLD]  # flat now: forgotten

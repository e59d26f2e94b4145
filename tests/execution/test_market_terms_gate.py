"""The executor and the market terms (hip3/execution/core.py with hip3/account/market_terms.py): no entry without
known, fresh terms; none into a market at its open-interest cap (refused before signing, with its own
reason); an exchange refusal for the cap is benign for the hard stop and blocks the market for a while;
exits are never refused for the cap and go out no more aggressive than the oracle while it lasts; the fee
the detector assumed travels to ``OrderSubmitted``."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest

from hip3.account.market_terms import MarketTermsParams, TermsView
from hip3.execution.batch import QueuedOrder
from hip3.execution.core import ExecutionCore
from hip3.execution.hardstop import HardStopStep
from hip3.execution.journal import SentIntentJournal
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.hyperliquid.errors import ERR_OI_CAP, ERR_OI_INCREASE, ERR_TOO_AGGRESSIVE_AT_OI_CAP
from hip3.hyperliquid.responses import ExchangeResponse
from hip3.messages import OrderRejected, OrderSubmitted
from tests.execution.helpers import GOLD, SILVER, SPECS, D, answer, entry, flatten, pos, snap
from tests.terms_helpers import terms_msg

NOW_MS = 1_700_000_000_000
PARAMS = MarketTermsParams(max_age_s=300, at_cap_max_age_s=60, cap_refusal_block_ms=10_000)


def make(tmp_path: Path, terms: TermsView | None) -> ExecutionCore:
    cl = itertools.count(1)
    core = ExecutionCore(ExecutorParams(max_total_notional_usd=1000.0), RiskParams(max_rejections_per_bucket=0),
                         SoftGateParams(), SPECS, SentIntentJournal(tmp_path, now_ms=NOW_MS, retention_ms=600_000),
                         make_cloid=lambda: f"0x{next(cl):032x}", terms=terms)
    for c in SPECS:
        core.gates.set_mark(c, 10.0)
        core.oracles[c] = 10.0
    return core


def view(**kw: object) -> TermsView:
    v = TermsView(PARAMS, SPECS)
    v.update(terms_msg(SPECS, 9.0, fees_ms=NOW_MS, **kw))  # type: ignore[arg-type]
    return v


def ok(*statuses: object) -> ExchangeResponse:
    return answer({"type": "action", "payload": {"status": "ok", "response": {"type": "order",
                                                                               "data": {"statuses": list(statuses)}}}})


def test_no_terms_no_entry(tmp_path: Path) -> None:
    core = make(tmp_path, None)  # the executor's default: nothing known
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert (v.outcome, v.reason) == ("rejected", "MarketTermsUnknown")
    assert core.next_batch(0) is None and len(core.gates.pending) == 0  # nothing queued, nothing marked


def test_old_terms_no_entry(tmp_path: Path) -> None:
    core = make(tmp_path, view())
    assert core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS + 59_000)[0].accepted
    v, _ = core.submit_entry(entry(SILVER), snapshot=snap(), now_ns=0, now_ms=NOW_MS + 61_000)
    assert (v.reason, v.detail) == ("MarketTermsStale", "the last open-interest cap read is older than "
                                                        "at_cap_max_age_s (60 s)")


def test_hard_stop_is_named_first(tmp_path: Path) -> None:
    core = make(tmp_path, None)
    core.set_hard_stop(True, 0)
    assert core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)[0].reason == "HardStop"


def test_entry_at_the_cap_is_refused_before_signing_and_others_go(tmp_path: Path) -> None:
    core = make(tmp_path, view(at_cap=[GOLD]))
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert (v.outcome, v.reason, v.detail) == ("rejected", "OpenInterestCap",
                                               "xyz:GOLD listed at its open-interest cap by the exchange")
    assert core.submit_entry(entry(SILVER), snapshot=snap(), now_ns=0, now_ms=NOW_MS)[0].accepted
    b = core.next_batch(0)
    assert b is not None and [o.coin for o in b.orders] == [SILVER]


def test_live_open_interest_at_the_cap_refuses_entries(tmp_path: Path) -> None:
    core = make(tmp_path, view(oi_cap_usd=5_000.0))
    core.terms.on_ctx(GOLD, 500.0, 10.0)  # $5,000 of open interest on the market stream
    assert core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)[0].reason == "OpenInterestCap"


@pytest.mark.parametrize("text", [ERR_OI_CAP, ERR_TOO_AGGRESSIVE_AT_OI_CAP, ERR_OI_INCREASE,
                                  ERR_OI_CAP + " asset=110000"])
def test_a_cap_refusal_never_counts_toward_the_hard_stop_and_blocks_the_market(tmp_path: Path, text: str) -> None:
    core = make(tmp_path, view())  # max_rejections_per_bucket = 0: one counted rejection would latch
    assert core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)[0].accepted
    b = core.next_batch(0)
    assert b is not None
    core.prepare_send(b, NOW_MS)
    core.on_sent(b, 1, 1, 0)
    events = core.on_post_response(1, ok({"error": text}), 5, NOW_MS)
    rej = [e for e in events if isinstance(e, OrderRejected)]
    assert len(rej) == 1 and rej[0].benign
    assert core.take_hardstop_request() is None and core.risk.rejections_in_bucket == 0
    v, _ = core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS + 9_000)
    assert v.reason == "OpenInterestCap" and "refused an order for the cap" in v.detail
    assert core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS + 10_000)[0].accepted


def test_a_non_cap_refusal_still_counts(tmp_path: Path) -> None:
    core = make(tmp_path, view())
    assert core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)[0].accepted
    b = core.next_batch(0)
    assert b is not None
    core.prepare_send(b, NOW_MS)
    core.on_sent(b, 1, 1, 0)
    core.on_post_response(1, ok({"error": "Price must be divisible by tick size."}), 5, NOW_MS)
    assert core.take_hardstop_request() is not None  # the control: a real rejection latches at 0


def test_exits_at_the_cap_go_out_no_more_aggressive_than_the_oracle(tmp_path: Path) -> None:
    core = make(tmp_path, view(at_cap=[GOLD]))
    core.oracles[GOLD] = 10.0
    v = core.submit_flatten(flatten(GOLD, px="9.5"), now_ns=0, now_ms=NOW_MS)  # a sell 5 % under the oracle
    assert v.accepted
    b = core.next_batch(0)
    assert b is not None and b.orders[0].px == D("10") and b.orders[0].reduce_only
    core2 = make(tmp_path / "b", view())  # not at the cap: the exit's own price
    assert core2.submit_flatten(flatten(GOLD, px="9.5"), now_ns=0, now_ms=NOW_MS).accepted
    b2 = core2.next_batch(0)
    assert b2 is not None and b2.orders[0].px == D("9.5")


def test_hard_stop_orders_at_the_cap_are_clamped_too(tmp_path: Path) -> None:
    core = make(tmp_path, view(at_cap=[SILVER]))
    core.oracles[SILVER] = 10.0
    o = QueuedOrder(cloid="0x" + "a" * 32, intent_id="hs-1", coin=SILVER, asset=SPECS[SILVER].asset, is_buy=True,
                    px=D("10.5"), sz=D("2"), reduce_only=True, kind="hardstop")
    core.submit_hardstop(HardStopStep(cancels=(), orders=(o,), problems=(), progress=None), NOW_MS)
    b = core.next_batch(0)
    assert b is not None and b.orders[0].px == D("10") and b.orders[0].cloid == o.cloid


def test_the_assumed_fee_travels_to_the_order(tmp_path: Path) -> None:
    core = make(tmp_path, view())
    intent = msgspec.structs.replace(entry(GOLD), taker_fee_bps=9.0, fee_source="exchange")
    assert core.submit_entry(intent, snapshot=snap(pos(SILVER)), now_ns=0, now_ms=NOW_MS)[0].accepted
    b = core.next_batch(0)
    assert b is not None
    core.prepare_send(b, NOW_MS)
    (sub,) = core.on_sent(b, 1, 1, 0)
    assert isinstance(sub, OrderSubmitted) and sub.assumed_fee_bps == 9.0 and sub.fee_source == "exchange"

"""The simulator enforces the exchange's per-address limits with its texts: the action request budget
(``userRateLimit``) and the dead man's switch's volume gate and daily trigger limit. Engine level, virtual
clock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import eth_account

from hip3.hyperliquid.errors import (
    ERR_SCHEDULE_CANCEL_DAILY_PREFIX,
    parse_rate_limit_error,
    parse_schedule_cancel_volume_error,
)
from hip3.sim.engine import Engine
from hip3.sim.info import handle_info
from hip3.sim.params import SimParams
from tests.sim.helpers import order, signed

T0 = 1_769_594_000_000  # 2026-01-28 09:53:20 UTC
DAY = 86_400_000
TSLA = 110001  # xyz:TSLA, szDecimals 3


class Trader:
    def __init__(self, eng: Engine) -> None:
        acct = eth_account.Account.create()
        self.key, self.address, self.eng, self.nonce = acct.key.hex(), acct.address.lower(), eng, T0
        eng.fund(self.address, Decimal(100_000))

    def send(self, action: dict[str, Any], now: int = T0) -> dict[str, Any]:
        self.nonce += 1
        return self.eng.exchange(signed(self.key, action, self.nonce), now)

    def budget(self) -> dict[str, Any]:
        out: dict[str, Any] = handle_info(self.eng, {"type": "userRateLimit", "user": self.address}, T0)
        return out


def _miss(eng: Engine) -> dict[str, Any]:
    """An IOC far below the book: it counts against the budget and never fills (no volume)."""
    bid = eng.by_coin["xyz:TSLA"].book.best_bid()
    assert bid is not None
    return order(TSLA, True, eng.by_coin["xyz:TSLA"].px_str(bid * 9 // 10), "0.1", "Ioc")


def _cancels(n: int) -> dict[str, Any]:
    return {"type": "cancel", "cancels": [{"a": TSLA, "o": 1 + i} for i in range(n)]}


def test_the_budget_counts_every_order_and_refuses_with_the_exchanges_text() -> None:
    eng = Engine(SimParams(request_budget_initial=5), seed=3, now_ms=T0)
    t = Trader(eng)
    assert t.budget() == {"cumVlm": "0.0", "nRequestsUsed": 0, "nRequestsCap": 5, "nRequestsSurplus": 0}
    batch = _miss(eng)
    batch["orders"] = batch["orders"] * 3  # a batch of 3 counts 3
    assert t.send(batch)["status"] == "ok"
    assert t.send(_miss(eng))["status"] == "ok"
    assert t.budget()["nRequestsUsed"] == 4
    refused = t.send(batch, now=T0 + 1)  # 4 + 3 > 5: the whole request is refused, nothing counted
    assert refused["status"] == "err"
    assert refused["response"] == ("Too many cumulative requests sent (7 > 5) for cumulative volume traded $0. "
                                   "Place taker orders to free up 1 request per USDC traded.")
    assert parse_rate_limit_error(refused["response"]) == (7, 5)
    assert t.budget()["nRequestsUsed"] == 4
    assert t.send(_miss(eng), now=T0 + 2)["status"] == "ok"  # the last one within the cap
    assert t.budget()["nRequestsUsed"] == 5


def test_over_the_budget_one_request_every_ten_seconds_and_cancels_have_the_larger_limit() -> None:
    eng = Engine(SimParams(request_budget_initial=3), seed=3, now_ms=T0)
    t = Trader(eng)
    for i in range(3):
        assert t.send(_miss(eng), now=T0 + i)["status"] == "ok"
    assert t.send(_miss(eng), now=T0 + 10)["status"] == "ok"  # over: the one allowed every 10 s
    assert t.send(_miss(eng), now=T0 + 20)["status"] == "err"
    assert t.send(_miss(eng), now=T0 + 9_999)["status"] == "err"
    assert t.send(_miss(eng), now=T0 + 10_010)["status"] == "ok"
    # Cancels: min(cap + 100,000, 2 × cap) = 6 while the cap is 3; used is 5 now.
    assert t.send(_cancels(1), now=T0 + 10_020)["status"] == "ok"
    over = t.send(_cancels(2), now=T0 + 10_030)
    assert over["status"] == "err" and parse_rate_limit_error(over["response"]) == (8, 6)


def test_traded_volume_raises_the_cap() -> None:
    eng = Engine(SimParams(request_budget_initial=2), seed=3, now_ms=T0)
    t = Trader(eng)
    ask = eng.by_coin["xyz:TSLA"].book.best_ask()
    assert ask is not None
    assert t.send(order(TSLA, True, eng.by_coin["xyz:TSLA"].px_str(ask), "0.1", "Ioc"))["status"] == "ok"
    rl = t.budget()
    vlm = Decimal(rl["cumVlm"])
    assert vlm > 40 and rl["nRequestsCap"] == 2 + int(vlm) and rl["nRequestsUsed"] == 1


def test_dead_mans_switch_refused_below_the_volume_threshold_with_the_exchanges_text() -> None:
    eng = Engine(SimParams(schedule_cancel_min_volume_usd=1_000_000.0), seed=3, now_ms=T0)
    t = Trader(eng)
    r = t.send({"type": "scheduleCancel", "time": T0 + 60_000})
    assert r == {"status": "err", "response": "Cannot set scheduled cancel time until enough volume traded. "
                                              "Required: $1000000. Traded: $0."}
    assert parse_schedule_cancel_volume_error(r["response"]) == 1_000_000
    assert eng.accounts[t.address].schedule_cancel_ms is None
    assert t.send({"type": "scheduleCancel"})["status"] == "ok"  # removing it is never refused
    assert t.budget()["nRequestsUsed"] == 2  # each attempt was a request


def test_dead_mans_switch_daily_trigger_limit_resets_at_midnight_utc() -> None:
    eng = Engine(SimParams(schedule_cancel_min_volume_usd=0.0, schedule_cancel_daily_limit=2), seed=3, now_ms=T0)
    t = Trader(eng)
    now = T0
    for _ in range(2):
        assert t.send({"type": "scheduleCancel", "time": now + 5_000}, now=now)["status"] == "ok"
        now += 6_000
        eng.tick(now)  # it fires
    r = t.send({"type": "scheduleCancel", "time": now + 5_000}, now=now)
    assert r["status"] == "err" and r["response"].startswith(ERR_SCHEDULE_CANCEL_DAILY_PREFIX)
    midnight = (now // DAY + 1) * DAY
    assert t.send({"type": "scheduleCancel", "time": midnight + 5_000}, now=midnight)["status"] == "ok"

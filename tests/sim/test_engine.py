"""Matching and validation of the simulated exchange, on a virtual clock (no sockets)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import eth_account
import pytest

from hip3.hyperliquid.errors import (
    ERR_IOC_CANCEL,
    ERR_MIN_TRADE_NTL,
    ERR_ORACLE,
    ERR_REDUCE_ONLY,
    ERR_TICK,
)
from hip3.sim.engine import Engine
from hip3.sim.market import BadRequest
from hip3.sim.params import SimParams
from tests.sim.helpers import order, signed

T0 = 1_769_594_000_000
TSLA = 110001  # xyz:TSLA is universe[1], szDecimals 3


class Trader:
    def __init__(self, eng: Engine, usd: int = 100_000) -> None:
        acct = eth_account.Account.create()
        self.key = acct.key.hex()
        self.address = acct.address.lower()
        self.eng = eng
        self.nonce = T0
        eng.fund(self.address, Decimal(usd))

    def send(self, action: dict[str, Any], now: int = T0, **kw: Any) -> dict[str, Any]:
        self.nonce += 1
        return self.eng.exchange(signed(self.key, action, self.nonce, **kw), now)

    def status(self, action: dict[str, Any], now: int = T0) -> Any:
        r = self.send(action, now)
        assert r["status"] == "ok", r
        return r["response"]["data"]["statuses"][0]


@pytest.fixture
def eng() -> Engine:
    return Engine(SimParams(), seed=3, now_ms=T0)


def best(eng: Engine, coin: str = "xyz:TSLA") -> tuple[str, str]:
    m = eng.by_coin[coin]
    b, a = m.book.best_bid(), m.book.best_ask()
    assert b is not None and a is not None
    return m.px_str(b), m.px_str(a)


def test_ioc_fills_at_the_ask_with_taker_fee(eng: Engine) -> None:
    t = Trader(eng)
    _, ask = best(eng)
    st = t.status(order(TSLA, True, ask, "0.1", "Ioc"))
    assert st["filled"]["totalSz"] == "0.1" and Decimal(st["filled"]["avgPx"]) == Decimal(ask)
    fill = eng.accounts[t.address].fills[-1]
    assert fill["crossed"] is True and fill["dir"] == "Open Long" and fill["startPosition"] == "0.0"
    assert Decimal(fill["fee"]) == (Decimal(ask) * Decimal("0.1") * Decimal("0.0009")).quantize(
        Decimal("0.000001")
    )
    assert eng.accounts[t.address].positions[TSLA].szi == 100  # lots of 0.001


def test_validation_errors(eng: Engine) -> None:
    t = Trader(eng)
    bid, ask = best(eng)
    assert t.status(order(TSLA, True, "431.123", "0.1", "Gtc")) == {"error": ERR_TICK}
    assert t.status(order(TSLA, True, ask, "0.01", "Ioc")) == {"error": ERR_MIN_TRADE_NTL}
    assert t.status(order(TSLA, True, "1200", "0.1", "Gtc")) == {"error": ERR_ORACLE}
    st = t.status(order(TSLA, True, "400", "0.1", "Ioc"))
    assert st["error"].startswith(ERR_IOC_CANCEL) and st["error"].endswith(f"asset={TSLA}")
    st = t.status(order(TSLA, True, ask, "0.1", "Alo"))
    assert st["error"] == f"Post only order would have immediately matched, bbo was {bid}@{ask}."
    assert "resting" in t.status(order(TSLA, True, bid, "0.1", "Alo"))
    with pytest.raises(BadRequest):
        t.send(
            {
                "type": "order",
                "orders": [{"a": TSLA, "b": True, "p": 431, "s": "1", "r": False}],
                "grouping": "na",
            }
        )


def test_reduce_only(eng: Engine) -> None:
    t = Trader(eng)
    bid, ask = best(eng)
    assert t.status(order(TSLA, False, bid, "0.1", "Ioc", reduce_only=True)) == {"error": ERR_REDUCE_ONLY}
    t.status(order(TSLA, True, ask, "0.1", "Ioc"))
    assert t.status(order(TSLA, True, ask, "0.1", "Ioc", reduce_only=True)) == {"error": ERR_REDUCE_ONLY}
    st = t.status(order(TSLA, False, bid, "0.5", "Ioc", reduce_only=True))
    assert st["filled"]["totalSz"] == "0.1"  # cut to the position, never flips it
    acct = eng.accounts[t.address]
    assert acct.positions[TSLA].szi == 0
    close = acct.fills[-1]
    assert close["dir"] == "Close Long" and close["startPosition"] == "0.1"
    assert Decimal(close["closedPnl"]) == (Decimal(bid) - Decimal(ask)) * Decimal("0.1")


def test_users_match_price_time_and_maker_fee(eng: Engine) -> None:
    maker, taker = Trader(eng), Trader(eng)
    _bid, ask = best(eng)
    inside = str(Decimal(ask) - Decimal("0.01"))
    first = maker.status(order(TSLA, False, inside, "0.05", "Gtc"))["resting"]["oid"]
    second = maker.status(order(TSLA, False, inside, "0.05", "Gtc"))["resting"]["oid"]
    st = taker.status(order(TSLA, True, inside, "0.07", "Ioc"))
    assert st["filled"] == {"totalSz": "0.07", "avgPx": inside, "oid": st["filled"]["oid"]}
    macct = eng.accounts[maker.address]
    assert first not in macct.open_orders and macct.open_orders[second].sz == 30
    mf = macct.fills[-1]
    assert mf["crossed"] is False and mf["side"] == "A" and mf["dir"] == "Open Short"
    assert Decimal(mf["fee"]) == (Decimal(inside) * Decimal("0.02") * Decimal("0.0003")).quantize(
        Decimal("0.000001")
    )
    ups = eng.outbox.order_updates[maker.address]
    assert [u["status"] for u in ups][-2:] == ["filled", "open"]
    assert ups[-1]["order"]["sz"] == "0.03" and ups[-1]["order"]["origSz"] == "0.05"


def test_schedule_cancel_really_cancels_on_the_clock() -> None:
    eng = Engine(SimParams(schedule_cancel_min_volume_usd=0.0), seed=3, now_ms=T0)  # no volume gate here
    t = Trader(eng)
    bid, _ = best(eng)
    low = str(Decimal(bid) - 1)
    oid = t.status(order(TSLA, True, low, "0.1", "Gtc"))["resting"]["oid"]
    too_early = t.send({"type": "scheduleCancel", "time": T0 + 4999})
    assert too_early["status"] == "err"
    assert t.send({"type": "scheduleCancel", "time": T0 + 6000}) == {
        "status": "ok",
        "response": {"type": "default"},
    }
    eng.tick(T0 + 5999)
    assert oid in eng.accounts[t.address].open_orders
    eng.tick(T0 + 6000)
    assert eng.accounts[t.address].open_orders == {}
    assert eng.outbox.order_updates[t.address][-1]["status"] == "scheduledCancel"
    assert all(o.oid != oid for o in eng.by_asset[TSLA].book.orders())
    # Omitting time removes the schedule.
    t.status(order(TSLA, True, low, "0.1", "Gtc"), now=T0 + 7000)
    t.send({"type": "scheduleCancel", "time": T0 + 20_000}, now=T0 + 7000)
    t.send({"type": "scheduleCancel"}, now=T0 + 7001)
    eng.tick(T0 + 30_000)
    assert len(eng.accounts[t.address].open_orders) == 1


def test_nonces_and_signers(eng: Engine) -> None:
    t = Trader(eng)
    noop = {"type": "noop"}
    assert eng.exchange(signed(t.key, noop, T0 + 500), T0)["status"] == "ok"
    assert eng.exchange(signed(t.key, noop, T0 + 500), T0) == {
        "status": "err",
        "response": f"Invalid nonce: duplicate nonce {T0 + 500}",
    }
    for i in range(100):
        eng.exchange(signed(t.key, noop, T0 + 1000 + i), T0)
    r = eng.exchange(signed(t.key, noop, T0 + 999), T0)
    assert r == {"status": "err", "response": f"Invalid nonce: nonce too low {T0 + 999} < {T0 + 1000}"}
    assert eng.exchange(signed(t.key, noop, T0 - 3 * 86_400_000), T0)["status"] == "err"
    stranger = eth_account.Account.create()
    r = eng.exchange(signed(stranger.key.hex(), noop, T0), T0)
    assert r == {
        "status": "err",
        "response": f"L1 error: User or API Wallet {stranger.address.lower()} does not exist.",
    }
    expired = eng.exchange(signed(t.key, noop, T0 + 5000, expires_after=T0 - 1), T0)
    assert expired["status"] == "err"


def test_agent_trades_for_master(eng: Engine) -> None:
    master = Trader(eng)
    agent = eth_account.Account.create()
    _, ask = best(eng)
    body = signed(agent.key.hex(), order(TSLA, True, ask, "0.1", "Ioc"), T0 + 1)
    assert eng.exchange(body, T0)["status"] == "err"
    eng.auth.approve(master.address, agent.address)
    body = signed(agent.key.hex(), order(TSLA, True, ask, "0.1", "Ioc"), T0 + 2)
    assert "filled" in eng.exchange(body, T0)["response"]["data"]["statuses"][0]
    assert eng.accounts[master.address].positions[TSLA].szi == 100


def test_cancel_by_cloid_and_margin(eng: Engine) -> None:
    t = Trader(eng, usd=50)
    bid, _ = best(eng)
    cloid = "0x" + "ab" * 16
    t.status(order(TSLA, True, bid, "0.1", "Gtc", cloid=cloid))
    r = t.send({"type": "cancelByCloid", "cancels": [{"asset": TSLA, "cloid": cloid}]})
    assert r["response"]["data"]["statuses"] == ["success"]
    assert t.status(order(TSLA, True, bid, "5", "Gtc")) == {"error": "Insufficient margin to place order."}

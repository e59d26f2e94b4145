"""The simulator's clock offset (its clock = host + offset, for every timestamp and time check) and its rule
for a reduce-only order below the $10 minimum ([UNVERIFIED], hip3.hyperliquid.rules)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import eth_account
import pytest

from hip3.hyperliquid.errors import ERR_MIN_TRADE_NTL
from hip3.hyperliquid.rest import RestClient
from hip3.hyperliquid.rules import REDUCE_ONLY_MIN_VALUE
from hip3.hyperliquid.signing import sign_l1_action
from hip3.sim.app import SimServer
from hip3.sim.engine import Engine
from hip3.sim.params import SimParams
from tests.sim.conftest import FAST
from tests.sim.helpers import order
from tests.sim.test_engine import T0, TSLA, Trader, best


def _tsla_long(eng: Engine, t: Trader, sz: str) -> None:
    _, ask = best(eng)
    assert "filled" in t.status(order(TSLA, True, ask, sz, "Ioc"))


@pytest.mark.parametrize(("rule", "full", "partial"), [
    ("exempt_full_close", "filled", ERR_MIN_TRADE_NTL),
    ("enforced", ERR_MIN_TRADE_NTL, ERR_MIN_TRADE_NTL),
    ("exempt", "filled", "filled"),
])
def test_a_reduce_only_order_below_ten_dollars(rule: str, full: str, partial: str) -> None:
    eng = Engine(SimParams(reduce_only_min_value=rule), seed=3, now_ms=T0)  # type: ignore[arg-type]
    t = Trader(eng)
    _tsla_long(eng, t, "0.05")  # 0.05 TSLA: about $21.5; sell 0.035 (~$15) non-reduce-only leaves ~$6.5
    bid, _ = best(eng)
    assert "filled" in t.status(order(TSLA, False, bid, "0.035", "Ioc"))
    assert eng.accounts[t.address].positions[TSLA].szi == 15  # 0.015 TSLA, about $6.5: dust
    bid, _ = best(eng)

    def close(sz: str) -> Any:
        st = t.status(order(TSLA, False, bid, sz, "Ioc", reduce_only=True))
        return "filled" if "filled" in st else st.get("error")

    assert close("0.005") == partial  # a partial close of the dust
    left = eng.accounts[t.address].positions[TSLA].szi
    # The whole remainder (a larger size is cut to the position): exempt unless the rule is "enforced".
    assert close("0.02") == full
    assert eng.accounts[t.address].positions[TSLA].szi == (left if full != "filled" else 0)
    # An order that opens is never exempt.
    _, ask = best(eng)
    assert t.status(order(TSLA, True, ask, "0.005", "Ioc"))["error"] == ERR_MIN_TRADE_NTL


def test_the_default_rule_is_the_single_unverified_constant() -> None:
    assert SimParams().reduce_only_min_value == REDUCE_ONLY_MIN_VALUE == "exempt_full_close"


@pytest.mark.parametrize("offset_ms", [10_000, -10_000])
def test_the_simulator_clock_is_the_host_clock_plus_its_offset(offset_ms: int, tmp_path: Path) -> None:
    wallet = eth_account.Account.create()
    sim = SimServer(SimParams(model=FAST.model, clock_offset_ms=offset_ms, schedule_cancel_min_volume_usd=0.0), seed=1,
                    funds={wallet.address.lower(): Decimal(10_000)}, order_log=str(tmp_path / "orders.jsonl"))
    sim.start()
    try:
        rest = RestClient(sim.url)
        host_ms = int(time.time() * 1000)
        state = rest.clearinghouse_state(wallet.address, "xyz")
        assert state.time is not None and abs(state.time - (host_ms + offset_ms)) < 1000
        book = rest.info({"type": "l2Book", "coin": "xyz:GOLD"})
        assert abs(book["time"] - (host_ms + offset_ms)) < 1000

        def send(action: dict[str, Any], nonce: int, expires: int | None) -> Any:
            sig = sign_l1_action(wallet.key.hex(), action, None, nonce, False, expires)
            return rest.exchange({"action": action, "nonce": nonce, "signature": sig, "vaultAddress": None,
                                  "expiresAfter": expires})

        # expiresAfter 5 s ahead of the HOST: fine when the exchange is behind, expired when it is ahead.
        now = int(time.time() * 1000)
        r = send({"type": "noop"}, now, now + 5000)
        assert r.ok == (offset_ms < 0), r
        if offset_ms > 0:
            assert (r.error or "").startswith("Action expired")
        # The same, 5 s ahead of the EXCHANGE's clock: accepted either way.
        now = int(time.time() * 1000)
        assert send({"type": "noop"}, now + 1, now + offset_ms + 5000).ok
        # scheduleCancel must be 5 s ahead of the exchange's time.
        now = int(time.time() * 1000)
        r = send({"type": "scheduleCancel", "time": now + 8000}, now + 2, None)
        assert r.ok == (offset_ms < 0), r
        now = int(time.time() * 1000)
        assert send({"type": "scheduleCancel", "time": now + offset_ms + 8000}, now + 3, None).ok
        log = [json.loads(x) for x in (tmp_path / "orders.jsonl").read_text().splitlines()]
        assert all(abs(rec["time_ms"] - (host_ms + offset_ms)) < 5000 for rec in log)
        assert [rec["expires_after"] is not None for rec in log if rec["action_type"] == "noop"]
    finally:
        sim.stop()

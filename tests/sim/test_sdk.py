"""The official Python SDK (test-only oracle) works against the simulator unchanged."""

from __future__ import annotations

import threading
import time
from typing import Any

from eth_account.signers.local import LocalAccount
from hyperliquid.api import API
from hyperliquid.exchange import Exchange
from hyperliquid.info import Info
from hyperliquid.utils.signing import (
    get_timestamp_ms,
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
)

from hip3.sim.app import SimServer


def wait_for(pred: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_info_calls_parse(sim: SimServer, wallet: LocalAccount) -> None:
    info = Info(sim.url, skip_ws=True, perp_dexs=["xyz"])
    assert info.perp_dexs()[0] is None and info.perp_dexs()[1]["name"] == "xyz"
    meta = info.meta(dex="xyz")
    names = [u["name"] for u in meta["universe"]]
    assert info.coin_to_asset["xyz:SILVER"] == 110000 + names.index("xyz:SILVER")
    assert all(u["onlyIsolated"] and u["marginMode"] == "strictIsolated" for u in meta["universe"])
    assert [u["name"] for u in info.meta()["universe"]] == ["BTC", "ETH"]
    state = info.user_state(wallet.address, "xyz")
    assert state["marginSummary"]["accountValue"] == "100000.0" and "withdrawable" in state
    assert info.open_orders(wallet.address, "xyz") == []
    assert info.user_fills(wallet.address) == []
    book = info.l2_snapshot("xyz:GOLD")
    assert book["coin"] == "xyz:GOLD" and len(book["levels"][0]) == 5
    assert float(book["levels"][0][0]["px"]) < float(book["levels"][1][0]["px"])
    mids = info.all_mids("xyz")
    assert set(mids) == set(names)
    meta_ctx = info.meta_and_asset_ctxs()
    assert len(meta_ctx) == 2


def test_exchange_ioc_fills_gtc_rests_and_cancels_and_ws_sees_it(
    sim: SimServer, wallet: LocalAccount
) -> None:
    info = Info(sim.url, skip_ws=False, perp_dexs=["xyz"])
    try:
        bbos: list[Any] = []
        fills: list[Any] = []
        updates: list[Any] = []
        info.subscribe({"type": "bbo", "coin": "xyz:GOLD"}, bbos.append)
        info.subscribe({"type": "userFills", "user": wallet.address}, fills.append)
        info.subscribe({"type": "orderUpdates", "user": wallet.address}, updates.append)
        wait_for(lambda: bbos and fills)
        assert fills[0]["data"]["isSnapshot"] is True
        bid, ask = bbos[-1]["data"]["bbo"]
        assert float(bid["px"]) < float(ask["px"])
        ex = Exchange(wallet, sim.url, perp_dexs=["xyz"])
        r = ex.order("xyz:GOLD", True, 0.01, round(float(ask["px"]) * 1.002, 1), {"limit": {"tif": "Ioc"}})
        st = r["response"]["data"]["statuses"][0]
        assert r["status"] == "ok" and st["filled"]["totalSz"] == "0.01", r
        wait_for(lambda: len(fills) >= 2)
        live = fills[1]["data"]
        assert "isSnapshot" not in live and live["fills"][0]["oid"] == st["filled"]["oid"]
        wait_for(lambda: updates)
        assert isinstance(updates[0]["data"], list) and updates[0]["data"][0]["status"] == "filled"
        r = ex.order("xyz:GOLD", True, 0.01, round(float(bid["px"]) * 0.98, 1), {"limit": {"tif": "Gtc"}})
        oid = r["response"]["data"]["statuses"][0]["resting"]["oid"]
        assert [o["oid"] for o in info.open_orders(wallet.address, "xyz")] == [oid]
        assert ex.cancel("xyz:GOLD", oid)["response"]["data"]["statuses"] == ["success"]
        again = ex.cancel("xyz:GOLD", oid)["response"]["data"]["statuses"]
        assert again == [{"error": "Order was never placed, already canceled, or filled."}]
        pos = info.user_state(wallet.address, "xyz")["assetPositions"]
        assert pos[0]["position"]["coin"] == "xyz:GOLD" and pos[0]["position"]["szi"] == "0.01"
        assert info.user_state(wallet.address)["assetPositions"] == []
        assert info.user_fills(wallet.address)[0]["oid"] == st["filled"]["oid"]
    finally:
        info.disconnect_websocket()


def test_bad_signature_and_reused_nonce_refused(sim: SimServer, wallet: LocalAccount) -> None:
    ex = Exchange(wallet, sim.url, perp_dexs=["xyz"])
    asset = ex.info.name_to_asset("xyz:TSLA")
    wire = order_request_to_order_wire(
        {
            "coin": "xyz:TSLA",
            "is_buy": True,
            "sz": 0.1,
            "limit_px": 400.0,
            "order_type": {"limit": {"tif": "Gtc"}},
            "reduce_only": False,
        },
        asset,
    )
    action = order_wires_to_order_action([wire])
    nonce = get_timestamp_ms()
    sig = sign_l1_action(wallet, action, None, nonce, None, False)
    api = API(sim.url)
    tampered = {**action, "orders": [{**wire, "p": "401"}]}
    r = api.post("/exchange", {"action": tampered, "nonce": nonce, "signature": sig, "vaultAddress": None})
    assert r["status"] == "err" and r["response"].startswith("L1 error: User or API Wallet 0x")
    assert wallet.address.lower() not in r["response"]
    body = {"action": action, "nonce": nonce, "signature": sig, "vaultAddress": None, "expiresAfter": None}
    assert api.post("/exchange", body)["status"] == "ok"
    assert api.post("/exchange", body) == {
        "status": "err",
        "response": f"Invalid nonce: duplicate nonce {nonce}",
    }


def test_sdk_approve_agent_then_agent_trades(sim: SimServer, wallet: LocalAccount) -> None:
    import eth_account

    ex = Exchange(wallet, sim.url, perp_dexs=["xyz"])
    r, agent_key = ex.approve_agent()
    assert r == {"status": "ok", "response": {"type": "default"}}
    agent = eth_account.Account.from_key(agent_key)
    ax = Exchange(agent, sim.url, perp_dexs=["xyz"], account_address=wallet.address)
    assert ax.schedule_cancel(None) == {"status": "ok", "response": {"type": "default"}}
    done = threading.Event()
    r = ax.market_open("xyz:NVDA", True, 0.1)
    done.set()
    assert "filled" in r["response"]["data"]["statuses"][0], r
    assert ex.info.user_state(wallet.address, "xyz")["assetPositions"][0]["position"]["coin"] == "xyz:NVDA"

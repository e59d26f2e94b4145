"""Bad input, fault injection, the control endpoint, the order log, params and the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from eth_account.signers.local import LocalAccount

from hip3.hyperliquid.errors import ERR_WS_BAD_REQUEST
from hip3.sim.app import SimServer
from hip3.sim.params import SimParams, SimParamsError
from tests.sim.helpers import order, signed

TSLA = 110001


def ws_connect(sim: SimServer) -> websocket.WebSocket:
    ws = websocket.create_connection(sim.ws_url, timeout=5)
    assert ws.recv() == "Websocket connection established."
    return ws


def recv_until(ws: websocket.WebSocket, pred: Any, limit: int = 500) -> dict[str, Any]:
    for _ in range(limit):
        raw = ws.recv()
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if pred(msg):
            return msg  # type: ignore[no-any-return]
    raise AssertionError("no matching frame")


def key_of(w: LocalAccount) -> str:
    return w.key.hex()


def test_malformed_http_gets_422_and_server_survives(sim: SimServer) -> None:
    for path in ("/info", "/exchange"):
        r = requests.post(sim.url + path, data=b"{not json", timeout=5)
        assert r.status_code == 422 and r.text.startswith("Failed to deserialize the JSON body")
    r = requests.post(sim.url + "/info", json={"type": "noSuchThing"}, timeout=5)
    assert r.status_code == 422
    r = requests.post(sim.url + "/exchange", json={"action": {"type": "order"}, "nonce": "x"}, timeout=5)
    assert r.status_code == 422
    assert requests.post(sim.url + "/info", json={"type": "perpDexs"}, timeout=5).json()[1]["name"] == "xyz"


def test_ws_bad_input_gets_error_frames(sim: SimServer) -> None:
    ws = ws_connect(sim)
    try:
        ws.send("{garbage")
        assert recv_until(ws, lambda m: m.get("channel") == "error")["data"].startswith(ERR_WS_BAD_REQUEST)
        ws.send(json.dumps({"method": "post", "request": {"type": "info"}}))
        assert recv_until(ws, lambda m: m.get("channel") == "error")["data"] == ERR_WS_BAD_REQUEST
        ws.send(json.dumps({"method": "subscribe", "subscription": {"type": "bbo", "coin": "xyz:NOPE"}}))
        assert recv_until(ws, lambda m: m.get("channel") == "error")["data"].startswith(
            "Invalid subscription"
        )
        sub = {"type": "bbo", "coin": "xyz:TSLA"}
        ws.send(json.dumps({"method": "subscribe", "subscription": sub}))
        ack = recv_until(ws, lambda m: m.get("channel") == "subscriptionResponse")
        assert ack["data"] == {"method": "subscribe", "subscription": sub}
        ws.send(json.dumps({"method": "subscribe", "subscription": sub}))
        assert recv_until(ws, lambda m: m.get("channel") == "error")["data"] == "Already subscribed"
        ws.send(json.dumps({"method": "ping"}))
        assert recv_until(ws, lambda m: m.get("channel") == "pong") == {"channel": "pong"}
        ws.send(
            json.dumps(
                {
                    "method": "post",
                    "id": 5,
                    "request": {"type": "info", "payload": {"type": "allMids", "dex": "xyz"}},
                }
            )
        )
        resp = recv_until(ws, lambda m: m.get("channel") == "post")["data"]
        assert resp["id"] == 5 and resp["response"]["type"] == "info"
        assert (
            resp["response"]["payload"]["type"] == "allMids"
            and "xyz:TSLA" in resp["response"]["payload"]["data"]
        )
        ws.send(
            json.dumps({"method": "post", "id": 6, "request": {"type": "action", "payload": {"action": 1}}})
        )
        resp = recv_until(ws, lambda m: m.get("channel") == "post")["data"]
        assert resp["id"] == 6 and resp["response"]["type"] == "error"
        ws.send(json.dumps({"method": "unsubscribe", "subscription": sub}))
        ack = recv_until(ws, lambda m: m.get("channel") == "subscriptionResponse")
        assert ack["data"]["method"] == "unsubscribe"
    finally:
        ws.close()


def test_disconnect_mid_post_leaves_book_consistent(sim: SimServer, wallet: LocalAccount) -> None:
    nonce = int(time.time() * 1000)
    px = sim.state()["markets"]["xyz:TSLA"]["bid"]
    low = str(Decimal(px) - 2)
    for i in range(10):
        body = signed(key_of(wallet), order(TSLA, True, low, "0.1", "Gtc"), nonce + i)
        ws = websocket.create_connection(sim.ws_url, timeout=5)
        ws.send(json.dumps({"method": "post", "id": i, "request": {"type": "action", "payload": body}}))
        ws.sock.shutdown(socket.SHUT_RDWR)
        ws.sock.close()
    def open_orders() -> Any:
        return requests.post(
            sim.url + "/info", json={"type": "openOrders", "user": wallet.address, "dex": "xyz"}, timeout=5
        ).json()

    deadline = time.monotonic() + 5
    while (len(open_orders()) < 10 or sim.state()["connections"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    oo = open_orders()
    assert len(oo) == 10 and len({o["oid"] for o in oo}) == 10
    book_oids = sim.control({"cmd": "state"})["accounts"][wallet.address.lower()]["open_orders"]
    assert book_oids == 10
    resting = [o for o in sim.engine.by_asset[TSLA].book.orders() if o.owner == wallet.address.lower()]
    assert sorted(o.oid for o in resting) == sorted(o["oid"] for o in oo)
    assert sim.state()["connections"] == 0


def test_faults_rate_limit_reject_delay_stall_drop(sim: SimServer, wallet: LocalAccount) -> None:
    sim.set_faults(rate_limit_http=True)
    assert requests.post(sim.url + "/info", json={"type": "meta", "dex": "xyz"}, timeout=5).status_code == 429
    sim.set_faults(rate_limit_http=False, rate_limit_actions=True)
    nonce = int(time.time() * 1000)
    r = requests.post(
        sim.url + "/exchange", json=signed(key_of(wallet), {"type": "noop"}, nonce), timeout=5
    ).json()
    assert r["status"] == "err" and r["response"].startswith("Too many cumulative requests sent (")
    sim.set_faults(rate_limit_actions=False, reject_posts=True, post_delay_ms=300)
    t0 = time.monotonic()
    r = requests.post(
        sim.url + "/exchange", json=signed(key_of(wallet), {"type": "noop"}, nonce + 1), timeout=5
    ).json()
    assert r == {"status": "err", "response": "Simulated rejection"} and time.monotonic() - t0 >= 0.25
    sim.set_faults(reject_posts=False, post_delay_ms=0, stalled_channels=["bbo"])
    with pytest.raises(ValueError):
        sim.set_faults(nonsense=1)
    ws = ws_connect(sim)
    ws.send(json.dumps({"method": "subscribe", "subscription": {"type": "bbo", "coin": "xyz:GOLD"}}))
    ws.send(
        json.dumps({"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "xyz:GOLD"}})
    )
    recv_until(ws, lambda m: m.get("channel") == "subscriptionResponse")
    seen = set()
    for _ in range(40):
        msg = json.loads(ws.recv())
        seen.add(msg["channel"])
    assert "activeAssetCtx" in seen and "bbo" not in seen
    sim.set_faults(stalled_channels=[], malformed_every=1)
    bad = 0
    for _ in range(20):
        try:
            json.loads(ws.recv())
        except ValueError:
            bad += 1
    assert bad > 0
    sim.set_faults(malformed_every=0)
    assert sim.drop() == 1
    with pytest.raises((websocket.WebSocketException, OSError)):
        for _ in range(10_000):
            ws.recv()


def test_control_endpoint_and_scripted_dislocation(sim: SimServer) -> None:
    r = requests.post(
        sim.url + "/sim/control",
        json={"cmd": "set_oracle", "coin": "xyz:SILVER", "px": 48.35, "lag_ms": 0},
        timeout=5,
    )
    assert r.json() == {"ok": True}
    time.sleep(0.1)
    r = requests.post(
        sim.url + "/sim/control", json={"cmd": "jump", "coin": "xyz:SILVER", "bps": 80}, timeout=5
    )
    assert r.json() == {"ok": True}
    st = requests.post(sim.url + "/sim/control", json={"cmd": "state"}, timeout=5).json()["markets"][
        "xyz:SILVER"
    ]
    assert (float(st["oraclePx"]) - float(st["ask"])) / float(st["oraclePx"]) * 1e4 > 60
    bad = requests.post(sim.url + "/sim/control", json={"cmd": "nope"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["ok"] is False


def test_order_log_records_each_accepted_action(sim: SimServer, wallet: LocalAccount, tmp_path: Path) -> None:
    nonce = int(time.time() * 1000)
    cloid = "0x" + "12" * 16
    ask = sim.state()["markets"]["xyz:TSLA"]["ask"]
    for i, action in enumerate([order(TSLA, True, ask, "0.1", "Ioc", cloid=cloid), {"type": "noop"}]):
        requests.post(sim.url + "/exchange", json=signed(key_of(wallet), action, nonce + i), timeout=5)
    requests.post(
        sim.url + "/exchange", json=signed(key_of(wallet), {"type": "noop"}, nonce), timeout=5
    )  # duplicate
    lines = [json.loads(x) for x in (tmp_path / "orders.jsonl").read_text().splitlines()]
    assert [(x["action_type"], x["nonce"], x["cloids"]) for x in lines] == [
        ("order", nonce, [cloid]),
        ("noop", nonce + 1, []),
    ]
    assert lines[0]["signer"] == wallet.address.lower() and "filled" in lines[0]["statuses"][0]


def test_params_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(SimParamsError, match="speling"):
        SimParams.from_dict({"speling": 1})
    with pytest.raises(SimParamsError, match="jump_prob"):
        SimParams.from_dict({"model": {"jump_prob": 2}})
    assert SimParams.from_dict({"model": {"tick_ms": 5}, "port": 9000}).model.tick_ms == 5


def test_cli_prints_ready_and_serves(tmp_path: Path) -> None:
    cfg = tmp_path / "sim.toml"
    cfg.write_text("[sim]\nl2_min_interval_ms = 100\n[sim.model]\ntick_ms = 20\n")
    addr = "0x" + "11" * 20
    log = tmp_path / "o.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hip3.sim",
            "--port",
            "0",
            "--config",
            str(cfg),
            "--seed",
            "3",
            "--fund",
            f"{addr}:2500",
            "--order-log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith("SIM READY port=")
        port = int(line.strip().split("=")[1])
        st = requests.post(
            f"http://127.0.0.1:{port}/info",
            json={"type": "clearinghouseState", "user": addr, "dex": "xyz"},
            timeout=5,
        ).json()
        assert st["marginSummary"]["accountValue"] == "2500.0"
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0


@pytest.mark.parametrize("px_sz", [("1e300000", "0.1"), ("100", "1e999999999"), ("1E5", "0.1"), ("9" * 60, "0.1")])
def test_hostile_numbers_are_refused_fast_and_the_server_survives(
        sim: SimServer, wallet: LocalAccount, px_sz: tuple[str, str]) -> None:
    """Exponents or absurd magnitudes must not become million-digit integers (seconds of stalled loop)."""
    px, sz = px_sz
    body = signed(key_of(wallet), order(TSLA, True, px, sz, "Ioc"), int(time.time() * 1000))
    t0 = time.monotonic()
    r = requests.post(sim.url + "/exchange", json=body, timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert r.status_code != 200 or r.json()["status"] == "err" or "error" in json.dumps(r.json())
    assert requests.post(sim.url + "/info", json={"type": "perpDexs"}, timeout=5).status_code == 200


def test_huge_integer_in_an_action_is_a_clean_error(sim: SimServer, wallet: LocalAccount) -> None:
    body = {"action": {"type": "noop", "x": 2**70}, "nonce": int(time.time() * 1000),
            "signature": {"r": "0x1", "s": "0x1", "v": 27}}
    r = requests.post(sim.url + "/exchange", data=json.dumps(body), timeout=5)
    assert r.status_code in (200, 400, 422)
    assert requests.post(sim.url + "/info", json={"type": "perpDexs"}, timeout=5).status_code == 200


@pytest.mark.parametrize("length", ["-3", "+5", "1_0", "abc"])
def test_bad_content_length_is_refused(sim: SimServer, length: str) -> None:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        s.sendall(f"POST /info HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 400")

"""RestClient against a local http.server on 127.0.0.1 (tolerant schemas, the dex in every per-dex
query; /exchange never retried)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hip3.hyperliquid.rest import RateLimited, RestClient, RestError

pytestmark = pytest.mark.timeout(30)

CH_STATE = {
    "assetPositions": [
        {
            "type": "oneWay",
            "position": {
                "coin": "xyz:TSLA",
                "szi": "-0.5",
                "entryPx": "431.2",
                "leverage": {"type": "isolated", "value": 3, "rawUsd": "288.41"},
                "liquidationPx": None,
                "marginUsed": "72.79",
                "maxLeverage": 10,
                "positionValue": "215.62",
                "returnOnEquity": "0.0021",
                "unrealizedPnl": "0.15",
                "cumFunding": {"allTime": "0.01", "sinceChange": "0.0", "sinceOpen": "0.0"},
            },
        }
    ],
    "crossMaintenanceMarginUsed": "0.0",
    "crossMarginSummary": {"accountValue": "10", "totalMarginUsed": "0", "totalNtlPos": "0", "totalRawUsd": "10"},
    "marginSummary": {
        "accountValue": "100.5",
        "totalMarginUsed": "72.79",
        "totalNtlPos": "215.62",
        "totalRawUsd": "316.1",
    },
    "time": 1708622398623,
    "withdrawable": "27.7",
}
OLD_CH_STATE = {
    "assetPositions": [
        {
            "position": {
                "coin": "xyz:A",
                "szi": "1",
                "entryPx": "2",
                "positionValue": "2",
                "unrealizedPnl": "0",
                "returnOnEquity": "0",
                "liquidationPx": "1",
                "leverage": {"type": "cross", "value": 1},
                "marginUsed": "2",
            },
            "type": "oneWay",
        }
    ],
    "marginSummary": {"accountValue": "5", "totalMarginUsed": "2", "totalNtlPos": "2", "totalRawUsd": "3"},
    "withdrawable": "3",
}


class Script:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[tuple[int, bytes]] = []  # popped per request; default 200 {}

    def next(self) -> tuple[int, bytes]:
        return self.responses.pop(0) if self.responses else (200, b"{}")


@pytest.fixture
def server() -> Iterator[tuple[Script, str]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.headers["Content-Type"] == "application/json"
            script.requests.append((self.path, body))
            status, data = script.next()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield script, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


def client(url: str, **kw: Any) -> RestClient:
    sleeps: list[float] = []
    c = RestClient(url, timeout_s=5, sleep=sleeps.append, **kw)
    c.sleeps = sleeps  # type: ignore[attr-defined]
    return c


def test_clearinghouse_state_with_dex(server: tuple[Script, str]) -> None:
    script, url = server
    script.responses = [(200, json.dumps(CH_STATE).encode()), (200, json.dumps(OLD_CH_STATE).encode())]
    c = client(url)
    st = c.clearinghouse_state("0xABCDEF", "xyz")
    assert script.requests[0] == ("/info", {"type": "clearinghouseState", "user": "0xabcdef", "dex": "xyz"})
    pos = st.asset_positions[0].position
    assert pos.szi == Decimal("-0.5") and pos.liquidation_px is None and pos.max_leverage == 10
    assert st.withdrawable == Decimal("27.7") and st.margin_summary is not None
    assert st.margin_summary.account_value == Decimal("100.5")
    old = c.clearinghouse_state("0xab", "xyz")
    assert old.time is None and old.asset_positions[0].position.max_leverage is None


def test_reads(server: tuple[Script, str]) -> None:
    script, url = server
    oo = [{"coin": "xyz:TSLA", "limitPx": "431.0", "oid": 5, "side": "B", "sz": "1.0", "timestamp": 1}]
    foo = [
        dict(
            oo[0],
            origSz="2.0",
            orderType="Limit",
            tif="Ioc",
            reduceOnly=False,
            isTrigger=False,
            triggerPx="0.0",
            triggerCondition="N/A",
            isPositionTpsl=False,
            children=[],
            cloid=None,
        )
    ]
    script.responses = [
        (200, b'[null, {"name": "xyz"}]'),
        (200, b'{"universe": []}'),
        (200, b'[{"universe": []}, []]'),
        (200, json.dumps(oo).encode()),
        (200, json.dumps(foo).encode()),
        (200, b"[]"),
    ]
    c = client(url)
    assert c.perp_dexs()[1] == {"name": "xyz"}
    assert c.meta("xyz") == {"universe": []}
    assert c.meta_and_asset_ctxs("xyz")[1] == []
    assert c.open_orders("0xAB", "xyz")[0].limit_px == Decimal("431.0")
    assert c.frontend_open_orders("0xab", "xyz")[0].tif == "Ioc"
    assert c.user_fills("0xAB", aggregate_by_time=True) == []
    assert [b["type"] for _, b in script.requests] == [
        "perpDexs",
        "meta",
        "metaAndAssetCtxs",
        "openOrders",
        "frontendOpenOrders",
        "userFills",
    ]
    assert script.requests[1][1]["dex"] == "xyz" and script.requests[3][1]["dex"] == "xyz"


def test_info_retries_then_succeeds(server: tuple[Script, str]) -> None:
    script, url = server
    script.responses = [(429, b"rate limited"), (502, b"bad gateway"), (200, b"[null]")]
    c = client(url, info_retries=2, retry_backoff_s=0.1)
    assert c.perp_dexs() == [None]
    assert len(script.requests) == 3 and c.sleeps == [0.1, 0.2]  # type: ignore[attr-defined]


def test_info_errors(server: tuple[Script, str]) -> None:
    script, url = server
    script.responses = [(429, b"slow down")] * 3
    c = client(url, info_retries=2)
    with pytest.raises(RateLimited) as exc:
        c.perp_dexs()
    assert exc.value.status == 429 and exc.value.body == "slow down"
    script.responses = [(422, b"Failed to deserialize the JSON body into the target type")]
    with pytest.raises(RestError) as exc2:
        c.meta("xyz")
    assert exc2.value.status == 422 and "deserialize" in str(exc2.value)
    assert len(script.requests) == 4  # 4xx other than 429 is not retried
    script.responses = [(200, b"not json")]
    with pytest.raises(RestError):
        c.meta("xyz")
    script.responses = [(200, b'{"assetPositions": "nope"}')]
    with pytest.raises(RestError, match="unexpected shape"):
        c.clearinghouse_state("0xab", "xyz")


def test_exchange_never_retried(server: tuple[Script, str]) -> None:
    script, url = server
    c = client(url, info_retries=5)
    script.responses = [(502, b"bad gateway")]
    with pytest.raises(RestError) as exc:
        c.exchange({"action": {"type": "noop"}, "nonce": 1, "signature": {}, "vaultAddress": None})
    assert exc.value.status == 502 and len(script.requests) == 1
    script.responses = [(200, b'{"status":"err","response":"Invalid nonce: duplicate nonce 1"}')]
    r = c.exchange({"action": {"type": "noop"}})
    assert not r.ok and r.error == "Invalid nonce: duplicate nonce 1"
    script.responses = [(200, b'{"status":"ok","response":{"type":"order","data":{"statuses":["success"]}}}')]
    assert c.exchange({"action": {}}).statuses[0].text == "success"
    script.responses = [(200, b"<html>")]
    with pytest.raises(RestError):
        c.exchange({"action": {}})


def test_network_error_is_clear() -> None:
    c = RestClient("http://127.0.0.1:9", timeout_s=1, info_retries=1, sleep=lambda s: None)
    with pytest.raises(RestError) as exc:
        c.perp_dexs()
    assert exc.value.status is None


@pytest.mark.parametrize("reply", [
    b"GARBAGE STATUS LINE\r\n\r\n",  # http.client.BadStatusLine
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[1,2",  # IncompleteRead
    b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\nshort",  # an error body cut short
])
def test_broken_http_answers_are_rest_errors(reply: bytes) -> None:
    """Everything that goes wrong on the wire is a RestError, so callers (the start-up spec loader)
    retry or report it instead of crashing."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]

    def serve() -> None:
        for _ in range(1):  # bounded: one request (retries are off)
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(RestError):
            client(f"http://127.0.0.1:{port}", info_retries=0).perp_dexs()
    finally:
        srv.close()
        t.join(2)

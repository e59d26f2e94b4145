"""Regression tests for the crashes the issue-8 fuzzing found (each one raised past a decoder whose
contract is to refuse bad input with its own error type, or to count it)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import hip3.messages as m
from hip3.hyperliquid.assets import AssetError, AssetRegistry
from hip3.hyperliquid.frame_decoder import FrameDecoder
from hip3.hyperliquid.frames import PostFrame
from hip3.hyperliquid.responses import parse_exchange_response
from hip3.hyperliquid.rest import RestClient, RestError
from hip3.runtime.bus import Receiver

DEEP = b"[" * 100_000 + b"]" * 100_000  # deeper than any recursion limit
BAD_UTF8 = b'["\xe1\x80"]'


def test_bus_receiver_counts_invalid_utf8_instead_of_raising() -> None:
    """A bit flip inside a msgpack str made ``Receiver.decode`` raise UnicodeDecodeError out of the
    actor's drain loop (the actor crashed and was restarted)."""
    good = m.encode(m.HardStopAck(actor="\U000867c4", epoch=0))
    raw = good.replace(b"\xa5hsack", b"\xa7hsack", 1)  # the tag's length byte flipped: the str takes 0xa5
    assert raw != good
    rcv = Receiver(None, [])  # type: ignore[arg-type]
    assert rcv.decode(raw) is None
    assert rcv.bad == 1 and "utf-8" in rcv.last_error.lower()


class _Canned(RestClient):
    def __init__(self, body: bytes) -> None:
        super().__init__("http://127.0.0.1:9", info_retries=0)
        self.body = body

    def _post(self, route: str, body: dict[str, Any]) -> bytes:
        return self.body


@pytest.mark.parametrize("body", [DEEP, BAD_UTF8, b"\xff\xfe"], ids=["deep", "bad-utf8-str", "bad-utf8"])
def test_rest_client_refuses_deep_or_non_utf8_answers_with_rest_error(body: bytes) -> None:
    """RecursionError / UnicodeDecodeError escaped ``RestClient.info`` and the typed reads (the position
    tracker's resync and the registry load expect RestError)."""
    c = _Canned(body)
    for call in (c.perp_dexs, lambda: c.clearinghouse_state("0x" + "1" * 40, "xyz"),
                 lambda: c.open_orders("0x" + "1" * 40, "xyz"), lambda: c.exchange({})):
        with pytest.raises(RestError):
            call()


def test_exchange_response_parser_refuses_deep_nesting_with_value_error() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_exchange_response(DEEP)


def test_registry_refuses_deep_nesting_with_asset_error() -> None:
    with pytest.raises(AssetError, match="not JSON"):
        AssetRegistry.find_dex(DEEP, "xyz")


def test_post_answer_of_unknown_type_is_outcome_unknown_and_counted() -> None:
    """A post answer whose type is none of action/info/error was passed on as if it were an error answer
    (a rejection) and not counted. The action behind it may have run: outcome unknown."""
    dec = FrameDecoder()
    raw = msgspec.json.encode({"channel": "post", "data": {"id": 9, "response": {"type": "NaN", "payload": {}}}})
    out = dec.decode(raw)
    assert isinstance(out, PostFrame) and out.response.type == "unknown" and out.response.id == 9
    assert dec.counters["bad:post"] == 1
    # an unparseable action answer is counted too (it already was outcome-unknown)
    raw = msgspec.json.encode({"channel": "post", "data": {"id": 10, "response": {"type": "action",
                                                                                  "payload": {"status": "?"}}}})
    out = dec.decode(raw)
    assert isinstance(out, PostFrame) and out.response.type == "unknown"
    assert dec.counters["bad:post"] == 2


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_rest_positions_and_orders_are_a_rest_error(value: str) -> None:
    """A clearinghouseState with ``"szi": "NaN"`` decoded fine and then crashed the position book's
    comparisons (decimal.InvalidOperation: the position tracker died and restarted on every resync);
    ``"Infinity"`` became an infinite position. Both are malformed answers now."""
    user = "0x" + "1" * 40
    ch = _Canned(msgspec.json.encode({"assetPositions": [{"position": {"coin": "xyz:GOLD", "szi": value,
                                                                      "entryPx": "10"}}]}))
    with pytest.raises(RestError, match="non-finite"):
        ch.clearinghouse_state(user, "xyz")
    oo = _Canned(msgspec.json.encode([{"coin": "xyz:GOLD", "limitPx": "10", "oid": 1, "side": "B", "sz": value,
                                       "timestamp": 1}]))
    with pytest.raises(RestError, match="non-finite"):
        oo.open_orders(user, "xyz")
    margin = _Canned(msgspec.json.encode({"marginSummary": {"accountValue": value}}))
    with pytest.raises(RestError, match="non-finite"):
        margin.clearinghouse_state(user, "")

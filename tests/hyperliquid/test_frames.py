"""Frame decoding with payloads from the exchange's documentation, old/new field sets and hostile input
(subscription acks, orderUpdates as an array, userFills with and without isSnapshot, bare string
statuses)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hip3.hyperliquid import frames as F
from hip3.hyperliquid.frame_decoder import FrameDecoder
from hip3.hyperliquid.responses import parse_exchange_response
from hip3.messages import AssetCtx, Bbo

BBO = (
    b'{"channel": "bbo", "data": {"coin": "xyz:TSLA", "time": 1769594065851, '
    b'"bbo": [{"px": "431.02", "sz": "12.5", "n": 3}, {"px": "431.25", "sz": "4.1", "n": 1}]}}'
)
CTX = (
    b'{"channel": "activeAssetCtx", "data": {"coin": "xyz:TSLA", "ctx": {"funding": "0.0000125", '
    b'"openInterest": "12.208", "prevDayPx": "447.49", "dayNtlVlm": "2192.853", "premium": null, '
    b'"oraclePx": "450.78", "markPx": "465.13", "midPx": "464.92", "impactPxs": null, "dayBaseVlm": "0.0"}}}'
)
ORDER_EL = {
    "order": {
        "coin": "xyz:SILVER",
        "side": "B",
        "limitPx": "112.95",
        "sz": "0.0",
        "oid": 304587174168,
        "timestamp": 1769594065800,
        "origSz": "2.7",
        "cloid": "0xd2ed5e997c5a4cb9946d84c35f0b737c",
    },
    "status": "filled",
    "statusTimestamp": 1769594065851,
}
FILL = {
    "coin": "xyz:SILVER",
    "px": "112.89",
    "sz": "2.7",
    "side": "B",
    "time": 1769594065851,
    "startPosition": "-6.66",
    "dir": "Close Short",
    "closedPnl": "-0.02673",
    "hash": "0x403b2645eccc82d441b4043434c1a3020115002b87cfa1a6e403d198abc05cbe",
    "oid": 304587174168,
    "crossed": True,
    "fee": "0.023317",
    "tid": 694586448408875,
    "cloid": "0xd2ed5e997c5a4cb9946d84c35f0b737c",
    "feeToken": "USDC",
    "twapId": None,
}


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture
def dec() -> FrameDecoder:
    return FrameDecoder()


def test_bbo(dec: FrameDecoder) -> None:
    f = dec.decode(BBO)
    assert isinstance(f, F.BboFrame)
    assert f.data.bbo[0] == F.WsLevel(431.02, 12.5, 3)
    msg = dec.decode_market(BBO, 123)
    assert msg == Bbo(
        coin="xyz:TSLA", bid_px=431.02, bid_sz=12.5, ask_px=431.25, ask_sz=4.1, exch_ms=1769594065851, recv_ns=123
    )
    one_sided = BBO.replace(b'{"px": "431.25", "sz": "4.1", "n": 1}', b"null")
    m2 = dec.decode_market(one_sided, 5)
    assert isinstance(m2, Bbo) and m2.ask_px == 0.0 and m2.ask_sz == 0.0 and m2.bid_px == 431.02
    both_null = enc({"channel": "bbo", "data": {"coin": "c", "time": 1, "bbo": [None, None]}})
    m3 = dec.decode_market(both_null, 5)
    assert isinstance(m3, Bbo) and m3.bid_px == 0.0


def test_bbo_object_form_rejected(dec: FrameDecoder) -> None:
    wrong = enc({"channel": "bbo", "data": {"coin": "c", "time": 1, "bbo": {"bid": None, "ask": None}}})
    assert dec.decode(wrong) is None
    assert dec.counters["bad:bbo"] == 1


def test_ctx(dec: FrameDecoder) -> None:
    msg = dec.decode_market(CTX, 9)
    assert msg == AssetCtx(
        coin="xyz:TSLA",
        oracle_px=450.78,
        mark_px=465.13,
        mid_px=464.92,
        funding=0.0000125,
        open_interest=12.208,
        recv_ns=9,
    )
    old = enc(
        {
            "channel": "activeAssetCtx",
            "data": {
                "coin": "x:A",
                "ctx": {
                    "funding": "0.0",
                    "openInterest": "1",
                    "oraclePx": "2",
                    "markPx": "3",
                    "midPx": None,
                    "impactPxs": ["1.0", "2.0"],
                    "premium": "0.001",
                },
            },
        }
    )
    m = dec.decode_market(old, 1)
    assert isinstance(m, AssetCtx) and m.mid_px == 0.0 and m.oracle_px == 2.0
    newer = json.loads(CTX)
    newer["data"]["ctx"]["someNewField"] = {"x": 1}
    assert isinstance(dec.decode_market(enc(newer), 1), AssetCtx)


@pytest.mark.parametrize("bad", [b'"NaN"', b'"Infinity"', b'"1e999"', b'"abc"', b"true", b"null"])
def test_ctx_bad_values(dec: FrameDecoder, bad: bytes) -> None:
    assert dec.decode(CTX.replace(b'"450.78"', bad)) is None
    assert dec.counters["bad:activeAssetCtx"] == 1


@pytest.mark.parametrize("bad", [b'"NaN"', b'"-1"', b'"0"', b'"inf"'])
def test_bbo_bad_px(dec: FrameDecoder, bad: bytes) -> None:
    assert dec.decode(BBO.replace(b'"431.02"', bad)) is None


def test_l2book(dec: FrameDecoder) -> None:
    raw = enc(
        {
            "channel": "l2Book",
            "data": {
                "coin": "xyz:TSLA",
                "time": 1,
                "levels": [
                    [{"px": "431.02", "sz": "12.5", "n": 3}, {"px": "431.0", "sz": "40.0", "n": 2}],
                    [{"px": "431.25", "sz": "4.1", "n": 1}],
                ],
            },
        }
    )
    f = dec.decode(raw)
    assert isinstance(f, F.L2BookFrame) and len(f.data.levels[0]) == 2 and f.data.levels[1][0].px == 431.25


def test_order_updates_array_single_and_bad_elements(dec: FrameDecoder) -> None:
    f = dec.decode(enc({"channel": "orderUpdates", "data": [ORDER_EL]}))
    assert isinstance(f, F.OrderUpdatesFrame) and f.bad == 0
    o = f.orders[0]
    assert o.order.limit_px == Decimal("112.95") and o.order.orig_sz == Decimal("2.7") and o.status == "filled"
    msgs = F.order_update_msgs(f, 7)
    assert msgs[0].is_buy and msgs[0].cloid == ORDER_EL["order"]["cloid"] and msgs[0].sz == Decimal("0.0")
    single = dec.decode(enc({"channel": "orderUpdates", "data": ORDER_EL}))
    assert isinstance(single, F.OrderUpdatesFrame) and len(single.orders) == 1
    no_cloid = json.loads(json.dumps(ORDER_EL))
    del no_cloid["order"]["cloid"]
    broken = {"order": {"coin": "x"}, "status": "open"}
    nan = json.loads(json.dumps(ORDER_EL))
    nan["order"]["limitPx"] = "NaN"
    mixed = dec.decode(enc({"channel": "orderUpdates", "data": [broken, no_cloid, 5, nan, ORDER_EL]}))
    assert isinstance(mixed, F.OrderUpdatesFrame) and len(mixed.orders) == 2 and mixed.bad == 3
    assert mixed.orders[0].order.cloid is None
    assert dec.counters["bad_element:orderUpdates"] == 3


def test_user_fills_snapshot_flag(dec: FrameDecoder) -> None:
    snap = dec.decode(enc({"channel": "userFills", "data": {"isSnapshot": True, "user": "0xab", "fills": [FILL]}}))
    assert isinstance(snap, F.UserFillsFrame) and snap.data.is_snapshot
    live = dec.decode(enc({"channel": "userFills", "data": {"user": "0xab", "fills": [FILL]}}))
    assert isinstance(live, F.UserFillsFrame) and live.data.is_snapshot is False
    msgs = F.user_fill_msgs(live, 3)
    assert msgs[0].fee == Decimal("0.023317") and msgs[0].crossed and not msgs[0].is_snapshot
    old = {k: v for k, v in FILL.items() if k not in ("cloid", "feeToken", "twapId", "startPosition", "dir")}
    new = dict(FILL, builderFee="0.001", liquidation={"liquidatedUser": "0x1", "markPx": "1", "method": "market"})
    f = dec.decode(enc({"channel": "userFills", "data": {"user": "0xab", "fills": [old, new]}}))
    assert isinstance(f, F.UserFillsFrame) and f.data.fills[0].cloid is None
    assert f.data.fills[1].builder_fee == Decimal("0.001")


def test_sub_ack_pong_error_greeting(dec: FrameDecoder) -> None:
    ack = dec.decode(
        enc(
            {
                "channel": "subscriptionResponse",
                "data": {
                    "method": "subscribe",
                    "subscription": {"type": "l2Book", "coin": "xyz:TSLA", "nSigFigs": None, "mantissa": None},
                },
            }
        )
    )
    assert isinstance(ack, F.SubscriptionResponseFrame)
    assert ack.method == "subscribe" and ack.subscription.type == "l2Book" and ack.subscription.coin == "xyz:TSLA"
    assert isinstance(dec.decode(b'{"channel":"pong"}'), F.PongFrame)
    err = dec.decode(b'{"channel":"error","data":"Invalid subscription {\\"type\\":\\"bbo\\"}"}')
    assert isinstance(err, F.ErrorFrame) and err.data.startswith("Invalid subscription")
    assert dec.decode("Websocket connection established.") is None
    assert dec.decode(b"Websocket connection established.") is None
    assert dec.counters["greeting"] == 2
    assert dec.decode(b'{"channel":"allMids","data":{"mids":{}}}') is None
    assert dec.counters["unknown:allMids"] == 1


def post(payload: object, typ: str = "action", pid: int = 256) -> bytes:
    return enc({"channel": "post", "data": {"id": pid, "response": {"type": typ, "payload": payload}}})


def test_post_responses(dec: FrameDecoder) -> None:
    ok = {
        "status": "ok",
        "response": {
            "type": "order",
            "data": {
                "statuses": [
                    {"filled": {"totalSz": "2.7", "avgPx": "112.89", "oid": 304587174168}},
                    {"resting": {"oid": 77738308, "cloid": "0x" + "0" * 32}},
                    {"error": "Order must have minimum value of $10. asset=110027"},
                    "success",
                    "waitingForFill",
                    {"weird": 1},
                ]
            },
        },
    }
    f = dec.decode(post(ok))
    assert isinstance(f, F.PostFrame) and f.response.id == 256 and f.response.type == "action"
    ex = f.response.exchange
    assert ex is not None and ex.ok and ex.response_type == "order"
    kinds = [s.kind for s in ex.statuses]
    assert kinds == ["filled", "resting", "error", "string", "string", "unknown"]
    assert ex.statuses[0].total_sz == Decimal("2.7") and ex.statuses[0].oid == 304587174168
    assert ex.statuses[1].cloid == "0x" + "0" * 32 and ex.statuses[3].text == "success"
    assert ex.status_for(10).kind == "error"
    err = dec.decode(post({"status": "err", "response": "Invalid nonce: duplicate nonce 5"}))
    assert isinstance(err, F.PostFrame) and err.response.exchange is not None
    assert (
        not err.response.exchange.ok and err.response.exchange.status_for(0).text == "Invalid nonce: duplicate nonce 5"
    )
    short = parse_exchange_response(
        {"status": "ok", "response": {"type": "order", "data": {"statuses": [{"error": "Order has invalid price."}]}}}
    )
    assert short.status_for(2).text == "Order has invalid price."
    info = dec.decode(post({"type": "l2Book", "data": {"coin": "ETH", "levels": [[], []]}}, "info", 7))
    assert isinstance(info, F.PostFrame) and info.response.info == {"coin": "ETH", "levels": [[], []]}
    e = dec.decode(post("400 Bad Request: invalid payload", "error", 9))
    assert isinstance(e, F.PostFrame) and e.response.type == "error" and e.response.error is not None
    default = parse_exchange_response(b'{"status":"ok","response":{"type":"default"}}')
    assert default.ok and default.response_type == "default" and default.statuses == ()
    for bad in (b"[]", b"{}", b"nope", {"status": "maybe"}):
        with pytest.raises(ValueError):
            parse_exchange_response(bad)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'{"channel":5}',
        b'{"channel":"bbo"}',
        b'{"channel":"bbo","data":null}',
        b'{"channel":"orderUpdates","data":"x"}',
        b'{"channel":"post","data":{"id":"x"}}',
        b'{"channel":"userFills","data":{"fills":[]}}',
        b"\xff\xfe\x00garbage",
        b'{"channel":"error","data":"\xff"}',
        b"[" * 100000,
        b'{"channel":"bbo","data":{"coin":"c","time":1,"bbo":[{"px":"1","sz":"1","n":1}]}}',
    ],
)
def test_hostile_never_raises(dec: FrameDecoder, raw: bytes) -> None:
    assert dec.decode(raw) is None
    assert dec.decode_market(raw, 0) is None
    assert sum(dec.counters.values()) >= 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_fuzz_random_bytes(raw: bytes) -> None:
    FrameDecoder().decode(raw)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["NaN", "1e999", "-0", "431.02"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            BBO,
            CTX,
            enc({"channel": "orderUpdates", "data": [ORDER_EL]}),
            enc({"channel": "userFills", "data": {"user": "0x", "fills": [FILL]}}),
            post({"status": "ok", "response": {"type": "order", "data": {"statuses": ["success"]}}}),
        ]
    ),
    st.integers(0, 10_000),
    json_values,
)
def test_fuzz_truncated_and_mutated(base: bytes, cut: int, value: object) -> None:
    d = FrameDecoder()
    d.decode(base[: cut % (len(base) + 1)])
    obj = json.loads(base)
    obj["data"] = value
    d.decode(json.dumps(obj).encode())
    d.decode(base.replace(b'"', b"", cut % 7))

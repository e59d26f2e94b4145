"""Fuzz: the exchange-frame decoders (every channel the feed and the executor read, post responses, REST
answers) never raise, and every frame they refuse is counted (and logged, rate-limited per kind)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hip3.hyperliquid.assets import AssetError, AssetRegistry
from hip3.hyperliquid.frame_decoder import FrameDecoder
from hip3.hyperliquid.frames import OrderUpdatesFrame, PostFrame
from hip3.hyperliquid.responses import parse_exchange_response
from hip3.hyperliquid.rest import RestClient, RestError
from hip3.hyperliquid.ws_framing import FrameReader, FramingError
from hip3.positions import PositionBook
from hip3.positions.rest import open_orders_from_rest, positions_from_rest

from .conftest import tally
from .mutate import (
    CHANNELS,
    HOSTILE,
    LogLines,
    any_bad_or_odd_frame,
    dumps,
    known_bad_frame,
    mutate_bytes,
    mutate_tree,
    nested,
    server_frame,
    valid_frame,
)

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _expected_delta(result: object) -> int:
    """How many counter increments one decoded frame must cause: 1 if refused, else its bad elements."""
    if result is None:
        return 1
    if isinstance(result, OrderUpdatesFrame):
        return result.bad
    if isinstance(result, PostFrame) and result.response.type == "unknown":
        return 1  # an answer it could not read: passed on as outcome-unknown, and counted
    return 0


@FUZZ
@given(st.randoms(use_true_random=False), st.booleans())
def test_any_frame_never_raises_and_every_refusal_is_counted(rng: random.Random, market_path: bool) -> None:
    dec = FrameDecoder(log_interval_s=3600)
    for _ in range(5):
        data = any_bad_or_odd_frame(rng)
        raw: bytes | str = data.decode("utf-8", "replace") if rng.random() < 0.2 else data  # the str path too
        before = sum(dec.counters.values())
        out = dec.decode_market(raw, 1) if market_path else dec.decode(raw)
        assert sum(dec.counters.values()) - before == _expected_delta(out), (raw[:200], dict(dec.counters))
        tally("frames: random damage, fed")
        tally("frames: random damage, refused and counted", _expected_delta(out))
        if isinstance(out, PostFrame):
            assert out.response.type in ("action", "info", "error", "unknown")


@FUZZ
@given(st.randoms(use_true_random=False), st.sampled_from(CHANNELS))
def test_valid_frames_of_every_channel_decode(rng: random.Random, channel: str) -> None:
    dec = FrameDecoder()
    out = dec.decode(dumps(valid_frame(rng, channel)))
    assert out is not None and not dec.counters, dict(dec.counters)
    tally("frames: valid (control)")


def test_known_bad_frames_are_all_refused_counted_and_logged() -> None:
    """Each frame here is bad by construction: the counters and the log lines account for every one."""
    rng = random.Random(7)
    dec = FrameDecoder(log_interval_s=0.0)  # log every refusal (production: once per kind per 10 s)
    kinds: Counter[str] = Counter()
    n = 600
    with LogLines("hip3.hyperliquid.frames") as lines:
        for _ in range(n):
            kind, raw = known_bad_frame(rng)
            kinds[kind] += 1
            tally(f"frames: bad by construction: {kind}")
            out = dec.decode_market(raw, 1) if rng.random() < 0.5 else dec.decode(raw)
            assert out is None, (kind, raw[:200])
    assert sum(dec.counters.values()) == n and "greeting" not in dec.counters, dict(dec.counters)
    rejected = [t for t in lines.messages() if t.startswith("frame rejected")]
    assert len(rejected) == n
    assert set(kinds) >= {"truncated", "non_json", "nan_px", "negative_sz", "wrong_type", "deep",
                          "unknown_channel", "bad_side", "exponent"}


def test_rate_limited_log_still_carries_the_count() -> None:
    now = [0.0]
    dec = FrameDecoder(log_interval_s=10.0, clock=lambda: now[0])
    with LogLines("hip3.hyperliquid.frames") as log:
        for i in range(50):
            now[0] = i * 0.5  # 25 s of bad frames
            assert dec.decode(b'{"channel":"bbo","data":{"coin":1}}') is None
    lines = log.messages()
    assert len(lines) == 3 and "count=1 " in lines[0] and "count=41 " in lines[2], lines


# ---------------------------------------------------------------- post responses and REST answers


def _json_values(depth: int = 3) -> Any:
    leaf = st.one_of(st.sampled_from(HOSTILE[:40]), st.text(max_size=8), st.integers(-(2**70), 2**70),
                     st.floats(), st.booleans(), st.none())
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(
        st.sampled_from(["status", "response", "type", "data", "statuses", "filled", "resting", "error", "oid",
                         "totalSz", "avgPx", "cloid", "x"]), c, max_size=4)), max_leaves=20)


@FUZZ
@given(_json_values())
def test_exchange_response_parser_raises_only_value_error(body: Any) -> None:
    tally("post/REST exchange answers: random JSON", 2)
    for form in (body, dumps(body)):
        try:
            resp = parse_exchange_response(form)
        except ValueError as e:
            assert "\n" not in str(e)[:300]
            continue
        for i in range(3):  # never missing, whatever the shape
            assert resp.status_for(i).kind in ("filled", "resting", "error", "string", "unknown")


@FUZZ
@given(st.randoms(use_true_random=False))
def test_exchange_response_parser_on_damaged_bytes(rng: random.Random) -> None:
    frame = valid_frame(rng, "post_action")
    if rng.random() < 0.2:
        frame["data"]["response"]["payload"]["response"]["data"]["statuses"] = [nested(rng.choice([100, 5000]))]
    raw = mutate_bytes(rng, dumps(frame["data"]["response"]["payload"])) if rng.random() < 0.7 else dumps(
        frame["data"]["response"]["payload"])
    tally("post/REST exchange answers: damaged bytes or deep nesting")
    try:
        parse_exchange_response(raw)
    except ValueError:
        pass


class _Canned(RestClient):
    """A RestClient whose transport answers with canned bytes (the REST answer under test)."""

    def __init__(self, body: bytes) -> None:
        super().__init__("http://127.0.0.1:9", info_retries=0, sleep=lambda _s: None)
        self.body = body

    def _post(self, route: str, body: dict[str, Any]) -> bytes:
        return self.body


_REST_SAMPLES = [
    {"assetPositions": [{"position": {"coin": "xyz:GOLD", "szi": "0.5", "entryPx": "2650.0"}, "type": "oneWay"}],
     "marginSummary": {"accountValue": "100.0"}, "withdrawable": "10.0", "time": 1},
    [{"coin": "xyz:GOLD", "limitPx": "2650.0", "oid": 1, "side": "B", "sz": "0.1", "timestamp": 1}],
    [None, {"name": "xyz", "fullName": "XYZ"}],
    {"universe": [{"name": "xyz:GOLD", "szDecimals": 2, "maxLeverage": 20}]},
    {"status": "ok", "response": {"type": "order", "data": {"statuses": [{"resting": {"oid": 1}}]}}},
]


@FUZZ
@given(st.randoms(use_true_random=False), st.sampled_from(range(len(_REST_SAMPLES))))
def test_rest_answers_raise_only_rest_error(rng: random.Random, which: int) -> None:
    sample = _REST_SAMPLES[which]
    r = rng.random()
    if r < 0.5:
        raw = dumps(mutate_tree(rng, {"channel": "x", "data": sample}).get("data"))
    elif r < 0.6:
        raw = dumps(nested(rng.choice([100, 5000, 100_000])))  # deeper than any recursion limit
    else:
        raw = mutate_bytes(rng, dumps(sample))
    c = _Canned(raw)
    tally("REST info answers (7 reads + 3 registry builds each)")
    for call in (c.perp_dexs, lambda: c.meta("xyz"), lambda: c.meta_and_asset_ctxs("xyz"),
                 lambda: c.user_fills("0x" + "1" * 40), lambda: c.exchange({"action": {}})):
        try:
            call()
        except RestError as e:
            assert str(e)
    # What the position tracker does with a sync: whatever the REST client returns, the book takes it.
    book = PositionBook({"xyz:GOLD": 110000})
    try:
        book.apply_rest_positions(positions_from_rest(c.clearinghouse_state("0x" + "1" * 40, "xyz")), 1)
    except RestError:
        pass
    try:
        book.apply_rest_open_orders(open_orders_from_rest(c.open_orders("0x" + "1" * 40, "xyz"), {"xyz:GOLD": 1}))
    except RestError:
        pass
    dexs = dumps(_REST_SAMPLES[2])
    for build in (lambda: AssetRegistry.find_dex(raw, "xyz"),
                  lambda: AssetRegistry.build(dexs, raw, "xyz", ["xyz:GOLD"]),
                  lambda: AssetRegistry.build(raw, raw, "xyz")):
        try:
            build()
        except AssetError:
            pass


# ---------------------------------------------------------------- WebSocket framing under the decoder


@FUZZ
@given(st.binary(max_size=400), st.integers(1, 64))
def test_ws_frame_reader_raises_only_protocol_error(data: bytes, chunk: int) -> None:
    reader = FrameReader()
    tally("WebSocket byte streams (framing)")
    try:
        for i in range(0, len(data), chunk):
            for op, payload in reader.feed(data[i:i + chunk]):
                assert 0 <= op <= 0xF and isinstance(payload, bytes)
    except FramingError:
        pass


def test_ws_frame_reader_round_trips_fragmented_frames() -> None:
    rng = random.Random(3)
    frames = [dumps(valid_frame(rng, rng.choice(CHANNELS))) for _ in range(50)]
    stream = b"".join(server_frame(f) for f in frames)
    reader = FrameReader()
    got: list[bytes] = []
    for i in range(0, len(stream), 37):
        got.extend(p for _, p in reader.feed(stream[i:i + 37]))
    assert got == frames
    assert msgspec.json.decode(got[0])  # they are the JSON we wrote

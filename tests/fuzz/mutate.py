"""Bad-input generators shared by the fuzz tests: valid exchange frames for every channel hip3 reads, and
mutators (truncate, bit flips, wrong-typed or hostile values, deep nesting, huge) driven by a
``random.Random`` so that hypothesis (``st.randoms()``) and the seeded end-to-end tests share them."""

from __future__ import annotations

import copy
import json
import logging
import random
import re
from typing import Any

# Values that have broken parsers: non-finite and absurd numbers, as strings (the exchange's decimal
# strings) and as JSON numbers, huge integers, empty and odd strings, wrong containers.
HOSTILE: list[Any] = [
    "NaN", "nan", "-NaN", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-999", "1E+400", "-1", "-0.0", "0",
    "", " ", "\u0000", "\u00ff", "\U0001f642", "\u202e", "\ud7ff", "1" * 400, "0x" + "f" * 40, "1_000", "1,5",
    "+5", ".", "-", "e5", 2**63, -(2**63) - 1, 2**64, 10**40, -1, 0, 1.5, -1e308, 1e308, True, False, None,
    [], {}, [None], {"": ""}, [[[]]],
]

CHANNELS = ("bbo", "activeAssetCtx", "l2Book", "orderUpdates", "userFills", "subscriptionResponse", "pong",
            "error", "post_action", "post_info", "post_error")

USER = "0x" + "ab" * 20


def valid_frame(rng: random.Random, channel: str) -> dict[str, Any]:
    """A well-formed frame of ``channel`` as the exchange sends it."""
    coin = rng.choice(["xyz:GOLD", "xyz:SILVER", "xyz:TSLA"])
    t = 1_700_000_000_000 + rng.randrange(10**6)
    px = f"{rng.uniform(1, 5000):.2f}"
    sz = f"{rng.uniform(0.01, 10):.2f}"
    lvl = {"px": px, "sz": sz, "n": rng.randrange(1, 9)}
    if channel == "bbo":
        return {"channel": "bbo", "data": {"coin": coin, "time": t, "bbo": [lvl, rng.choice([None, dict(lvl)])]}}
    if channel == "activeAssetCtx":
        return {"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": {
            "funding": "0.0000125", "openInterest": "1234.5", "prevDayPx": px, "dayNtlVlm": "100000.0",
            "premium": rng.choice([None, "0.0001"]), "oraclePx": px, "markPx": px, "midPx": rng.choice([None, px]),
            "impactPxs": rng.choice([None, [px, px]]), "dayBaseVlm": "12.5"}}}
    if channel == "l2Book":
        return {"channel": "l2Book", "data": {"coin": coin, "time": t,
                                              "levels": [[dict(lvl) for _ in range(rng.randrange(4))],
                                                         [dict(lvl) for _ in range(rng.randrange(4))]]}}
    if channel == "orderUpdates":
        def order() -> dict[str, Any]:
            return {"order": {"coin": coin, "side": rng.choice("AB"), "limitPx": px, "sz": sz,
                              "oid": rng.randrange(10**9), "timestamp": t, "origSz": sz,
                              "cloid": f"0x{rng.getrandbits(128):032x}"},
                    "status": rng.choice(["open", "filled", "canceled", "perpMarginRejected"]), "statusTimestamp": t}
        return {"channel": "orderUpdates", "data": [order() for _ in range(rng.randrange(1, 4))]}
    if channel == "userFills":
        fill = {"coin": coin, "px": px, "sz": sz, "side": rng.choice("AB"), "time": t, "startPosition": "0.0",
                "dir": "Open Long", "closedPnl": "0.0", "hash": "0x" + "0" * 64, "oid": rng.randrange(10**9),
                "crossed": True, "fee": "0.01", "tid": rng.randrange(10**12), "feeToken": "USDC",
                "cloid": f"0x{rng.getrandbits(128):032x}"}
        data: dict[str, Any] = {"user": USER, "fills": [fill]}
        if rng.random() < 0.5:
            data["isSnapshot"] = rng.random() < 0.5
        return {"channel": "userFills", "data": data}
    if channel == "subscriptionResponse":
        return {"channel": "subscriptionResponse",
                "data": {"method": "subscribe", "subscription": {"type": "bbo", "coin": coin}}}
    if channel == "pong":
        return {"channel": "pong"}
    if channel == "error":
        return {"channel": "error", "data": "Invalid subscription " + coin}
    if channel == "post_action":
        statuses = [{"filled": {"totalSz": sz, "avgPx": px, "oid": 7}}, {"resting": {"oid": 8}},
                    {"error": "Order could not immediately match"}, "success"]
        return {"channel": "post", "data": {"id": rng.randrange(10**6), "response": {"type": "action", "payload": {
            "status": "ok", "response": {"type": "order", "data": {"statuses": statuses[:rng.randrange(1, 5)]}}}}}}
    if channel == "post_info":
        return {"channel": "post", "data": {"id": rng.randrange(10**6), "response": {"type": "info", "payload": {
            "type": "clearinghouseState", "data": {"assetPositions": [], "withdrawable": "10.0"}}}}}
    assert channel == "post_error", channel
    return {"channel": "post", "data": {"id": rng.randrange(10**6), "response": {"type": "error",
                                                                               "payload": "rate limited"}}}


_DEEP = re.compile(r'"@@deep:(\d+)@@"')


def dumps(obj: Any) -> bytes:
    """JSON bytes of ``obj``; ``nested(n)`` markers become n-deep arrays (too deep for ``json.dumps``).
    Python writes NaN/Infinity tokens for float values, which are not JSON: what a broken peer sends."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = _DEEP.sub(lambda m: "[" * int(m.group(1)) + "1" + "]" * int(m.group(1)), text)
    return text.encode("utf-8", "surrogatepass")


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def _delete(obj: Any, path: tuple[Any, ...]) -> None:
    for p in path[:-1]:
        obj = obj[p]
    del obj[path[-1]]


def nested(depth: int) -> str:
    """A marker that ``dumps`` writes as ``depth`` nested arrays."""
    return f"@@deep:{depth}@@"


def mutate_tree(rng: random.Random, frame: dict[str, Any]) -> dict[str, Any]:
    """Structural damage: a hostile value, a deleted key, an unknown key, deep nesting or a huge array."""
    out = copy.deepcopy(frame)
    paths = [p for p in _paths(out) if p != ("channel",)]
    path = rng.choice(paths) if paths else ("data",)
    op = rng.randrange(5) if paths else 0
    if op == 0:
        _set(out, path, rng.choice(HOSTILE))
    elif op == 1 and isinstance(path[-1], str):
        _delete(out, path)
    elif op == 2:
        _set(out, path, nested(rng.choice([50, 500, 5000])))
    elif op == 3:
        _set(out, path, [rng.choice(HOSTILE)] * rng.choice([1000, 20000]))
    else:
        out["unexpected\u2603"] = rng.choice(HOSTILE)
    return out


def mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    """Byte-level damage: truncation, bit flips, garbage, repetition, a stray greeting."""
    op = rng.randrange(6)
    if op == 0:
        return raw[: rng.randrange(len(raw))]  # a strict prefix: never valid JSON
    if op == 1:
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if op == 2:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
    if op == 3:
        return raw * rng.randrange(2, 50)
    if op == 4:
        return raw + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 20)))
    return rng.choice([b"", b"null", b"[]", b"{}", b'"x"', b"Websocket connection established.", b"\xff\xfe",
                       b'{"channel":null}', b'{"channel":"bbo"}', b'{"channel":"' + "\u2603".encode() * 100 + b'"}'])


def any_bad_or_odd_frame(rng: random.Random) -> bytes:
    """One frame that is valid, damaged in structure, or damaged in bytes (the fuzz input)."""
    frame = valid_frame(rng, rng.choice(CHANNELS))
    r = rng.random()
    if r < 0.15:
        return dumps(frame)
    if r < 0.6:
        return dumps(mutate_tree(rng, frame))
    return mutate_bytes(rng, dumps(frame))


# ---------------------------------------------------------------- frames that are bad by construction


def known_bad_frame(rng: random.Random) -> tuple[str, bytes]:
    """A frame every correct decoder must refuse, and the kind of damage done (for the figures)."""
    kind = rng.choice(["truncated", "non_json", "nan_px", "negative_sz", "wrong_type", "deep", "unknown_channel",
                       "bad_side", "exponent"])
    ch = rng.choice(("bbo", "activeAssetCtx", "orderUpdates", "userFills"))
    frame = valid_frame(rng, "bbo" if kind in ("nan_px", "negative_sz", "exponent") else ch)
    if kind == "truncated":
        raw = dumps(frame)
        return kind, raw[: rng.randrange(1, len(raw))]
    if kind == "non_json":
        return kind, rng.choice([b"\xff\xfe\x00garbage", b"<html>502</html>", b"nul", b"{", b"\x00" * 10])
    if kind == "nan_px":
        frame["data"]["bbo"][0]["px"] = rng.choice(["NaN", "nan", "inf", "-inf"])
    elif kind == "exponent":
        frame["data"]["bbo"][0]["px"] = rng.choice(["1e999", "-1e999", "1E+400"])
    elif kind == "negative_sz":
        frame["data"]["bbo"][0]["sz"] = rng.choice(["-1", "-0.5", "-1e10"])
    elif kind == "wrong_type":
        frame = valid_frame(rng, "bbo")
        frame["data"][rng.choice(["time", "coin", "bbo"])] = rng.choice([{"x": 1}, [1, 2, 3], "noon", 12])
        if isinstance(frame["data"]["time"], int) and isinstance(frame["data"]["coin"], str) and isinstance(
                frame["data"]["bbo"], list):
            frame["data"]["time"] = "noon"
    elif kind == "deep":
        frame = valid_frame(rng, "bbo")
        frame["data"]["bbo"] = nested(rng.choice([100, 3000]))
    elif kind == "unknown_channel":
        frame["channel"] = rng.choice(["bbox", "", "\u2603", "allMids", "x" * 500])
    elif kind == "bad_side":
        frame = valid_frame(rng, "userFills")
        frame["data"]["fills"][0]["side"] = rng.choice(["S", "", "buy", None])
    return kind, dumps(frame)


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked (server to client) WebSocket frame, FIN set (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return header + payload


class LogLines(logging.Handler):
    """Collects the records of one logger (attached to it directly: hip3's root logger does not propagate
    to pytest's caplog once an actor has configured logging in this process)."""

    def __init__(self, logger: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(logger)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogLines:
        self._level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


GREETING_FRAME = b"Websocket connection established."

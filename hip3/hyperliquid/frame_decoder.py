"""The frame decoder: raw WebSocket frames into typed frames, and the feed's hot path into bus messages.

``FrameDecoder`` never raises: the non-JSON greeting ``Websocket connection established.`` and any
malformed or unknown frame return None and are counted per kind (with a rate-limited log line). Market
data decode straight into floats (msgspec lax mode parses the exchange's decimal strings), and
non-finite values (``"NaN"``, ``"1e999"``) are rejected. One ``msgspec.json.Decoder`` for the process.

The shapes are in ``hip3.hyperliquid.frames``; the wire-only shapes (an ``orderUpdates`` array before
its elements are decoded one by one, a post answer before its payload is parsed) are here.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from hip3.messages import AssetCtx, Bbo

from .frames import (
    ActiveAssetCtxFrame,
    BboFrame,
    ChannelFrame,
    ErrorFrame,
    Frame,
    L2BookFrame,
    OrderUpdatesFrame,
    PongFrame,
    PostFrame,
    PostResponse,
    SubscriptionResponseFrame,
    UserFillsFrame,
    WsAssetCtxFields,
    WsLevel,
    WsOrder,
)
from .responses import parse_exchange_response

__all__ = ["GREETING", "FrameDecoder", "market_msg"]

GREETING = "Websocket connection established."
# The name the decoder has always logged under: log filters and tests select it.
_log = logging.getLogger("hip3.hyperliquid.frames")


class _PostBody(msgspec.Struct, frozen=True):
    type: str
    payload: msgspec.Raw


class _PostData(msgspec.Struct, frozen=True):
    id: int
    response: _PostBody


class _OrderUpdatesRaw(ChannelFrame, frozen=True, tag="orderUpdates"):
    data: msgspec.Raw


class _PostRaw(ChannelFrame, frozen=True, tag="post"):
    data: _PostData


_WireFrame = (
    BboFrame
    | ActiveAssetCtxFrame
    | L2BookFrame
    | _OrderUpdatesRaw
    | UserFillsFrame
    | SubscriptionResponseFrame
    | PongFrame
    | ErrorFrame
    | _PostRaw
)


class _Envelope(msgspec.Struct):
    channel: str = "?"


class _InfoPayload(msgspec.Struct):
    type: str = ""
    data: Any = None


# lax (strict=False): decimal strings decode into float fields. Built once at import: building a decoder
# costs far more than a decode.
_DECODER = msgspec.json.Decoder(_WireFrame, strict=False)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ORDER_LIST = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, Any])
_ORDER = msgspec.json.Decoder(WsOrder, strict=False)
_INFO = msgspec.json.Decoder(_InfoPayload)


_INF = float("inf")


def _bad_float(x: float) -> bool:
    return x - x != 0.0  # True for NaN and ±inf


def _check_level(lv: WsLevel | None) -> None:
    if lv is not None and (_bad_float(lv.px) or _bad_float(lv.sz) or lv.px <= 0.0 or lv.sz < 0.0):
        raise ValueError(f"bad level {lv}")


def _check_ctx(c: WsAssetCtxFields) -> None:
    for v in (c.oracle_px, c.mark_px, c.funding, c.open_interest, c.mid_px, c.premium):
        if v is not None and _bad_float(v):
            raise ValueError("non-finite ctx value")


class FrameDecoder:
    """Decodes raw frames; returns ``None`` for anything unusable and counts it in ``counters``.

    Counter keys: ``bad:<channel>`` (malformed known channel), ``unknown:<channel>``,
    ``non_json``, ``greeting``, ``bad_element:orderUpdates``. Logs at most once per ``log_interval_s``
    per key.
    """

    def __init__(self, log_interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.counters: Counter[str] = Counter()
        self._log_interval_s = log_interval_s
        self._clock = clock
        self._last_log: dict[str, float] = {}

    def _reject(self, kind: str, raw: bytes | str, why: object) -> None:
        self.counters[kind] += 1
        now = self._clock()
        last = self._last_log.get(kind)
        if last is None or now - last >= self._log_interval_s:
            self._last_log[kind] = now
            snippet = bytes(raw[:160]) if isinstance(raw, (bytes, bytearray, memoryview)) else raw[:160]
            _log.warning("frame rejected kind=%s count=%d why=%s frame=%r", kind, self.counters[kind], why, snippet)

    def decode(self, raw: bytes | str) -> Frame | None:
        """Decode one frame. Never raises."""
        try:
            frame: _WireFrame = _DECODER.decode(raw)
            if isinstance(frame, BboFrame):
                _check_level(frame.data.bbo[0])
                _check_level(frame.data.bbo[1])
            elif isinstance(frame, ActiveAssetCtxFrame):
                _check_ctx(frame.data.ctx)
            elif isinstance(frame, L2BookFrame):
                for side in frame.data.levels:
                    for lv in side:
                        _check_level(lv)
            elif isinstance(frame, _OrderUpdatesRaw):
                return self._order_updates(frame.data, raw)
            elif isinstance(frame, _PostRaw):
                return PostFrame(self._post(frame.data, raw))
            return frame
        except Exception as exc:  # malformed input must never escape (msgspec, Unicode, Value, Recursion)
            self._classify_failure(raw, exc)
            return None

    def _classify_failure(self, raw: bytes | str, exc: Exception) -> None:
        text = raw.strip() if isinstance(raw, str) else None
        if text == GREETING or (isinstance(raw, (bytes, bytearray)) and raw.strip() == GREETING.encode()):
            self.counters["greeting"] += 1
            return
        try:
            channel = _ENVELOPE.decode(raw).channel
        except Exception:
            self._reject("non_json", raw, exc)
            return
        known = channel in _KNOWN_CHANNELS
        self._reject(("bad:" if known else "unknown:") + channel[:40], raw, exc)

    def _order_updates(self, data: msgspec.Raw, raw: bytes | str) -> OrderUpdatesFrame:
        parsed = _ORDER_LIST.decode(data)
        elements: list[Any] = parsed if isinstance(parsed, list) else [data]  # a single object: accepted
        orders: list[WsOrder] = []
        bad = 0
        for el in elements:
            try:
                orders.append(_ORDER.decode(el))
            except Exception as exc:
                bad += 1
                self._reject("bad_element:orderUpdates", raw, exc)
        return OrderUpdatesFrame(orders, bad)

    def _post(self, data: _PostData, raw: bytes | str) -> PostResponse:
        body = data.response
        if body.type == "action":
            try:
                return PostResponse(data.id, "action", exchange=parse_exchange_response(bytes(body.payload)))
            except ValueError as exc:
                # The action may well have run: its outcome is unknown (reconcile), not a rejection. The
                # frame is bad input all the same: counted and logged like a refused one.
                self._reject("bad:post", raw, exc)
                return PostResponse(data.id, "unknown", error=f"unparseable action payload: {exc}")
        if body.type == "info":
            info = _INFO.decode(body.payload)
            return PostResponse(data.id, "info", info=info.data)
        if body.type != "error":
            # Not an answer type the protocol has (action/info/error): the outcome is unknown, never a
            # rejection (an action behind it may have run).
            self._reject("bad:post", raw, f"unknown post response type {body.type[:40]!r}")
            return PostResponse(data.id, "unknown", error=f"unknown post response type {body.type[:40]!r}")
        payload = msgspec.json.decode(body.payload)
        return PostResponse(data.id, body.type, error=payload if isinstance(payload, str) else repr(payload))

    def decode_market(self, raw: bytes | str, recv_ns: int) -> Bbo | AssetCtx | Frame | None:
        """Hot path: a bbo/activeAssetCtx frame straight to ``hip3.messages.Bbo``/``AssetCtx``; any other
        frame comes back decoded as by ``decode``. Never raises."""
        try:
            frame: _WireFrame = _DECODER.decode(raw)
        except Exception as exc:
            self._classify_failure(raw, exc)
            return None
        kind = type(frame)
        if kind is BboFrame or kind is ActiveAssetCtxFrame:
            try:
                return market_msg(frame, recv_ns)  # type: ignore[arg-type]
            except ValueError as exc:
                self._classify_failure(raw, exc)
                return None
        return self.decode(raw)  # rare: control and account frames take the general path


_KNOWN_CHANNELS = frozenset(
    {
        "bbo",
        "activeAssetCtx",
        "l2Book",
        "orderUpdates",
        "userFills",
        "subscriptionResponse",
        "pong",
        "error",
        "post",
    }
)


def market_msg(frame: BboFrame | ActiveAssetCtxFrame, recv_ns: int) -> Bbo | AssetCtx:
    """Convert a decoded bbo/activeAssetCtx frame to the bus message (missing side or value = 0.0).

    Raises ``ValueError`` for a non-finite or non-positive price (``"NaN"``, ``"1e999"``, ``"-1"``).
    """
    if type(frame) is BboFrame:
        d = frame.data
        bid, ask = d.bbo
        bid_px = bid_sz = ask_px = ask_sz = 0.0
        if bid is not None:
            bid_px, bid_sz = bid.px, bid.sz
            if not (0.0 < bid_px < _INF and 0.0 <= bid_sz < _INF):  # False for NaN too
                raise ValueError(f"bad bid {bid}")
        if ask is not None:
            ask_px, ask_sz = ask.px, ask.sz
            if not (0.0 < ask_px < _INF and 0.0 <= ask_sz < _INF):
                raise ValueError(f"bad ask {ask}")
        return Bbo(
            coin=d.coin,
            bid_px=bid_px,
            bid_sz=bid_sz,
            ask_px=ask_px,
            ask_sz=ask_sz,
            exch_ms=d.time,
            recv_ns=recv_ns,
        )
    assert isinstance(frame, ActiveAssetCtxFrame)
    c = frame.data.ctx
    _check_ctx(c)
    return AssetCtx(
        coin=frame.data.coin,
        oracle_px=c.oracle_px,
        mark_px=c.mark_px,
        mid_px=c.mid_px if c.mid_px is not None else 0.0,
        funding=c.funding if c.funding is not None else 0.0,
        open_interest=c.open_interest if c.open_interest is not None else 0.0,
        recv_ns=recv_ns,
    )

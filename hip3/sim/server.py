"""The simulator's protocol logic on the event loop: HTTP routes, WebSocket requests, publishing.

WebSocket: greeting text; ``subscribe``/``unsubscribe`` acked with ``subscriptionResponse``
echoing ``method`` and ``subscription``; channels bbo (sent on change; also once right after the ack,
[UNVERIFIED] on the exchange), l2Book (full snapshots, at most every ``l2_min_interval_ms``),
activeAssetCtx, allMids (dex), orderUpdates (array of WsOrder), userFills (snapshot with
``isSnapshot: true`` first, live messages *without* the key, as observed on the exchange) and userEvents
(channel ``user``); ``ping`` → ``pong``; ``post`` requests answered as ``{"channel":"post","data":{"id",
"response":{"type":"action"|"info"|"error","payload"}}}``. Errors: ``{"channel":"error","data":"..."}``.
One user per connection for user channels (the SDK cannot demultiplex orderUpdates either).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec

from hip3.hyperliquid.errors import ERR_WS_ALREADY_SUBSCRIBED, ERR_WS_BAD_REQUEST, rate_limit_error
from hip3.sim import info as info_mod
from hip3.sim.engine import Engine
from hip3.sim.faults import Faults
from hip3.sim.market import BadRequest, Market, err
from hip3.sim.orderlog import fault_record
from hip3.sim.params import SimParams
from hip3.sim.transport import Conn, text_frame

log = logging.getLogger("hip3.sim")
_MARKET_TYPES = ("bbo", "l2Book", "activeAssetCtx")
_USER_TYPES = {"orderUpdates": "orderUpdates", "userFills": "userFills", "userEvents": "user"}
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


def now_wall_ms() -> int:
    return int(time.time() * 1000)


class SimCore:
    """Everything that runs on the loop: the engine, the connections, subscriptions and publishing."""

    def __init__(self, params: SimParams, engine: Engine, clock: Callable[[], int] = now_wall_ms) -> None:
        self.params = params
        self.engine = engine
        self.clock = clock
        self.faults = Faults(params.faults)
        self.conns: set[Conn] = set()
        self.subscribers: dict[str, set[Conn]] = {}
        self.last_bbo: dict[int, bytes] = {}
        self.last_ctx: dict[int, bytes] = {}
        self.last_l2_ms: dict[int, int] = {}
        self.l2_due: set[int] = set()
        self.frames_sent = 0
        self.control: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def log_exception(self, what: str) -> None:
        log.exception(what)

    # ---- connection registry --------------------------------------------------------------------
    def ws_opened(self, c: Conn) -> None:
        self.conns.add(c)

    def forget(self, c: Conn) -> None:
        self.conns.discard(c)
        for key in c.subs:
            s = self.subscribers.get(key)
            if s is not None:
                s.discard(c)
        c.subs.clear()

    def drop(self, user: str | None = None) -> int:
        """Abort every WebSocket (or those carrying ``user``'s subscriptions). Returns how many."""
        victims = [c for c in self.conns if user is None or c.user == user.lower()]
        for c in victims:
            c.abort()
            self.forget(c)
        return len(victims)

    def send_malformed(self, count: int) -> int:
        for c in list(self.conns):
            for _ in range(count):
                c.send_json(b'{"channel": "bbo", "data": {"coin": ')
        return len(self.conns)

    # ---- HTTP -----------------------------------------------------------------------------------
    def http_request(self, c: Conn, path: str, body: bytes, close: bool) -> None:
        if path == "/sim/control":
            try:
                cmd = _dec.decode(body)
                if not isinstance(cmd, dict) or self.control is None:
                    raise ValueError("control body must be a JSON object with a cmd")
                out = self.control(cmd)
                c.http_reply_later(0, 200, _enc.encode(out), "application/json", close)
            except (ValueError, KeyError, TypeError, msgspec.DecodeError) as e:
                c.http_reply_later(
                    0, 400, _enc.encode({"ok": False, "error": str(e)}), "application/json", close
                )
            return
        if path not in ("/info", "/exchange"):
            c.http_reply_later(0, 404, b"not found", "text/plain", close)
            return
        if self.faults.rate_limit_http:
            c.http_reply_later(0, 429, b"Too Many Requests", "text/plain", close)
            return
        delay = self.faults.post_delay_ms if path == "/exchange" else 0
        try:
            req = _dec.decode(body)
            result = (
                info_mod.handle_info(self.engine, req, self.clock())
                if path == "/info"
                else self.exchange(req)
            )
        except (msgspec.DecodeError, BadRequest) as e:
            text = str(e) if isinstance(e, BadRequest) else f"Failed to deserialize the JSON body: {e}"
            c.http_reply_later(delay, 422, text.encode(), "text/plain", close)
            return
        c.http_reply_later(delay, 200, _enc.encode(result), "application/json", close)
        self.publish()

    def exchange(self, req: Any) -> dict[str, Any]:
        """An action with the action-level faults applied first (they reach no state)."""
        if self.faults.rate_limit_actions:
            self.engine.order_log.write(fault_record(req, "rate_limit_actions", self.clock()))
            return err(rate_limit_error(10_001, 10_000, "0.0"))
        if self.faults.reject_posts:
            self.engine.order_log.write(fault_record(req, "reject_posts", self.clock()))
            return err(self.faults.reject_text)
        return self.engine.exchange(req, self.clock())

    # ---- WebSocket requests -----------------------------------------------------------------------
    def ws_message(self, c: Conn, raw: bytes) -> None:
        try:
            msg = _dec.decode(raw)
        except msgspec.DecodeError:
            msg = None
        method = msg.get("method") if isinstance(msg, dict) else None
        if method == "ping":
            if not self.faults.is_stalled("pong", "pong"):  # a stalled "pong": a silent, half-dead server
                c.send_json(b'{"channel":"pong"}')
        elif method in ("subscribe", "unsubscribe") and isinstance(msg, dict):
            self._subscription(c, method, msg.get("subscription"))
        elif method == "post" and isinstance(msg, dict):
            self._post(c, msg)
        else:
            c.send_json(
                _enc.encode(
                    {
                        "channel": "error",
                        "data": f"{ERR_WS_BAD_REQUEST}: {raw[:200].decode('utf-8', 'replace')}",
                    }
                )
            )

    def _error(self, c: Conn, text: str) -> None:
        c.send_json(_enc.encode({"channel": "error", "data": text}))

    def _sub_key(self, sub: Any) -> tuple[str, str] | str:
        """(type, key) for a valid subscription, else the error text."""
        if not isinstance(sub, dict) or not isinstance(sub.get("type"), str):
            return f"Invalid subscription {sub!r}"
        t = sub["type"]
        if t in _MARKET_TYPES:
            coin = sub.get("coin")
            if not isinstance(coin, str) or coin not in self.engine.by_coin:
                return f"Invalid subscription {t}: unknown coin {coin!r}"
            return t, f"{t}:{coin}"
        if t == "allMids":
            dex = sub.get("dex", "") or ""
            if not isinstance(dex, str):
                return "Invalid subscription allMids: dex"
            return t, f"allMids:{dex}"
        if t in _USER_TYPES:
            user = sub.get("user")
            if not isinstance(user, str) or len(user) != 42 or not user.startswith("0x"):
                return f"Invalid subscription {t}: user"
            return t, f"{t}:{user.lower()}"
        return f"Invalid subscription type {t!r}"

    def _subscription(self, c: Conn, method: str, sub: Any) -> None:
        k = self._sub_key(sub)
        if isinstance(k, str):
            self._error(c, k)
            return
        t, key = k
        if method == "unsubscribe":
            if key not in c.subs:
                self._error(c, f"Already unsubscribed: {key}")
                return
            del c.subs[key]
            self.subscribers.get(key, set()).discard(c)
            c.send_json(
                _enc.encode(
                    {
                        "channel": "subscriptionResponse",
                        "data": {"method": "unsubscribe", "subscription": sub},
                    }
                )
            )
            return
        delay = self.faults.user_subscribe_delay_ms if t in _USER_TYPES else 0
        if delay:
            asyncio.get_running_loop().call_later(delay / 1000, self._subscribe_late, c, t, key, sub)
        else:
            self._subscribe(c, t, key, sub)

    def _subscribe_late(self, c: Conn, t: str, key: str, sub: dict[str, Any]) -> None:
        """A delayed subscription (``user_subscribe_delay_ms``): only if its connection is still open."""
        if c in self.conns:
            self._subscribe(c, t, key, sub)

    def _subscribe(self, c: Conn, t: str, key: str, sub: dict[str, Any]) -> None:
        if key in c.subs:
            self._error(c, ERR_WS_ALREADY_SUBSCRIBED)
            return
        if t in _USER_TYPES:
            user = key.split(":", 1)[1]
            if c.user is not None and c.user != user:
                self._error(c, f"Invalid subscription {t}: one user per connection ({c.user} already)")
                return
            c.user = user
        c.subs[key] = sub
        self.subscribers.setdefault(key, set()).add(c)
        c.send_json(
            _enc.encode(
                {"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": sub}}
            )
        )
        self._snapshot(c, t, key, sub)

    def _snapshot(self, c: Conn, t: str, key: str, sub: dict[str, Any]) -> None:
        eng, now = self.engine, self.clock()
        if self.faults.is_stalled(_USER_TYPES.get(t, t), key):
            return
        if t in _MARKET_TYPES:
            m = eng.by_coin[sub["coin"]]
            frame = {
                "bbo": self._bbo_payload,
                "l2Book": self._l2_payload,
                "activeAssetCtx": self._ctx_payload,
            }[t](m, now)
            c.send_json(frame)
        elif t == "allMids":
            c.send_json(self._mids_payload(key.split(":", 1)[1]))
        elif t == "userFills":
            acct = eng.accounts.get(c.user or "")
            fills = list(reversed(acct.fills[-500:])) if acct is not None else []
            c.send_json(
                _enc.encode(
                    {"channel": "userFills", "data": {"isSnapshot": True, "user": c.user, "fills": fills}}
                )
            )

    def _post(self, c: Conn, msg: dict[str, Any]) -> None:
        pid, req = msg.get("id"), msg.get("request")
        if (
            not isinstance(pid, int)
            or isinstance(pid, bool)
            or not isinstance(req, dict)
            or req.get("type") not in ("info", "action")
            or "payload" not in req
        ):
            self._error(c, ERR_WS_BAD_REQUEST)
            return
        rtype, payload = req["type"], req["payload"]
        response: dict[str, Any]
        try:
            if rtype == "info":
                if self.faults.rate_limit_http:
                    response = {"type": "error", "payload": "429 Too Many Requests"}
                else:
                    data = info_mod.handle_info(self.engine, payload, self.clock())
                    response = {"type": "info", "payload": {"type": payload.get("type"), "data": data}}
            else:
                response = {"type": "action", "payload": self.exchange(payload)}
        except BadRequest as e:
            response = {"type": "error", "payload": f"422 Unprocessable Entity: {e}"}
        frame = _enc.encode({"channel": "post", "data": {"id": pid, "response": response}})
        delay = self.faults.post_delay_ms
        if delay:
            asyncio.get_running_loop().call_later(delay / 1000, c.send_json, frame)
        else:
            c.send_json(frame)
        if rtype == "action":
            self.publish()

    # ---- publishing ---------------------------------------------------------------------------------
    def _bbo_payload(self, m: Market, now: int) -> bytes:
        b, a = m.book.best_bid(), m.book.best_ask()
        bid = (
            None
            if b is None
            else {"px": m.px_str(b), "sz": m.sz_str(m.book.level(True, b)[0]), "n": m.book.level(True, b)[1]}
        )
        ask = (
            None
            if a is None
            else {
                "px": m.px_str(a),
                "sz": m.sz_str(m.book.level(False, a)[0]),
                "n": m.book.level(False, a)[1],
            }
        )
        return _enc.encode({"channel": "bbo", "data": {"coin": m.coin, "time": now, "bbo": [bid, ask]}})

    def _l2_payload(self, m: Market, now: int) -> bytes:
        return _enc.encode({"channel": "l2Book", "data": info_mod.l2_book(self.engine, m, now)})

    def _ctx_payload(self, m: Market, now: int) -> bytes:
        ctx = info_mod.ctx(m, self.engine.terms.oi_lots(m))
        return _enc.encode({"channel": "activeAssetCtx", "data": {"coin": m.coin, "ctx": ctx}})

    def _mids_payload(self, dex: str) -> bytes:
        return _enc.encode(
            {"channel": "allMids", "data": {"dex": dex, "mids": info_mod.all_mids(self.engine, dex)}}
        )

    def _fan_out(self, channel: str, key: str, payload: bytes | Callable[[], bytes]) -> None:
        subs = self.subscribers.get(key)
        if not subs or self.faults.is_stalled(channel, key):
            return
        data = payload() if callable(payload) else payload
        frame = text_frame(self.faults.maybe_corrupt(data))
        for c in subs:
            c.pending.append(frame)
        self.frames_sent += len(subs)

    def tick(self) -> None:
        """One model step, then publish."""
        self.engine.tick(self.clock())
        self.publish()

    def publish(self) -> None:
        """Send everything the engine changed, one shared frame per (channel, coin), one write per socket."""
        eng, now = self.engine, self.clock()
        out = eng.outbox.drain()
        subs = self.subscribers
        l2_gap = self.params.l2_min_interval_ms
        for i in out.books:
            m = eng.markets[i]
            if subs.get("bbo:" + m.coin):
                payload = self._bbo_payload(m, now)
                # Compare without the time field: sent only when the bbo itself changed.
                body = payload[payload.index(b'"bbo":[') :]
                if self.last_bbo.get(i) != body:
                    self.last_bbo[i] = body
                    self._fan_out("bbo", "bbo:" + m.coin, payload)
            self.l2_due.add(i)
        for i in list(self.l2_due):
            m = eng.markets[i]
            if now - self.last_l2_ms.get(i, -l2_gap) >= l2_gap:
                self.l2_due.discard(i)
                self.last_l2_ms[i] = now
                self._fan_out("l2Book", "l2Book:" + m.coin, partial(self._l2_payload, m, now))
        for i in out.ctxs:
            m = eng.markets[i]
            if subs.get("activeAssetCtx:" + m.coin):
                payload = self._ctx_payload(m, now)
                if self.last_ctx.get(i) != payload:
                    self.last_ctx[i] = payload
                    self._fan_out("activeAssetCtx", "activeAssetCtx:" + m.coin, payload)
        if out.books:
            dex = self.params.dex
            self._fan_out("allMids", "allMids:" + dex, lambda: self._mids_payload(dex))
        for user, ups in out.order_updates.items():
            self._fan_out(
                "orderUpdates",
                "orderUpdates:" + user,
                partial(_enc.encode, {"channel": "orderUpdates", "data": ups}),
            )
        for user, fills in out.fills.items():
            self._fan_out(
                "userFills",
                "userFills:" + user,
                partial(_enc.encode, {"channel": "userFills", "data": {"user": user, "fills": fills}}),
            )
            self._fan_out(
                "userEvents",
                "userEvents:" + user,
                partial(_enc.encode, {"channel": "user", "data": {"fills": fills}}),
            )
        for c in list(self.conns):
            c.flush_pending()

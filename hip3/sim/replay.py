"""The simulator as a replay's exchange: recorded market frames instead of the random model, stepped.

``ReplayExchange`` is the simulator's engine (matching, accounts, fees, signed actions, nonces) and its
protocol server (``SimCore`` over loopback TCP: WebSocket and ``/info``/``/exchange``), with two changes:

* **The market is the recording.** ``apply(frames)`` sets each market's book and oracle from recorded
  ``l2Book`` (every level: the maker side is replaced), ``bbo`` (the top: maker levels at or better than
  the recorded best are replaced by it, deeper levels of the last ``l2Book`` stay) and
  ``activeAssetCtx`` (the oracle) frames, then re-sends the recorded bytes verbatim to the subscribers
  of that channel. The engine never makes market frames of its own (no snapshot after a subscription
  ack, no bbo after a fill: the recording carries what the live feed saw), and the random model never
  runs. hip3's orders match against the book as of the last applied frame; the account's orderUpdates,
  userFills and post answers come from the engine as in paper mode.
* **No thread of its own.** The asyncio loop belongs to the replay driver's thread: ``step()`` runs one
  non-blocking iteration (and says whether anything was read), ``serving()`` runs it in a helper thread
  for the span of a blocking client call (an actor's ``setup``: REST, WebSocket handshake), and
  ``run_for(s)`` serves a worker thread's requests (the position tracker's REST sync). Its clock is the
  process clock (``hip3.clock``: virtual in a replay).

Not modelled: queue position (a level is one maker order), the book between two frames, the latency
between hip3's order and the exchange, other takers' reaction to hip3's trades (the recorded book after
a live fill shows the live session's impact, not the replay's).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from hip3 import clock
from hip3.sim.book import MAKER, Order
from hip3.sim.engine import Engine
from hip3.sim.market import Market
from hip3.sim.orderlog import OrderLog
from hip3.sim.params import MarketSpec, SimParams
from hip3.sim.server import SimCore
from hip3.sim.transport import Conn

_dec = msgspec.json.Decoder()


def params_from_header(header: dict[str, Any], base: SimParams | None = None) -> SimParams:
    """The recorded exchange's builder dex (name, universe in asset-id order) as simulator markets; fees,
    minimum notional and the rest from ``base``. ``start_px`` is a placeholder: the recording sets prices."""
    base = base or SimParams()
    dex = str(header["dex"])
    markets = tuple(MarketSpec(name=str(c), sz_decimals=int(szd), start_px=1.0, max_leverage=max(1, int(lev)))
                    for c, szd, lev, _delisted in header["universe"])
    return msgspec.structs.replace(base, dex=dex, markets=markets, host="127.0.0.1", port=0)


def _units(s: Any, dec: int) -> int | None:
    try:
        return int(Decimal(str(s)).scaleb(dec).to_integral_value())
    except (InvalidOperation, ValueError):
        return None


class _Conn(Conn):
    """A connection that counts what it receives (the driver's quiescence test)."""

    core: ReplayCore

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.core.work += 1
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.core.work += 1
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.core.work += 1
        super().connection_lost(exc)


class ReplayCore(SimCore):
    """``SimCore`` that never publishes market data of its own (the recording does)."""

    work = 0

    def _snapshot(self, c: Conn, t: str, key: str, sub: dict[str, Any]) -> None:
        if t in ("bbo", "l2Book", "activeAssetCtx", "allMids"):
            return  # the recording carries the live snapshots that followed the live acks
        super()._snapshot(c, t, key, sub)

    def publish(self) -> None:
        out = self.engine.outbox
        out.books.clear()  # fills changed the book: the next recorded frame shows what live saw
        out.ctxs.clear()
        super().publish()

    def replay_frames(self, channel: str, coin: str, raw: bytes) -> None:
        self._fan_out(channel, f"{channel}:{coin}", raw)


class ReplayExchange:
    """The engine + protocol server on a loop owned by the caller's thread (see the module doc)."""

    def __init__(self, params: SimParams, funds: dict[str, Decimal], order_log: str | None = None) -> None:
        self.params = params
        self.order_log = OrderLog(order_log)
        self.engine = Engine(params, 0, clock.wall_ms(), self.order_log)
        for m in self.engine.markets:  # no market until the recording says so
            m.book.remove_owner(MAKER)
            m.model.oracle_px = 0
        self.engine.outbox.books.clear()
        self.engine.outbox.ctxs.clear()
        for addr, usd in funds.items():
            self.engine.fund(addr, usd)
        self.core = ReplayCore(params, self.engine, clock.wall_ms)
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.frames_applied = 0
        self.frames_unknown = 0
        self._l2: dict[int, tuple[list[tuple[int, int]], list[tuple[int, int]]]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> int:
        core = self.core
        self._server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Conn(core), "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    # ---- stepping ---------------------------------------------------------------------------------
    def step(self) -> bool:
        """One non-blocking loop iteration. True if a connection event or bytes were processed."""
        before = self.core.work
        self.loop.stop()
        self.loop.run_forever()
        return self.core.work != before

    def run_for(self, seconds: float) -> None:
        """Serve for ``seconds`` of real time (blocking in the selector: no spin)."""
        self.loop.run_until_complete(asyncio.sleep(seconds))

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Run the loop in a helper thread while the caller's thread makes blocking calls to it."""
        t = threading.Thread(target=self.loop.run_forever, name="hip3-replay-sim", daemon=True)
        t.start()
        try:
            yield
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            t.join(10)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self.core.conns):
            c.abort()
        self.step()
        self.loop.close()
        self.order_log.close()

    # ---- the market ---------------------------------------------------------------------------------
    def fire_scheduled_cancels(self, now_ms: int) -> None:
        """The dead man's switch (``Engine.tick`` without the model)."""
        eng = self.engine
        eng.now_ms = now_ms
        if eng.fire_scheduled_cancels(now_ms):
            self.core.publish()

    def apply(self, frames: Sequence[bytes]) -> None:
        """Apply recorded frames (one receive instant) to the books/oracles and re-send them verbatim."""
        eng = self.engine
        now_ms = clock.wall_ms()
        eng.now_ms = now_ms
        for raw in frames:
            try:
                msg = _dec.decode(raw)
                channel = msg["channel"]
                data = msg["data"]
                m = eng.by_coin[data["coin"]]
            except (msgspec.DecodeError, KeyError, TypeError):
                self.frames_unknown += 1
                continue
            if channel == "bbo":
                self._apply_bbo(m, data.get("bbo"), now_ms)
            elif channel == "l2Book":
                self._apply_l2(m, data.get("levels"), now_ms)
            elif channel == "activeAssetCtx":
                px = _units((data.get("ctx") or {}).get("oraclePx"), m.px_dec)
                if px:
                    m.model.oracle_px = px
            else:
                self.frames_unknown += 1
                continue
            self.frames_applied += 1
            self.core.replay_frames(channel, m.coin, raw)
        for c in list(self.core.conns):
            c.flush_pending()
        self.fire_scheduled_cancels(now_ms)

    def _levels(self, m: Market, side: Any) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for lvl in side or ():
            if isinstance(lvl, dict):
                px, sz = _units(lvl.get("px"), m.px_dec), _units(lvl.get("sz"), m.szd)
                if px and sz:
                    out.append((px, sz))
        return out

    def _set_book(self, m: Market, bids: list[tuple[int, int]], asks: list[tuple[int, int]], ts: int) -> None:
        m.book.remove_owner(MAKER)
        for px, sz in bids:
            m.book.add(Order(0, MAKER, m.asset, True, px, sz, ts))
        for px, sz in asks:
            m.book.add(Order(0, MAKER, m.asset, False, px, sz, ts))

    def _apply_l2(self, m: Market, levels: Any, ts: int) -> None:
        if not isinstance(levels, list) or len(levels) != 2:
            return
        bids, asks = self._levels(m, levels[0]), self._levels(m, levels[1])
        self._l2[m.index] = (bids, asks)
        self._set_book(m, bids, asks, ts)

    def _apply_bbo(self, m: Market, bbo: Any, ts: int) -> None:
        if not isinstance(bbo, list) or len(bbo) != 2:
            return
        top_bid, top_ask = self._levels(m, [bbo[0]]), self._levels(m, [bbo[1]])
        deep_bids, deep_asks = self._l2.get(m.index, ([], []))
        bids = top_bid + [lv for lv in deep_bids if top_bid and lv[0] < top_bid[0][0]]
        asks = top_ask + [lv for lv in deep_asks if top_ask and lv[0] > top_ask[0][0]]
        self._set_book(m, bids, asks, ts)

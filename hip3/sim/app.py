"""``SimServer``: the simulator in a background thread, with an in-process control API.

Usage::

    sim = SimServer(SimParams(), seed=1, funds={"0xabc…": Decimal(10_000)}, order_log="orders.jsonl")
    port = sim.start()            # binds 127.0.0.1 (port 0 = a free one), returns the port
    sim.url, sim.ws_url           # http://127.0.0.1:<port>, ws://127.0.0.1:<port>/ws
    sim.jump("xyz:GOLD", 80)      # a scripted dislocation
    sim.set_faults(post_delay_ms=200); sim.drop()
    sim.stop()

The same commands reach a simulator in another process as ``POST /sim/control`` with a JSON body
``{"cmd": <name>, ...}`` (see ``COMMANDS``); every command answers ``{"ok": true, ...}`` or HTTP 400
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from hip3.sim.engine import Engine
from hip3.sim.orderlog import OrderLog
from hip3.sim.params import SimParams
from hip3.sim.server import SimCore, now_wall_ms
from hip3.sim.transport import Conn

log = logging.getLogger("hip3.sim")

COMMANDS = {
    "fund": "{address, usd}: create or top up an account",
    "approve_agent": "{master, agent}: let agent sign for master",
    "set_oracle": "{coin, px, lag_ms?}: set an oracle now (makers follow after lag_ms, default the model lag)",
    "jump": "{coin, bps}: force an oracle jump of bps (signed) now: a scripted dislocation",
    "faults": "{<fault>: value, ...}: set fault switches (see hip3.sim.faults)",
    "drop": "{user?}: abort every WebSocket, or those of one user",
    "malformed": "{count}: send count malformed frames to every WebSocket now",
    "terms": "{<fees or oi key>: value, ...}: fee inputs and open-interest caps (see hip3.sim.terms)",
    "state": "{}: markets (oracle, bbo, mark), accounts, faults, connections",
}


def _addr(v: Any, field: str) -> str:
    if not isinstance(v, str) or len(v) != 42 or not v.startswith("0x"):
        raise ValueError(f"{field} must be a 0x address, got {v!r}")
    return v.lower()


def _num(v: Any, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{field} must be a number")
    return float(v)


class SimServer:
    """The simulator server; ``start()`` runs it on its own asyncio loop in a daemon thread."""

    def __init__(
        self,
        params: SimParams | None = None,
        seed: int = 0,
        funds: dict[str, Decimal] | None = None,
        order_log: str | None = None,
        clock: Callable[[], int] = now_wall_ms,
    ) -> None:
        self.params = params or SimParams()
        self.seed = seed
        self.clock = clock
        self.order_log = OrderLog(order_log)
        self.engine = Engine(self.params, seed, clock(), self.order_log)
        for addr, usd in (funds or {}).items():
            self.engine.fund(addr, usd)
        self.core = SimCore(self.params, self.engine, clock)
        self.core.control = self.apply
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tick_task: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.params.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.params.host}:{self.port}/ws"

    async def serve(self, port: int | None = None) -> int:
        """Start listening on the running loop (for callers that own a loop); returns the port."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._server = await loop.create_server(
            lambda: Conn(self.core), self.params.host, self.params.port if port is None else port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tick_task = loop.create_task(self._ticker())
        return self.port

    async def _ticker(self) -> None:
        period = self.params.model.tick_ms / 1000
        while True:
            await asyncio.sleep(period)
            try:
                self.core.tick()
            except Exception:
                log.exception("sim tick failed")

    def start(self, timeout_s: float = 10.0) -> int:
        """Run the server in a background thread; returns the bound port."""
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                ready.set_result(loop.run_until_complete(self.serve()))
            except BaseException as e:
                ready.set_exception(e)
                loop.close()
                return
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="hip3-sim", daemon=True)
        self._thread.start()
        return ready.result(timeout=timeout_s)

    async def _shutdown(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        if self._server is not None:
            self._server.close()
        for c in list(self.core.conns):
            c.abort()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and join the thread (bounded)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
        self.order_log.close()

    # ---- control ----------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (it owns all state) and return its result."""
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            return fn()
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout=10.0)

    def control(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Apply one control command from any thread (the in-process twin of ``POST /sim/control``)."""
        return self._call(lambda: self.apply(cmd))  # type: ignore[no-any-return]

    def apply(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Apply one control command; runs on the loop. ValueError/KeyError on a bad command."""
        name = cmd.get("cmd")
        eng, core, now = self.engine, self.core, self.clock()
        if name == "fund":
            try:
                usd = Decimal(str(cmd.get("usd")))
            except InvalidOperation:
                raise ValueError("usd must be a number") from None
            acct = eng.fund(_addr(cmd.get("address"), "address"), usd)
            return {"ok": True, "balance": str(acct.balance)}
        if name == "approve_agent":
            eng.auth.approve(_addr(cmd.get("master"), "master"), _addr(cmd.get("agent"), "agent"))
            return {"ok": True}
        if name == "set_oracle":
            lag = cmd.get("lag_ms")
            eng.set_oracle(
                str(cmd.get("coin")), _num(cmd.get("px"), "px"), now, None if lag is None else int(lag)
            )
            core.publish()
            return {"ok": True}
        if name == "jump":
            eng.jump(str(cmd.get("coin")), _num(cmd.get("bps"), "bps"), now)
            core.publish()
            return {"ok": True}
        if name == "faults":
            core.faults.update({k: v for k, v in cmd.items() if k != "cmd"})
            return {"ok": True, "faults": core.faults.state()}
        if name == "drop":
            user = cmd.get("user")
            return {"ok": True, "dropped": core.drop(None if user is None else _addr(user, "user"))}
        if name == "malformed":
            return {"ok": True, "connections": core.send_malformed(int(cmd.get("count", 1)))}
        if name == "terms":
            out = eng.terms.update({k: v for k, v in cmd.items() if k != "cmd"})
            core.publish()
            return {"ok": True, **out}
        if name == "state":
            return {"ok": True, **self._state()}
        raise ValueError(f"unknown cmd {name!r}; known: {', '.join(COMMANDS)}")

    def _state(self) -> dict[str, Any]:
        eng = self.engine
        markets = {}
        for m in eng.markets:
            b, a = m.book.best_bid(), m.book.best_ask()
            markets[m.coin] = {
                "asset": m.asset,
                "szDecimals": m.szd,
                "oraclePx": m.px_str(m.model.oracle_px),
                "markPx": m.px_str(m.mark()),
                "bid": None if b is None else m.px_str(b),
                "ask": None if a is None else m.px_str(a),
            }
        accounts = {
            a.address: {
                "balance": str(a.balance),
                "open_orders": len(a.open_orders),
                "fills": len(a.fills),
                "positions": {
                    eng.by_asset[k].coin: eng.by_asset[k].sz_str(p.szi)
                    for k, p in a.positions.items()
                    if p.szi
                },
                "schedule_cancel_ms": a.schedule_cancel_ms,
            }
            for a in eng.accounts.values()
        }
        return {
            "markets": markets,
            "accounts": accounts,
            "faults": self.core.faults.state(),
            "connections": len(self.core.conns),
            "frames_sent": self.core.frames_sent,
            "actions_logged": self.order_log.count,
        }

    # ---- convenience wrappers -------------------------------------------------------------------
    def fund(self, address: str, usd: float | Decimal) -> None:
        self.control({"cmd": "fund", "address": address, "usd": str(usd)})

    def approve_agent(self, master: str, agent: str) -> None:
        self.control({"cmd": "approve_agent", "master": master, "agent": agent})

    def jump(self, coin: str, bps: float) -> None:
        self.control({"cmd": "jump", "coin": coin, "bps": bps})

    def set_oracle(self, coin: str, px: float, lag_ms: int | None = None) -> None:
        self.control({"cmd": "set_oracle", "coin": coin, "px": px, "lag_ms": lag_ms})

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        return self.control({"cmd": "faults", **changes})

    def drop(self, user: str | None = None) -> int:
        return int(self.control({"cmd": "drop", "user": user})["dropped"])

    def send_malformed(self, count: int = 1) -> int:
        return int(self.control({"cmd": "malformed", "count": count})["connections"])

    def set_terms(self, **changes: Any) -> dict[str, Any]:
        """Change fee or open-interest inputs (``hip3.sim.terms.SimTerms.update``): e.g.
        ``other_oi_usd={"xyz:GOLD": 1e9}`` puts GOLD at its cap."""
        return self.control({"cmd": "terms", **changes})

    def state(self) -> dict[str, Any]:
        return self.control({"cmd": "state"})

"""Shared pieces of the execution-side actor tests: a test-side feed (md/user publisher), an event
capture on exec/positions, a second signer (an approved agent of the same account) that places orders at
the simulator directly, and intent builders with wire-valid prices taken from the simulator's book."""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import zmq

from hip3.config import Config
from hip3.hyperliquid.rest import RestClient
from hip3.hyperliquid.signing import Signer
from hip3.hyperliquid.wire import floor_size, order_action, order_wire, round_price
from hip3.messages import AssetCtx, EntryIntent, FeedState, FlattenIntent, Message, Msg, RequestBudgetReading
from hip3.runtime.bus import Bus
from hip3.sim.app import SimServer

D = Decimal
_ids = itertools.count(1)

EXTRA = """
[supervisor]
actors = ["position_tracker", "executor"]
heartbeat_interval_ms = 100
[positions]
resync_interval_s = 0.5
snapshot_interval_ms = 100
[executor]
max_notional_per_market_usd = 5000.0
max_total_notional_usd = 20000.0
max_concurrent_positions = 10
"""


def budget_reading(cap: int = 1_000_000, used: int = 0) -> RequestBudgetReading:
    """The account's request budget as the position tracker publishes it (for tests that play the
    tracker: the executor refuses entries until it has one)."""
    return RequestBudgetReading(cum_vlm_usd=D(0), n_requests_used=used, n_requests_cap=cap, n_requests_surplus=0,
                                requested_ms=int(time.time() * 1000))


def account_of(key: str) -> str:
    return Signer(key).address


class FakeFeed:
    """Publishes what the feed would: marks (AssetCtx from the simulator's state) on ``md`` and
    ``FeedState``; ``OrderUpdate``/``UserFill`` on ``user``. Bound as the feed; owned by one thread."""

    def __init__(self, cfg: Config, sim: SimServer, context: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        self.bus = Bus(cfg, "feed", context=context, run_dir=cfg.run_path)
        self.md = self.bus.publisher("md")
        self.user = self.bus.publisher("user")
        self.sim = sim
        self._last = 0.0

    def pump(self, force: bool = False) -> None:
        """Serve late joiners and refresh the marks (every 100 ms)."""
        self.md.on_subscription()
        self.user.on_subscription()
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        for coin, m in self.sim.state()["markets"].items():
            px = float(m["markPx"])
            self.md.publish(AssetCtx(coin=coin, oracle_px=float(m["oraclePx"]), mark_px=px, mid_px=px,
                                     funding=0.0, open_interest=0.0, recv_ns=time.monotonic_ns()))

    def feed_state(self, conn_id: int = 1) -> None:
        st = FeedState(state="connected", conn_id=conn_id, market_data_ready=True, user_ready=True,
                       since_ns=time.monotonic_ns())
        self.md.publish(st, state_key="feed")
        self.user.publish(st, state_key="feed")

    def close(self) -> None:
        self.bus.close()


class Capture:
    """Collects every message on the given endpoints (drained in ``wait``)."""

    def __init__(self, cfg: Config, endpoints: list[str], context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 name: str = "test") -> None:
        self.bus = Bus(cfg, name, context=context, run_dir=cfg.run_path)
        self.rcv = self.bus.subscriber(endpoints)
        self.msgs: list[Message] = []

    def drain(self) -> None:
        self.msgs.extend(self.rcv.drain())

    def of(self, cls: type[Msg]) -> list[Any]:
        self.drain()
        return [m for m in self.msgs if isinstance(m, cls)]

    def close(self) -> None:
        self.bus.close()


def wait(pred: Callable[[], bool], timeout_s: float = 10.0, tick: Callable[[], None] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        if pred():
            return True
        time.sleep(0.01)
    return False


class Agent:
    """A second signer approved for the account: places orders at the simulator without touching the
    executor's nonces (the simulator keeps nonces per signer)."""

    def __init__(self, sim: SimServer, account: str) -> None:
        self.signer = Signer("0x" + secrets.token_hex(32))
        sim.approve_agent(account, self.signer.address)
        self.rest = RestClient(sim.url)
        self.sim = sim
        self._nonce = int(time.time() * 1000) - 100_000

    def place(self, orders: list[tuple[int, bool, Decimal, Decimal, str]]) -> Any:
        """[(asset, is_buy, px, sz, tif)] as one signed order action over REST; returns the response."""
        self._nonce = max(self._nonce + 1, int(time.time() * 1000))
        action = order_action([order_wire(a, b, p, s, False, tif) for a, b, p, s, tif in orders])
        sig = self.signer.sign_action(action, None, self._nonce, False)
        return self.rest.exchange({"action": action, "nonce": self._nonce, "signature": sig, "vaultAddress": None})


def market(sim: SimServer, coin: str) -> dict[str, Any]:
    m: dict[str, Any] = sim.state()["markets"][coin]
    return m


def crossing_px(sim: SimServer, coin: str, is_buy: bool, bps: float = 30.0) -> Decimal:
    """A price that crosses the book by ``bps`` (an IOC at it fills)."""
    m = market(sim, coin)
    ref = D(m["ask"] if is_buy else m["bid"])
    f = D(1) + D(bps) / D(10_000) if is_buy else D(1) - D(bps) / D(10_000)
    return round_price(ref * f, int(m["szDecimals"]), is_buy)


def passive_px(sim: SimServer, coin: str, is_buy: bool, bps: float = 100.0) -> Decimal:
    """A price away from the touch (an IOC at it misses; a GTC rests)."""
    m = market(sim, coin)
    ref = D(m["markPx"])
    f = D(1) - D(bps) / D(10_000) if is_buy else D(1) + D(bps) / D(10_000)
    return round_price(ref * f, int(m["szDecimals"]), not is_buy)


def size_for(sim: SimServer, coin: str, usd: float) -> Decimal:
    m = market(sim, coin)
    return floor_size(D(str(usd)) / D(m["markPx"]), int(m["szDecimals"]))


def entry(sim: SimServer, coin: str, *, is_buy: bool = True, usd: float = 15.0, px: Decimal | None = None,
          sz: Decimal | None = None, intent_id: str | None = None, ttl_s: float = 5.0,
          edge_bps: float = 12.5) -> EntryIntent:
    m = market(sim, coin)
    now = time.monotonic_ns()
    return EntryIntent(
        intent_id=intent_id or f"t{next(_ids)}-{secrets.token_hex(4)}", coin=coin, asset=int(m["asset"]),
        is_buy=is_buy, px=px if px is not None else crossing_px(sim, coin, is_buy),
        sz=sz if sz is not None else size_for(sim, coin, usd), reduce_only=False,
        valid_until_ns=now + int(ttl_s * 1e9), origin_recv_ns=now, created_ns=now, edge_bps=edge_bps,
        signal_id="sig",
    )


def flatten(sim: SimServer, coin: str, *, is_buy: bool, sz: Decimal, reason: str = "time_stop") -> FlattenIntent:
    m = market(sim, coin)
    now = time.monotonic_ns()
    return FlattenIntent(
        intent_id=f"f{next(_ids)}-{secrets.token_hex(4)}", coin=coin, asset=int(m["asset"]), is_buy=is_buy,
        px=crossing_px(sim, coin, is_buy, 60.0), sz=sz, reduce_only=True, valid_until_ns=now + 5_000_000_000,
        origin_recv_ns=now, created_ns=now, reason=reason,
    )


def order_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sim_account(sim: SimServer, account: str) -> dict[str, Any]:
    acct: dict[str, Any] = sim.state()["accounts"][account]
    return acct

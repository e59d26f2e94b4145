"""Run one actor as a thread over inproc:// and watch the bus from the test (no supervisor)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
import zmq

from hip3.config import Config
from hip3.hyperliquid.signing import Signer
from hip3.hyperliquid.wire import order_action, order_wire
from hip3.messages import Message
from hip3.runtime.actor import Actor
from hip3.runtime.bus import Bus, Receiver

A = TypeVar("A", bound=Actor)


@contextmanager
def running(cls: type[A], cfg: Config, ctx: zmq.Context[zmq.Socket[bytes]]) -> Iterator[A]:
    """``cls`` running in a thread (unsupervised); stopped and joined on exit."""
    stop = threading.Event()
    actor = cls(cfg, context=ctx, stop_event=stop)
    errors: list[BaseException] = []

    def main() -> None:
        try:
            actor.run()
        except BaseException as e:  # surfaced by the test
            errors.append(e)

    t = threading.Thread(target=main, name=f"test:{cls.name}", daemon=True)
    t.start()
    try:
        yield actor
    finally:
        stop.set()
        t.join(10)
        assert not t.is_alive(), f"{cls.name} did not stop"
    assert not errors, errors


def wait_until(pred: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step_s)
    return pred()


class Watch:
    """A test-side SUB on some endpoints that keeps everything it received."""

    def __init__(self, cfg: Config, ctx: zmq.Context[zmq.Socket[bytes]], endpoints: list[str]) -> None:
        self.bus = Bus(cfg, "test", context=ctx)
        self.rcv: Receiver = self.bus.subscriber(endpoints)
        self.got: list[Message] = []

    def pump(self, timeout_s: float = 0.05) -> None:
        if self.rcv.sock.poll(int(timeout_s * 1000)):
            self.got.extend(self.rcv.drain())

    def wait(self, pred: Callable[[Message], bool], timeout_s: float = 10.0) -> Message | None:
        """The first message (already received or new) matching ``pred``."""
        end = time.monotonic() + timeout_s
        seen = 0
        while True:
            for m in self.got[seen:]:
                if pred(m):
                    return m
            seen = len(self.got)
            if time.monotonic() >= end:
                return None
            self.pump()

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.got if isinstance(m, kind)]

    def close(self) -> None:
        self.bus.close()


def place_ioc(sim_url: str, key: str, asset: int, is_buy: bool, px: Decimal, sz: Decimal) -> Any:
    """Sign an IOC with the protocol library (no SDK) and POST it to the simulator's /exchange."""
    action = order_action([order_wire(asset, is_buy, px, sz, reduce_only=False, tif="Ioc")])
    nonce = time.time_ns() // 1_000_000
    sig = Signer(key).sign_action(action, None, nonce, is_mainnet=False)
    body = msgspec.json.encode({"action": action, "nonce": nonce, "signature": sig, "vaultAddress": None})
    req = urllib.request.Request(sim_url + "/exchange", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5.0) as r:  # the 127.0.0.1 simulator
        return msgspec.json.decode(r.read())

"""``Actor.defer``: work (an order's log lines) runs at the end of the loop turn, after every message
that was ready, so a second order of the same burst is not kept waiting behind the first's logging."""

from __future__ import annotations

from pathlib import Path

import zmq

from hip3.messages import Bbo, Message
from hip3.runtime.actor import Actor
from hip3.runtime.bus import Bus
from tests.conftest import make_config


class _Probe(Actor):
    name = "probe"

    def setup(self) -> None:
        self.events: list[str] = []
        self.puller("intents", self.on_msg)

    def on_msg(self, msg: Message) -> None:
        assert isinstance(msg, Bbo)
        self.events.append(f"handle {msg.coin}")
        self.defer(lambda: self.events.append(f"log {msg.coin}"))
        if msg.coin == "xyz:A":  # deferred work may defer more; it runs in the same turn
            self.defer(lambda: self.defer(lambda: self.events.append("nested")))


def _bbo(coin: str) -> Bbo:
    return Bbo(coin=coin, bid_px=1.0, bid_sz=1.0, ask_px=2.0, ask_sz=1.0, exch_ms=1, recv_ns=1)


def test_deferred_work_runs_after_every_ready_message_in_order(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, '[bus]\ntransport = "inproc"\n')
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    actor = _Probe(cfg, context=ctx)
    sender = Bus(cfg, "test", context=ctx)
    try:
        actor.start()
        push = sender.pusher("intents")
        for coin in ("xyz:A", "xyz:B", "xyz:C"):
            assert push.send(_bbo(coin))
        for _ in range(50):
            actor.step(20)
            if len(actor.events) >= 7:
                break
        assert actor.events == ["handle xyz:A", "handle xyz:B", "handle xyz:C",
                                "log xyz:A", "log xyz:B", "log xyz:C", "nested"]
        actor.defer(lambda: actor.events.append("at close"))
    finally:
        actor.close()  # runs what is still deferred
        sender.close()
        ctx.term()
    assert actor.events[-1] == "at close"

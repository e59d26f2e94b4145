"""Fuzz: the supervisor's operator socket (``ctl``, JSON requests) and its inbox. A request it cannot read is
answered with an error, never raised out of the supervisor's loop (the supervisor owns the latch: its death
takes every actor with it)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hip3.messages import Alert, HardStopRequest, Heartbeat, Message
from hip3.runtime.bus import Bus
from hip3.runtime.logs import Log
from hip3.runtime.supervisor import Supervisor
from tests.conftest import make_config

from .conftest import tally
from .mutate import HOSTILE, dumps, mutate_bytes, nested

pytestmark = pytest.mark.timeout(120)


class _NoLauncher:
    def launch(self, name: str) -> Any:
        raise AssertionError("not launched in this test")

    def close(self) -> None:
        pass


class _Ctl:
    def __init__(self, run_dir: Path) -> None:
        cfg = make_config(run_dir, '[bus]\ntransport = "inproc"\n')
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sup = Supervisor(cfg, _NoLauncher(), Log("supervisor"), context=self.ctx)
        self.req = self.ctx.socket(zmq.DEALER)
        self.req.setsockopt(zmq.LINGER, 0)
        self.req.setsockopt(zmq.RCVTIMEO, 2000)
        self.req.connect(self.sup.bus.address("ctl"))
        self.bus = Bus(cfg, "fuzz", context=self.ctx, run_dir=run_dir)
        self.inbox = self.bus.pusher("inbox", immediate=False)

    def ask(self, body: bytes) -> dict[str, Any]:
        self.req.send_multipart([b"", body])
        for _ in range(100):
            self.sup._on_ctl()
            try:
                frames = self.req.recv_multipart(zmq.NOBLOCK)
                reply: dict[str, Any] = msgspec.json.decode(frames[-1])
                return reply
            except zmq.Again:
                continue
        raise AssertionError("no reply")

    def close(self) -> None:
        self.req.close()
        self.bus.close()
        self.sup.close()
        self.ctx.term()


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Ctl]:
    c = _Ctl(Path(tmp_path_factory.mktemp("ctl")))
    yield c
    c.close()


_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([nested(50), nested(100_000), "{}", "[]", "null"]).map(lambda v: dumps(v)),
    st.dictionaries(st.sampled_from(["cmd", "reason", "x"]), st.sampled_from([*HOSTILE, "status", "hardstop",
                    "reset-hardstop", "nope"]), max_size=3).map(dumps),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(_bodies, st.randoms(use_true_random=False))
def test_any_operator_request_gets_an_answer(ctl: _Ctl, body: bytes, rng: random.Random) -> None:
    if rng.random() < 0.3:
        body = mutate_bytes(rng, body or b"{}")
    tally("ctl: operator requests")
    reply = ctl.ask(body)
    assert isinstance(reply, dict) and ("ok" in reply or "running" in reply), reply


def test_deeply_nested_request_is_refused_not_raised(ctl: _Ctl) -> None:
    """Regression (found by fuzzing): ``msgspec.json.decode`` raised RecursionError out of ``_on_ctl``, killing
    the supervisor (and with it every actor). Over a tcp bus any local user could do it."""
    reply = ctl.ask(dumps(nested(100_000)))
    assert reply["ok"] is False and "bad request" in reply["error"]
    assert ctl.ask(b'{"cmd": "status"}')["running"] is True  # still serving


def test_hostile_inbox_messages_never_raise(ctl: _Ctl) -> None:
    sup = ctl.sup
    msgs: list[Message] = [
        Heartbeat(actor="\u2603" * 10_000, pid=-1, ready=True, hardstop_epoch=2**63 - 1, stats={"": -(2**63)}),
        Alert(level="\u202e", actor="", text="x" * 1_000_000),
        HardStopRequest(reason="\U0001f642" * 1000, source=""),
    ]
    for msg in msgs:
        sup._on_inbox(msg)
        tally("supervisor inbox: hostile messages")
    assert sup.latch.state.latched
    assert len(sup.alerts) <= 50
    st = sup.status()
    msgspec.json.encode(st)  # status stays encodable for the CLI

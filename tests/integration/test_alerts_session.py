"""Alerts from a real paper session: the whole actor graph as threads (inproc) against the simulator,
alerts through apprise to a receiver on 127.0.0.1. The hard stop's latch and its flatten arrive as the
executor reports them, and no connection leaves the machine."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from hip3.runtime.inproc import inproc_graph
from hip3.runtime.secrets import SigningKey
from tests.conftest import sim_config
from tests.ops.receiver import Receiver


@pytest.fixture
def destinations(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a Python socket of this process connects to or resolves, during the test."""
    seen: list[Any] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        seen.append(address)
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((host, "resolve"))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def test_a_paper_session_alerts_its_hard_stop_and_flatten(run_dir: Path, sim_server: Any, paper_key: str,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          destinations: list[Any]) -> None:
    rcv = Receiver()
    monkeypatch.setenv("HIP3_ALERT_URLS", rcv.url("paper"))
    k = SigningKey(paper_key)
    cfg = sim_config(run_dir, sim_server.url, k.address, extra="[alerts]\nenabled = true\nlabel = \"it\"\n")
    try:
        with inproc_graph(cfg, signing_key=k) as run:
            assert run.wait_for(lambda s: s.all_ready(), 30)
            assert rcv.wait(lambda m: any(x["title"] == "hip3 it: info started" for x in m))
            # Let it trade a little so that the flatten has something to do (the simulator's model moves).
            run.wait_for(lambda s: s.trading.entries >= 1, 20)
            run.call(lambda s: s.hardstop("alert drill", "test"))
            assert rcv.wait(lambda m: any(x["title"] == "hip3 it: ok flat" for x in m), 30), rcv.texts()
            latched = next(x for x in rcv.messages if x["title"] == "hip3 it: CRITICAL hard stop latched")
            assert "hard stop latched (epoch 1): alert drill" in latched["message"]
            titles = [x["title"] for x in rcv.messages]
            assert titles.index("hip3 it: CRITICAL hard stop latched") < titles.index("hip3 it: ok flat")
            assert run.call(lambda s: s.notifier.notifier.failed) == 0
        # The stop message went out before the graph closed.
        assert rcv.messages[-1]["title"] in ("hip3 it: info stopped", "hip3 it: WARNING stopped")
        assert "hip3 stopped after" in rcv.messages[-1]["message"]
        assert all(m.get("type") in ("info", "success", "warning", "failure") for m in rcv.messages)
    finally:
        rcv.close()
    assert rcv.paths and set(rcv.paths) == {"/paper"}
    hosts = {d[0] for d in destinations if isinstance(d, tuple)}
    assert hosts and hosts <= {"127.0.0.1", "localhost"}, hosts

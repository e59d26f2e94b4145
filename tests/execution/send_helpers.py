"""The executor's send path as a library, no sockets: a scripted order-entry transport and a host that
records what the actor would publish, report and alert (``hip3.execution.send_path``, ``intake``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hip3.execution.core import ExecutionCore
from hip3.execution.hardstop import HardStopFlattener
from hip3.execution.intake import Intake
from hip3.execution.journal import SentIntentJournal
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.execution.send_path import SendPath
from hip3.hyperliquid.frames import PostResponse
from hip3.hyperliquid.nonce import NonceManager
from hip3.hyperliquid.signing import Signer
from hip3.messages import Alert, HardStopProgress, Msg, Ready
from hip3.runtime.logs import Log
from tests.execution.helpers import SPECS, snap
from tests.terms_helpers import known_terms

NOW_MS = 1_700_000_000_000


class ScriptedWs:
    """``post`` raises what ``script`` says (or returns an id); ``state`` can change inside a post."""

    def __init__(self, script: list[Any]) -> None:
        self.state = "connected"
        self.script = script
        self.posts = 0
        self.payloads: list[dict[str, Any]] = []
        self.ids = itertools.count(1)

    def can_post(self) -> bool:
        # Says yes while connected: ``post`` may still refuse (the budget ran out in between).
        return self.state == "connected"

    def post(self, request_type: str, payload: dict[str, Any], on_response: Callable[[PostResponse], None]) -> int:
        self.posts += 1
        self.payloads.append(payload)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if step == "drop":  # the frame went out, then the connection dropped
            self.state = "disconnected"
        return next(self.ids)


class FakeHost:
    """What the actor does with the send path's output: events, READY, alerts, hard-stop requests."""

    def __init__(self) -> None:
        self.stats: dict[str, int] = {}
        self.ready = True
        self.ready_detail = "order entry connected, positions synced"
        self.log = Log("executor")
        self.events: list[Msg] = []
        self.inbox: list[Msg] = []  # Ready, Alert, HardStopProgress: what the supervisor would get
        self.hardstop_requests: list[str] = []
        self.deferred: list[Callable[[], None]] = []

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def set_ready(self, ready: bool, detail: str = "") -> None:
        if ready == self.ready and detail == self.ready_detail:
            return
        self.ready, self.ready_detail = ready, detail
        self.inbox.append(Ready(actor="executor", pid=0, ready=ready, detail=detail))

    def alert(self, level: str, text: str) -> None:
        self.inbox.append(Alert(level=level, actor="executor", text=text))

    def raise_hardstop(self, reason: str) -> None:
        self.hardstop_requests.append(reason)

    def publish_events(self, events: list[Msg]) -> None:
        self.events.extend(events)

    def report_progress(self, progress: HardStopProgress) -> None:
        self.inbox.append(progress)
        self.events.append(progress)

    def defer(self, fn: Callable[[], None]) -> None:
        self.deferred.append(fn)


class SpyJournal(SentIntentJournal):
    syncs = 0

    def sync(self) -> None:
        self.syncs += 1
        super().sync()


class Rig:
    """A send path, its intake and what they act on, built like the actor builds them."""

    def __init__(self, directory: Path, ws: ScriptedWs, *, nonces: NonceManager | None = None,
                 stub_signing: bool = True, **params: Any) -> None:
        cl = itertools.count(1)
        self.ws = ws
        self.params = ExecutorParams(**params)
        journal = SpyJournal(directory, now_ms=NOW_MS, retention_ms=600_000)
        self.core = ExecutionCore(self.params, RiskParams(), SoftGateParams(), SPECS, journal,
                                  make_cloid=lambda: f"0x{next(cl):032x}", terms=known_terms(SPECS))
        for c in SPECS:
            self.core.gates.set_mark(c, 10.0)
        self.flattener = HardStopFlattener(RiskParams(), SPECS)
        self.host = FakeHost()
        self.nonces = nonces if nonces is not None else NonceManager(None)  # the tick reserves headroom
        # Its refill timer tops the nonce pool up.
        self.send = SendPath(self.core, ws, Signer("0x" + "11" * 32, pool_size=2), self.nonces, self.params,
                             self.host)
        self.send.snapshot = snap()
        self.intake = Intake(self.send, self.flattener, self.host.defer)
        if stub_signing:  # no signature: the send path's sequence, not the signer's
            self.send.sign = lambda action, now, durable=True: {  # type: ignore[method-assign]
                "action": action, "nonce": next(cl)}

    @property
    def journal(self) -> SpyJournal:
        j = self.core.journal
        assert isinstance(j, SpyJournal)
        return j

    def close(self) -> None:
        self.nonces.close()
        self.core.journal.close()


def published(rig: Rig) -> list[Msg]:
    return rig.host.events

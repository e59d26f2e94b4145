"""The executor backs off after the exchange refuses a whole action (no sockets: the send path as a
library, ``tests.execution.send_helpers``). Regression for the retry storm the fault tests found: every
refusal was answered by an immediate retry (about 60 posts a second against a rate-limited exchange)."""

from __future__ import annotations

import time
from pathlib import Path

from hip3.execution.admission import RefusalBackoff
from hip3.hyperliquid.errors import rate_limit_error
from hip3.hyperliquid.frames import PostResponse
from hip3.hyperliquid.responses import ExchangeResponse, OrderStatus
from hip3.messages import OrderRejected
from tests.actors.helpers import budget_reading
from tests.execution.helpers import GOLD, SILVER, entry, flatten, snap
from tests.execution.send_helpers import NOW_MS, Rig, ScriptedWs, published


def _refused(post_id: int, text: str) -> PostResponse:
    return PostResponse(post_id, "action", exchange=ExchangeResponse(ok=False, error=text))


_BACKOFF_BASE_MS = RefusalBackoff().base_ms
_BACKOFF_MAX_MS = RefusalBackoff().max_ms


def test_refused_action_pauses_sending_drops_entries_and_refuses_intents(tmp_path: Path) -> None:
    ws = ScriptedWs([1])
    ex = Rig(tmp_path, ws)
    backoff = ex.core.admission.backoff
    ex.core.submit_flatten(flatten(SILVER), now_ns=0)
    ex.send.pump()
    assert ws.posts == 1
    ex.send.on_order_response(_refused(1, rate_limit_error(10_001, 10_000, "0.0")))
    assert backoff.until_ns > time.monotonic_ns()
    # The flatten waits in its queue: no immediate retry, however often the pump is called.
    for _ in range(5):
        ex.send.pump()
        ex.send.on_tick()
    assert ws.posts == 1 and ex.core.scheduler.queued() == (0, 1, 0)
    # A queued entry is dropped at the next refusal, and an entry intent is refused meanwhile.
    v, _ = ex.core.submit_entry(entry(GOLD), snapshot=snap(), now_ns=0, now_ms=NOW_MS)
    assert v.accepted
    ex.send.on_order_response(_refused(99, "Simulated rejection"))
    assert [(m.coin, m.benign) for m in published(ex) if isinstance(m, OrderRejected)] == [(GOLD, True)]
    ex.intake.on_intent(entry(GOLD))
    assert ex.host.stats.get("entry_shed:ExchangeBackoff") == 1
    # Each refusal in a row doubles the pause, up to the maximum.
    assert backoff.refusals == 2
    assert backoff.until_ns - time.monotonic_ns() <= 2 * _BACKOFF_BASE_MS * 1_000_000
    for i in range(20):
        ex.send.on_order_response(_refused(100 + i, "Simulated rejection"))
    assert backoff.until_ns - time.monotonic_ns() <= _BACKOFF_MAX_MS * 1_000_000
    # The pause over and a fresh read of the budget (the rate-limit answer said it was used up: until
    # then one request every 10 s), the flatten goes out; an accepted action resets the count.
    backoff.until_ns = 0
    ex.core.admission.on_reading(budget_reading(cap=20_000, used=10_000))
    ex.send.pump()
    assert ws.posts == 2
    ok = ExchangeResponse(ok=True, response_type="order", statuses=(OrderStatus(kind="error", text="x"),))
    ex.send.on_order_response(PostResponse(2, "action", exchange=ok))
    assert backoff.refusals == 0

"""A close's exit reason when the closing fill reaches the tracker before the executor's ``OrderSubmitted``
(the fill comes on the feed's user stream, the reason on the executor's ``exec``: two publishers, no order
between them). Live, such a close was labelled "external"; it is one of hip3's cloids, so the tracker now
holds the close (bounded) until the ``OrderSubmitted`` names its reason."""

from __future__ import annotations

import time
from decimal import Decimal

import msgspec

from hip3.hyperliquid.wire import new_cloid
from hip3.messages import OrderSubmitted, PositionClosed, UserFill
from hip3.positions import HeldCloses
from hip3.runtime.bus import Bus
from tests.actors.helpers import wait
from tests.actors.test_position_tracker import Tracked, _ready, held, tracked  # noqa: F401 - fixture
from tests.execution.helpers import closed

D = Decimal


def _closing_fill(cloid: str) -> UserFill:
    return UserFill(coin="xyz:GOLD", px=D(101), sz=D(2), is_buy=False, time_ms=int(time.time() * 1000), oid=9,
                    tid=9, cloid=cloid, fee=D("0.01"), closed_pnl=D(2), crossed=True, is_snapshot=False, recv_ns=1)


def _submitted(cloid: str) -> OrderSubmitted:
    return OrderSubmitted(cloid=cloid, intent_id="x1", coin="xyz:GOLD", asset=110000, is_buy=False, px=D(100),
                          sz=D(2), reduce_only=True, tif="Ioc", kind="flatten", reason="mark_regression", nonce=1,
                          post_id=1, origin_recv_ns=1, sent_ns=1)


def test_a_closing_fill_before_its_order_submitted_keeps_the_exit_reason(tracked: Tracked) -> None:  # noqa: F811
    t = tracked
    assert wait(lambda: _ready(t), 10)
    assert wait(lambda: bool(t.snaps()) and any(p.coin == "xyz:GOLD" for p in held(t.snaps()[-1])), 5)
    executor = Bus(t.run.cfg, "executor", context=t.run.context, run_dir=t.run.cfg.run_path)
    try:
        exec_pub = executor.publisher("exec")
        assert wait(lambda: exec_pub.on_subscription() > 0 or exec_pub.subscriptions > 0, 5)
        cloid = new_cloid()
        t.feed.user.publish(_closing_fill(cloid))  # the fill first...
        assert wait(lambda: not any(p.coin == "xyz:GOLD" for p in held(t.snaps()[-1])), 5, t.feed.pump)
        time.sleep(0.1)
        assert t.cap.of(PositionClosed) == []  # ...its close waits for the reason
        exec_pub.publish(_submitted(cloid))  # ...then the executor's OrderSubmitted
        assert wait(lambda: bool(t.cap.of(PositionClosed)), 5, t.feed.pump)
        (c,) = t.cap.of(PositionClosed)
        assert (c.coin, c.exit_reason) == ("xyz:GOLD", "mark_regression")
    finally:
        executor.close()


def test_a_held_close_goes_out_as_external_when_no_order_submitted_comes() -> None:
    h = HeldCloses(hold_ms=2000, max_held=2)
    a, b, c = closed(reason="external"), closed(reason="external"), closed(reason="external")
    assert h.hold("0xa", a, 1000) == []
    assert h.hold("0xb", b, 1500) == []
    assert h.hold("0xc", c, 1600) == [a]  # bounded: the oldest goes at once
    assert h.expire(3499) == [] and h.expire(3500) == [b] and len(h) == 1
    assert h.release("0xc", "time_stop") == msgspec.structs.replace(c, exit_reason="time_stop")
    assert h.release("0xc", "time_stop") is None and h.expire(10_000) == []

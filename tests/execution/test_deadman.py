"""The dead man's switch's re-arming decisions (``hip3.execution.deadman``): refused by the exchange for the
account's volume or its daily trigger limit, it stops, says so once, and comes back when it can."""

from __future__ import annotations

from decimal import Decimal

from hip3.execution.deadman import STATE_CODES, DeadMansSwitch
from hip3.hyperliquid.errors import schedule_cancel_daily_error, schedule_cancel_volume_error

T0 = 1_769_594_000_000  # 2026-01-28 09:53:20 UTC
DAY = 86_400_000


def test_armed_on_success_and_one_request_in_flight_at_a_time() -> None:
    sw = DeadMansSwitch(60_000)
    assert sw.want(T0) == T0 + 60_000
    sw.on_sent()
    assert sw.want(T0 + 1) is None  # the answer is not in yet
    assert sw.on_answer(True, "", T0 + 60_000, T0 + 5) is None
    assert sw.state == "armed" and sw.stats() == {"schedule_cancel_state": 1, "schedule_cancel_armed_until_s":
                                                  (T0 + 60_000) // 1000}
    assert sw.want(T0 + 20_000) == T0 + 80_000


def test_volume_refusal_stops_rearming_until_the_volume_is_there() -> None:
    sw = DeadMansSwitch(60_000)
    sw.on_sent()
    note = sw.on_answer(False, schedule_cancel_volume_error(1_000_000, "373.47205"), T0 + 60_000, T0)
    assert note is not None and note.warning and note.event == "schedule_cancel_refused"
    assert "$1,000,000" in note.detail
    assert sw.state == "refused_volume" and sw.required_usd == 1_000_000
    assert sw.stats()["schedule_cancel_state"] == STATE_CODES["refused_volume"]
    assert all(sw.want(T0 + k * 20_000) is None for k in range(1, 1000))  # never again on its own
    assert sw.on_volume(Decimal("999999.99")) is None
    back = sw.on_volume(Decimal("1000000"))
    assert back is not None and not back.warning
    assert sw.on_volume(Decimal("1000001")) is None  # said once
    assert sw.want(T0 + 1) == T0 + 60_001
    sw.on_sent()
    again = sw.on_answer(True, "", T0 + 60_001, T0 + 2)
    assert again is not None and sw.state == "armed"


def test_unparseable_volume_refusal_is_still_a_refusal() -> None:
    sw = DeadMansSwitch(60_000)
    sw.on_sent()
    note = sw.on_answer(False, "Cannot set scheduled cancel time until enough volume traded", T0, T0)
    assert note is not None and sw.state == "refused_volume" and sw.required_usd is None
    assert sw.want(T0 + DAY) is None and sw.on_volume(Decimal(10**12)) is None


def test_daily_limit_waits_for_midnight_utc() -> None:
    sw = DeadMansSwitch(60_000)
    sw.on_sent()
    note = sw.on_answer(False, schedule_cancel_daily_error(10), T0, T0)
    assert note is not None and note.warning and sw.state == "refused_daily"
    midnight = (T0 // DAY + 1) * DAY
    assert sw.want(midnight - 1) is None
    assert sw.want(midnight) == midnight + 60_000


def test_other_failures_are_retried_and_warned_once_per_streak() -> None:
    sw = DeadMansSwitch(60_000)
    notes = []
    for k in range(5):
        sw.on_sent()
        notes.append(sw.on_answer(False, "post timed out; outcome unknown", T0, T0 + k))
        assert sw.want(T0 + k) == T0 + k + 60_000  # retried at the next period
    assert [n is not None for n in notes] == [True, False, False, False, False]
    sw.on_sent()
    sw.on_answer(True, "", T0 + 60_000, T0)
    sw.on_sent()
    assert sw.on_answer(False, "Invalid nonce: duplicate nonce 1", T0, T0) is not None  # a new streak


def test_not_sent_frees_the_next_attempt() -> None:
    sw = DeadMansSwitch(60_000)
    sw.on_sent()
    sw.on_not_sent()
    assert sw.want(T0) == T0 + 60_000

"""The alert notifier: rate limit, scrubbing, destinations from the environment, and delivery through
apprise to a local receiver (127.0.0.1) that answers, hangs or refuses."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hip3.ops.alerts import (
    AlertEvent,
    AlertsConfig,
    AlertsError,
    AppriseSender,
    Notifier,
    RateLimiter,
    Scrubber,
    destinations_from_env,
)
from tests.ops.receiver import Receiver, closed_port


class Rec:
    """A Log stand-in that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self.lines.append((level, event, fields))

    def debug(self, event: str, **f: Any) -> None:
        self._add("debug", event, f)

    def info(self, event: str, **f: Any) -> None:
        self._add("info", event, f)

    def warning(self, event: str, **f: Any) -> None:
        self._add("warning", event, f)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [f for _, e, f in self.lines if e == name]


def ev(kind: str = "hardstop", text: str = "x", key: str = "") -> AlertEvent:
    return AlertEvent(kind=kind, level="critical", title=kind, text=text, key=key)


def notifier(urls: list[str], log: Rec, clock: Any = None, **params: Any) -> Notifier:
    p = AlertsConfig(enabled=True, **params)
    sender = AppriseSender(urls, p.urls_env, p.send_timeout_s)
    kw = {} if clock is None else {"clock": clock}
    return Notifier(p, sender, log, "test@host", Scrubber(urls), **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ pure parts


def test_rate_limit_holds_back_per_key_and_reports_the_count() -> None:
    rl = RateLimiter(count=2, window_s=60)
    assert rl.admit(ev(), 0.0) == 0
    assert rl.admit(ev(), 1.0) == 0
    assert rl.admit(ev(text="third"), 2.0) is None
    assert rl.admit(ev(text="fourth"), 3.0) is None
    assert rl.admit(ev(kind="feed"), 3.0) == 0  # another kind has its own budget
    assert rl.admit(ev(key="crash_loop:feed"), 3.0) == 0  # so has another key of the same kind
    assert rl.held == 2
    assert rl.due(59.0) == []
    # The window frees: the latest held-back message goes out with the count of all held back.
    (latest, n), = rl.due(60.0)
    assert (latest.text, n) == ("fourth", 2)
    assert rl.held == 0
    assert rl.admit(ev(), 61.0) == 0  # the digest used the free slot at 60: 1 s later there is still one
    assert rl.admit(ev(), 61.5) is None


def test_a_message_after_held_back_ones_reports_them() -> None:
    rl = RateLimiter(count=1, window_s=10)
    assert rl.admit(ev(), 0.0) == 0
    assert rl.admit(ev(), 1.0) is None
    assert rl.admit(ev(), 2.0) is None
    assert rl.admit(ev(), 10.5) == 2


def test_scrubber_removes_keys_and_url_tokens_but_keeps_hosts() -> None:
    key = "ab" * 32
    urls = ["tgram://123456789:AAHsecretBotToken_x/-1001234567", "json://127.0.0.1:8080/hook?token=s3cr3tTokenValue"]
    s = Scrubber(urls)
    text = f"key 0x{key} bot 123456789:AAHsecretBotToken_x chat -1001234567 tok s3cr3tTokenValue at 127.0.0.1:8080"
    out = s(text)
    for secret in (key, "AAHsecretBotToken_x", "123456789", "1001234567", "s3cr3tTokenValue"):
        assert secret not in out
    assert "127.0.0.1:8080" in out and "[REDACTED]" in out


def test_destinations_come_from_the_named_variable_only() -> None:
    p = AlertsConfig(enabled=True, urls_env="MY_ALERTS")
    with pytest.raises(AlertsError, match="MY_ALERTS holds no destination"):
        destinations_from_env(p, {})
    assert destinations_from_env(p, {"MY_ALERTS": " json://a/b \n tgram://T/C "}) == ["json://a/b", "tgram://T/C"]


def test_an_unknown_url_is_refused_by_position_and_scheme_never_by_value() -> None:
    with pytest.raises(AlertsError) as e:
        AppriseSender(["json://127.0.0.1/x", "nosuch://SUPERSECRETTOKEN/x"], "HIP3_ALERT_URLS", 5.0)
    assert "destination 2 of 2" in str(e.value) and "'nosuch'" in str(e.value)
    assert "SUPERSECRETTOKEN" not in str(e.value)


# ------------------------------------------------------------------ delivery to a local receiver


def test_messages_reach_the_receiver_and_held_back_ones_are_counted() -> None:
    rcv = Receiver()
    log = Rec()
    now = [0.0]
    n = notifier([rcv.url()], log, clock=lambda: now[0], rate_limit_count=2, rate_limit_window_s=60)
    try:
        for i in range(5):
            n.notify(AlertEvent(kind="feed", level="warning", title="stale", text=f"stale #{i}"))
        assert rcv.wait(lambda m: len(m) >= 2)
        now[0] = 61.0
        n.tick()  # the window freed: the latest held back goes out, with the count
        assert rcv.wait(lambda m: len(m) >= 3)
        n.close(5)
        msgs = rcv.messages
        assert len(msgs) == 3
        assert msgs[0]["title"] == "hip3 test@host: WARNING stale" and msgs[0]["type"] == "warning"
        assert msgs[0]["message"].startswith("stale #0\n")
        assert msgs[2]["message"].startswith("stale #4\n")
        assert "2 more 'feed' alerts held back by the rate limit" in msgs[2]["message"]
        assert rcv.paths == ["/hook"] * 3
        assert n.sent == 3 and n.failed == 0
    finally:
        rcv.close()


def test_a_hanging_destination_never_blocks_the_caller() -> None:
    rcv = Receiver(mode="hang")
    log = Rec()
    n = notifier([rcv.url()], log, queue_size=5, send_timeout_s=60, rate_limit_count=1000)
    try:
        n.notify(ev(text="first"))
        assert rcv.holding.wait(10)  # the sending thread is inside the send, held by the receiver

        def flood() -> None:
            for i in range(200):
                n.notify(ev(text=f"#{i}"))
                n.tick()

        t = threading.Thread(target=flood)
        t.start()
        t.join(10)
        # 200 alerts while the destination holds the first: none waited for it. The queue (5) filled and
        # the rest were dropped and counted, with one warning.
        assert not t.is_alive()
        assert n.dropped_total == 195
        assert len(log.events("alert_queue_full")) == 1
        rcv.release()
        assert rcv.wait(lambda m: len(m) >= 6)
        n.close(5)
        assert "195 alerts dropped: the alert queue was full" in rcv.messages[1]["message"]
    finally:
        rcv.close()


def test_a_refusing_destination_is_logged_once_per_outage() -> None:
    port = closed_port()
    log = Rec()
    url = f"json://127.0.0.1:{port}/hook"
    n = notifier([url], log, rate_limit_count=1000)
    for i in range(4):
        n.notify(ev(text=f"#{i}"))
    n.close(20)
    assert n.failed == 4 and n.sent == 0
    failed = log.events("alert_send_failed")
    assert len(failed) == 1
    assert failed[0]["services"] == ["JSON"]
    # The destination comes back (the same sender, now pointed at a live receiver): recovery is said once
    # and the first message delivered says what was lost.
    rcv = Receiver()
    try:
        n2 = notifier([rcv.url()], log, rate_limit_count=1000)
        n2._failed_in_outage = 4  # the state the outage left (one notifier per session in real use)
        n2.notify(ev(text="back"))
        n2.close(10)
        assert len(log.events("alert_send_recovered")) == 1
        assert "4 alert(s) could not be delivered earlier" in rcv.messages[0]["message"]
    finally:
        rcv.close()


def test_secrets_never_leave_in_a_message_or_a_failure_log() -> None:
    rcv = Receiver()
    log = Rec()
    key = "0x" + "cd" * 32
    url = rcv.url("hook/S3CRETPATHTOKEN")
    n = notifier([url, f"json://127.0.0.1:{closed_port()}/OTHERTOKEN123"], log)
    try:
        n.notify(ev(text=f"a text with {key} and S3CRETPATHTOKEN in it"))
        n.close(10)
        assert rcv.messages, "delivered to the live destination"
        body = rcv.messages[0]["message"]
        assert key[2:] not in body and "S3CRETPATHTOKEN" not in body and "[REDACTED]" in body
        logged = repr(log.lines)
        assert "S3CRETPATHTOKEN" not in logged and "OTHERTOKEN123" not in logged and key[2:] not in logged
    finally:
        rcv.close()

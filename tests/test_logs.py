"""The JSON log line: reserved keys, field collisions and secret redaction."""

from __future__ import annotations

import logging

import msgspec

from hip3.runtime.logs import _JsonFormatter


def _line(who: str, message: str, **fields: object) -> dict[str, object]:
    rec = logging.LogRecord(f"hip3.{who}", logging.INFO, __file__, 1, message, None, None)
    rec.fields = fields
    rec.actor = who
    out: dict[str, object] = msgspec.json.decode(_JsonFormatter().format(rec))
    return out


def test_line_has_reserved_keys_and_fields() -> None:
    obj = _line("executor", "order_sent", cloid="0xabc", px=1.5)
    assert obj["actor"] == "executor" and obj["event"] == "order_sent" and obj["level"] == "info"
    assert obj["cloid"] == "0xabc" and obj["px"] == 1.5


def test_field_named_like_a_reserved_key_is_kept() -> None:
    # The supervisor logs which actor it restarted with actor=...; it must not vanish from the line.
    obj = _line("supervisor", "actor_started", actor="executor", event="x", pid=7)
    assert obj["actor"] == "supervisor" and obj["event"] == "actor_started"
    assert obj["actor_"] == "executor" and obj["event_"] == "x" and obj["pid"] == 7


def test_key_shaped_values_are_redacted() -> None:
    secret = "ab" * 32
    obj = _line("executor", "oops", detail=f"key=0x{secret}")
    assert secret not in str(obj) and "[REDACTED]" in str(obj["detail"])

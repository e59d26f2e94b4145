"""The base of every bus message."""

from __future__ import annotations

import msgspec


class Msg(msgspec.Struct, frozen=True, kw_only=True, tag_field="t"):
    """Base of every bus message. ``seq`` and ``src`` are stamped by the sending socket."""

    seq: int = 0
    src: str = ""

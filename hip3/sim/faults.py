"""Run-time fault-injection switches of the simulator (the bot must survive every one of them).

* ``stalled_channels``: channel names (``"bbo"``) or channel:coin/user keys (``"bbo:xyz:TSLA"``) that
  stop being sent while the socket stays open (a silent stall; the feed must detect staleness).
  ``"pong"`` stops the answers to pings too (a server that is silent altogether: ping/pong timeouts).
* ``post_delay_ms``: delay every WS post response and HTTP /exchange response.
* ``reject_posts``: every action answers ``{"status":"err","response": reject_text}`` (whole request).
* ``rate_limit_actions``: actions answer the exchange's "Too many cumulative requests sent ..." error.
* ``rate_limit_http``: every HTTP /info and /exchange request answers HTTP 429; WS info posts an error.
* ``malformed_every``: every Nth published market-data frame is sent truncated (invalid JSON).
* ``user_subscribe_delay_ms``: a user-channel subscription (orderUpdates, userFills, userEvents) takes
  effect, and is acked, this long after its request: an exchange slow to set up an account's streams.
  A fill in that window reaches the account's REST state but no stream (the userFills snapshot sent with
  the late ack is flagged ``isSnapshot``, which hip3 never applies).
Dropping connections is an action (``SimServer.drop``), not a switch.
"""

from __future__ import annotations

from typing import Any

from hip3.sim.params import FaultParams


class Faults:
    """Mutable fault state, owned by the server's event loop."""

    FIELDS = (
        "stalled_channels",
        "post_delay_ms",
        "reject_posts",
        "reject_text",
        "rate_limit_actions",
        "rate_limit_http",
        "malformed_every",
        "user_subscribe_delay_ms",
    )

    def __init__(self, p: FaultParams) -> None:
        self.stalled: set[str] = set(p.stalled_channels)
        self.post_delay_ms = p.post_delay_ms
        self.reject_posts = p.reject_posts
        self.reject_text = p.reject_text
        self.rate_limit_actions = p.rate_limit_actions
        self.rate_limit_http = p.rate_limit_http
        self.malformed_every = p.malformed_every
        self.user_subscribe_delay_ms = p.user_subscribe_delay_ms
        self.frame_counter = 0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``{field: value}``; unknown fields or wrong types raise ValueError naming the field."""
        for k, v in changes.items():
            if k not in self.FIELDS:
                raise ValueError(f"unknown fault {k!r}; known: {', '.join(self.FIELDS)}")
            if k == "stalled_channels":
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise ValueError("stalled_channels must be a list of strings")
                self.stalled = set(v)
            elif k in ("post_delay_ms", "malformed_every", "user_subscribe_delay_ms"):
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise ValueError(f"{k} must be an int >= 0")
                setattr(self, k, v)
            elif k == "reject_text":
                if not isinstance(v, str):
                    raise ValueError("reject_text must be a string")
                self.reject_text = v
            else:
                if not isinstance(v, bool):
                    raise ValueError(f"{k} must be a bool")
                setattr(self, k, v)

    def is_stalled(self, channel: str, key: str) -> bool:
        """``key`` is the subscription key, e.g. ``bbo:xyz:TSLA``."""
        return bool(self.stalled) and (channel in self.stalled or key in self.stalled)

    def maybe_corrupt(self, payload: bytes) -> bytes:
        """Every ``malformed_every``-th frame is truncated into invalid JSON."""
        if not self.malformed_every:
            return payload
        self.frame_counter += 1
        if self.frame_counter % self.malformed_every:
            return payload
        return payload[: max(1, len(payload) // 2)]

    def state(self) -> dict[str, Any]:
        return {
            "stalled_channels": sorted(self.stalled),
            "post_delay_ms": self.post_delay_ms,
            "reject_posts": self.reject_posts,
            "reject_text": self.reject_text,
            "rate_limit_actions": self.rate_limit_actions,
            "rate_limit_http": self.rate_limit_http,
            "malformed_every": self.malformed_every,
            "user_subscribe_delay_ms": self.user_subscribe_delay_ms,
        }

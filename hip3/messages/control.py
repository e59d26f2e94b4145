"""The control plane (supervisor <-> every actor) and the detector's market view for the operator."""

from __future__ import annotations

import msgspec

from hip3.messages.base import Msg

# --------------------------------------------------------------------------------------------------
# Control plane (supervisor <-> every actor).
# --------------------------------------------------------------------------------------------------


class HardStopState(Msg, frozen=True, tag="hs"):
    """The latch. Broadcast on change and periodically; a higher ``epoch`` always wins."""

    latched: bool
    reason: str | None
    epoch: int
    since_ms: int | None


class HardStopRequest(Msg, frozen=True, tag="hsreq"):
    """An actor (or the CLI) asks the supervisor to latch the hard stop."""

    reason: str
    source: str


class HardStopAck(Msg, frozen=True, tag="hsack"):
    """An actor has applied hard-stop ``epoch`` locally."""

    actor: str
    epoch: int


class HardStopProgress(Msg, frozen=True, tag="hsprog"):
    """The executor's flatten sequence: ``done`` once positions (``dust`` aside) and open orders are zero."""

    epoch: int
    positions: int
    open_orders: int
    attempts: int
    done: bool
    alert: bool
    # Positions left open because the exchange refuses their close as below its minimum order value
    # ("xyz:GOLD 0.002"): "done" then means nothing more can be done, and a person must close them.
    dust: tuple[str, ...] = ()


class Heartbeat(Msg, frozen=True, tag="hb"):
    actor: str
    pid: int
    ready: bool
    hardstop_epoch: int
    stats: dict[str, int] = msgspec.field(default_factory=dict)


class Ready(Msg, frozen=True, tag="ready"):
    """An actor's READY changed (also implied by heartbeats)."""

    actor: str
    pid: int
    ready: bool
    detail: str


class Shutdown(Msg, frozen=True, tag="bye"):
    reason: str


class Alert(Msg, frozen=True, tag="alert"):
    level: str  # "warning" | "critical"
    actor: str
    text: str


class MarketLine(msgspec.Struct, frozen=True, kw_only=True):
    """One market as the detector sees it, for the operator's views (not for decisions)."""

    coin: str
    mid_px: float  # 0: no valid book
    oracle_px: float  # 0: no ctx yet
    mark_px: float
    dislocation_bps: float  # (mid - oracle) / oracle; 0 without both
    edge_bps: float  # the better side's raw takeable edge vs the oracle (negative: nothing to take)
    gate: str  # the last gate verdict (``GateVerdict`` name, lower case)
    bbo_age_ms: int  # -1: never received
    ctx_age_ms: int


class MarketView(Msg, frozen=True, tag="mview"):
    """The detector's low-rate market summary to the supervisor's inbox (once a second, from a timer)."""

    actor: str
    markets: tuple[MarketLine, ...]

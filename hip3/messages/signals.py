"""The detector's signals, recorded (observe mode records these and sends nothing)."""

from __future__ import annotations

from hip3.messages.base import Msg

# --------------------------------------------------------------------------------------------------
# Signals (detector -> recorder). Observe mode records these and sends nothing.
# --------------------------------------------------------------------------------------------------


class Signal(Msg, frozen=True, tag="sig"):
    signal_id: str
    coin: str
    is_buy: bool
    raw_edge_bps: float
    net_edge_bps: float
    threshold_bps: float
    oracle_px: float
    best_px: float
    book_sz: float
    suggested_sz: float
    confidence: float
    recv_ns: int
    time_ms: int
    # The per-leg taker fee in the threshold (bps; twice that is the round trip) and its source.
    taker_fee_bps: float = 0.0
    fee_source: str = ""


class SignalFollowup(Msg, frozen=True, tag="sigf"):
    signal_id: str
    coin: str
    offset_ms: int
    oracle_px: float
    best_px: float
    edge_bps: float
    edge_change_bps: float
    time_ms: int
    # The opposite touch at the horizon (the bid after a buy signal, the ask after a sell): the price a
    # taker would have exited at, so the analysis can score the whole round trip, spread included.
    # 0.0 = unknown (a message from before this field).
    exit_px: float = 0.0

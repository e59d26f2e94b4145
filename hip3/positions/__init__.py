"""Positions: the book (the source of truth for positions, open orders, realised PnL and fees), the closes
that wait for their exit reason, and the position tracker's decisions (``planner``: when to sync from REST
and what an answer means; ``rest``: the exchange's answers as the book's input). The tracker actor
(``actors/position_tracker.py``) only does the I/O and publishes."""

from hip3.positions.book import PositionBook
from hip3.positions.held import HeldCloses
from hip3.positions.records import BookResult, ExchangePosition, exit_reason_of

__all__ = ["BookResult", "ExchangePosition", "HeldCloses", "PositionBook", "exit_reason_of"]

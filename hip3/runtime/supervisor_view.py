"""What the supervisor's neighbours read from it, as a shape: ``SupervisorView``.

The status snapshot, the operator commands, the Prometheus metrics, the alerts to a person and the stop
sequence all look at the running supervisor (its slots, its latch, its trading figures). They take this
Protocol rather than the ``Supervisor`` class, so none of them imports ``hip3.runtime.supervisor`` and the
supervisor can import every one of them: the dependency runs one way, from the loop to its parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hip3.config import Config
    from hip3.messages import DexCollateral, HardStopProgress
    from hip3.runtime.bus import Receiver
    from hip3.runtime.hardstop import Latch
    from hip3.runtime.liveness import LoopWatch, Slot
    from hip3.runtime.logs import Log
    from hip3.runtime.paper import PaperExchange
    from hip3.runtime.trading import TradingStats
    from hip3.ui.board import Board

__all__ = ["Served", "SupervisorView"]


class Served(Protocol):
    """An HTTP endpoint the status names (the metrics, the dashboard): its address once it listens."""

    @property
    def url(self) -> str | None: ...


class SupervisorView(Protocol):
    """The running supervisor as the status, the commands, the metrics, the alerts and the stop read it.
    ``stopping`` and ``stop_request`` are written by the ``stop`` command; the rest is read only."""

    stopping: bool
    stop_request: dict[str, Any]

    @property
    def cfg(self) -> Config: ...
    @property
    def log(self) -> Log: ...
    @property
    def run_dir(self) -> Path: ...
    @property
    def started_at(self) -> float: ...
    @property
    def exchange(self) -> PaperExchange | None: ...
    @property
    def latch(self) -> Latch: ...
    @property
    def slots(self) -> dict[str, Slot]: ...
    @property
    def watch(self) -> LoopWatch: ...
    @property
    def trading(self) -> TradingStats: ...
    @property
    def trading_sub(self) -> Receiver: ...
    @property
    def board(self) -> Board: ...
    @property
    def hardstop_progress(self) -> HardStopProgress | None: ...
    @property
    def alerts(self) -> list[dict[str, Any]]: ...
    @property
    def collateral(self) -> DexCollateral | None: ...
    @property
    def metrics(self) -> Served | None: ...
    @property
    def dashboard(self) -> Served | None: ...

    def hardstop(self, reason: str, source: str) -> bool: ...
    def reset_hardstop(self) -> bool: ...
    def status(self) -> dict[str, Any]: ...
    def shutdown(self) -> None: ...

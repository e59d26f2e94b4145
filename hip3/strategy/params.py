"""Strategy parameters (strategy.md §3–5, §8, §17), decoded from the config's sections.

Owned by the strategy work (issue 5): every parameter with the Rust original's *default* value.
Unknown keys are refused (``forbid_unknown_fields``).
"""

from __future__ import annotations

import msgspec


class OracleTrackerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_move_bps: float = 2.0


class GateParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class DetectorParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class ExitParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass

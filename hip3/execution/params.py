"""Execution and risk parameters (strategy.md §6, §11, §12, §17), decoded from the config's sections.

Owned by the execution work (issue 6): every parameter with the Rust original's *default* value.
Unknown keys are refused (``forbid_unknown_fields``).
"""

from __future__ import annotations

import msgspec


class ExecutorParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class RiskParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Hard-stop triggers (§11)."""


class SoftGateParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Entry-throttling gates (§12)."""

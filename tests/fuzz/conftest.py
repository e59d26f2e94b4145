"""Tallies of the bad inputs the fuzz tests fed (by kind), written as JSON at the end of the session when
``HIP3_FUZZ_FIGURES`` names a file (the figures in the reliability notes come from there)."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

TALLY: Counter[str] = Counter()


def tally(kind: str, n: int = 1) -> None:
    TALLY[kind] += n


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = os.environ.get("HIP3_FUZZ_FIGURES")
    if out and TALLY:
        with open(out, "w") as f:
            json.dump(dict(sorted(TALLY.items())), f, indent=1)

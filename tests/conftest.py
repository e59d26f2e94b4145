"""Shared fixtures: short run directories (ipc socket paths are limited to ~100 bytes) and configs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.config import Config, parse_config

BASE_TOML = """
mode = "paper"
[exchange]
network = "sim"
[[markets]]
coin = "xyz:GOLD"
[[markets]]
coin = "xyz:SILVER"
[logging]
stderr = false
"""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="h3t", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def make_config(run_dir: Path, extra: str = "", base: str = BASE_TOML) -> Config:
    return parse_config(f'run_dir = "{run_dir}"\n' + base + extra, "test.toml")

"""Market specs at actor start (``hip3.runtime.markets.load_registry``): retries, and the on-disk cache
that lets an actor restarted while ``/info`` refuses (HTTP 429) still start, the executor above all."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hip3.hyperliquid.assets import AssetError
from hip3.hyperliquid.rest import RestError
from hip3.runtime import markets
from hip3.runtime.logs import Log
from hip3.runtime.markets import CACHE_AFTER_ATTEMPTS, cache_path, load_registry
from tests.conftest import BASE_TOML, make_config
from tests.hyperliquid.test_assets import meta, perp_dexs

LOG = Log("test")


class FakeRest:
    """Answers from a script: a value, or an exception to raise."""

    def __init__(self, fail: int = 0, names: list[str] | None = None) -> None:
        self.fail = fail  # this many calls raise 429 first
        self.calls = 0
        self.names = names

    def _tick(self) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise RestError("HTTP 429 Too Many Requests", status=429)

    def perp_dexs(self) -> list[object]:
        self._tick()
        return perp_dexs()

    def meta(self, dex: str) -> dict[str, object]:
        self._tick()
        return meta() if self.names is None else meta(self.names)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(markets.time, "sleep", slept.append)
    return slept


EXCHANGE = '[exchange]\nnetwork = "sim"\nrest_url = "http://127.0.0.1:9"\nws_url = "ws://127.0.0.1:9/ws"\n'


def cfg(tmp_path: Path) -> Any:
    base = "\n".join(line for line in BASE_TOML.splitlines() if line not in ("[exchange]", 'network = "sim"'))
    return make_config(tmp_path, base=base + "\n" + EXCHANGE)


def load(tmp_path: Path, rest: Any, attempts: int = 10) -> Any:
    return load_registry(cfg(tmp_path), LOG, attempts=attempts, rest=rest)


def test_success_saves_the_cache_atomically_and_private(tmp_path: Path) -> None:
    old = os.umask(0o077)  # as under supervisor.py
    try:
        reg = load(tmp_path, FakeRest())
    finally:
        os.umask(old)
    assert reg.by_coin("xyz:GOLD").asset == 110028
    path = cache_path(cfg(tmp_path))
    body = json.loads(path.read_text())
    assert body["dex_pattern"] == "xyz" and body["perp_dexs"] == perp_dexs() and body["meta"] == meta()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_outage_with_a_cache_uses_it_after_a_few_attempts(tmp_path: Path, no_sleep: list[float]) -> None:
    load(tmp_path, FakeRest())
    no_sleep.clear()
    rest = FakeRest(fail=1000)
    reg = load(tmp_path, rest)
    assert reg.by_coin("xyz:SILVER").asset == 110026 and reg.by_coin("xyz:SILVER").sz_decimals == 2
    assert rest.calls == CACHE_AFTER_ATTEMPTS  # not the ten attempts (about 37 s of backoff)
    assert sum(no_sleep) < 2.0


def test_outage_without_a_cache_tries_every_attempt_then_fails(tmp_path: Path) -> None:
    rest = FakeRest(fail=1000)
    with pytest.raises(RestError, match="after 5 attempts"):
        load(tmp_path, rest, attempts=5)
    assert rest.calls == 5


def test_recovery_before_the_cache_is_needed_takes_the_fresh_answer(tmp_path: Path) -> None:
    load(tmp_path, FakeRest(names=["xyz:GOLD", "xyz:SILVER"]))  # an old universe in the cache
    reg = load(tmp_path, FakeRest(fail=1))  # one 429, then the exchange answers
    assert reg.by_coin("xyz:GOLD").asset == 110028  # from the fresh meta, not the cached 110000
    assert json.loads(cache_path(cfg(tmp_path)).read_text())["meta"] == meta()


def test_cache_of_another_exchange_or_dex_is_ignored(tmp_path: Path) -> None:
    load(tmp_path, FakeRest())
    path = cache_path(cfg(tmp_path))
    body = json.loads(path.read_text())
    body["rest_url"] = "https://api.example.invalid"
    path.write_text(json.dumps(body))
    with pytest.raises(RestError):
        load(tmp_path, FakeRest(fail=1000), attempts=4)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"rest_url": 1}'])
def test_garbage_cache_is_ignored(tmp_path: Path, content: str) -> None:
    cache_path(cfg(tmp_path)).write_text(content)
    with pytest.raises(RestError):
        load(tmp_path, FakeRest(fail=1000), attempts=4)


def test_unusable_cache_keeps_retrying_the_exchange(tmp_path: Path) -> None:
    load(tmp_path, FakeRest())
    path = cache_path(cfg(tmp_path))
    body = json.loads(path.read_text())
    body["meta"] = {"universe": [{"name": "xyz:OTHER", "szDecimals": 2, "maxLeverage": 3}]}  # GOLD is gone
    path.write_text(json.dumps(body))
    rest = FakeRest(fail=CACHE_AFTER_ATTEMPTS + 2)
    reg = load(tmp_path, rest)  # the cache is refused, the exchange answers later
    assert reg.by_coin("xyz:GOLD").asset == 110028


def test_spec_errors_from_the_exchange_are_final(tmp_path: Path) -> None:
    rest = FakeRest(names=["xyz:A", "xyz:B"])  # the configured GOLD/SILVER are not listed
    with pytest.raises(AssetError):
        load(tmp_path, rest)
    assert rest.calls == 2

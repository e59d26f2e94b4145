"""Paper mode against a simulator that runs as its own process (``exchange.rest_url``): no simulator of the
supervisor's, and the account's key from HIP3_SIM_KEY only (never the live key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from hip3.config import ENV_ACCOUNT_ADDRESS
from hip3.runtime.logs import Log
from hip3.runtime.paper import PaperExchangeError, open_paper_exchange
from tests.conftest import make_config

KEY = "0x" + "5d" * 32


def test_the_simulators_own_key_is_used_and_the_live_key_never(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ACCOUNT_ADDRESS, "restored-at-teardown")
    monkeypatch.delenv(ENV_ACCOUNT_ADDRESS)
    cfg = make_config(run_dir, base='mode = "paper"\n[exchange]\nnetwork = "sim"\nrest_url = "http://127.0.0.1:9"\n'
                                    '[[markets]]\ncoin = "xyz:GOLD"\n')
    with pytest.raises(PaperExchangeError, match="set HIP3_SIM_KEY to the key of the account it funds"):
        open_paper_exchange(cfg, Path("x.toml"), Log("supervisor"), {"HIP3_PRIVATE_KEY": KEY})
    with pytest.raises(PaperExchangeError, match="HIP3_SIM_KEY is not a 32-byte hex key") as e:
        open_paper_exchange(cfg, Path("x.toml"), Log("supervisor"), {"HIP3_SIM_KEY": KEY[:40]})
    assert KEY[2:40] not in str(e.value)
    exchange, key = open_paper_exchange(cfg, Path("x.toml"), Log("supervisor"), {"HIP3_SIM_KEY": KEY})
    assert exchange is None  # nothing started: the simulator is not the supervisor's child
    assert key.address == Account.from_key(KEY).address.lower()
    import os

    assert os.environ[ENV_ACCOUNT_ADDRESS] == key.address  # the actors' account, when the config names none

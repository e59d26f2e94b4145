"""The preflight check (``hip3.ops.preflight``) against the simulator on 127.0.0.1: what it finds, one line
each, through the library code the actors use; and what it does when a host does not answer."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hip3.config import parse_config
from hip3.ops.preflight import Finding, PreflightInterrupted, Retry, run_checks
from hip3.runtime.logs import Log
from hip3.runtime.secrets import SigningKey
from tests.conftest import sim_config

MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA")
LOG = Log("preflight-test")


def fast() -> Retry:
    return Retry(attempts=3, wait_s=0.01)


def check(cfg: Any, sim: Any, key: str | None, account: str, **kw: Any) -> list[Finding]:
    rest = sim.url
    ws = rest.replace("http://", "ws://") + "/ws"
    address = SigningKey(key).address if key else None
    return run_checks(cfg, rest, ws, address, "test key" if key else "", account, LOG, kw.pop("retry", fast()), **kw)


def lines(findings: list[Finding], severity: str | None = None) -> list[str]:
    return [f.line() for f in findings if severity is None or f.severity == severity]


def check_on_own_sim(run_dir: Path, params: Any, funds_usd: int | None) -> list[Finding]:
    """The check against a simulator of its own (``params``) for a new account holding ``funds_usd`` on the
    dex (None: nothing)."""
    from hip3.sim.app import SimServer

    key = "0x" + secrets.token_hex(32)
    account = SigningKey(key).address
    funds = {} if funds_usd is None else {account: Decimal(funds_usd)}
    sim = SimServer(params, seed=3, funds=funds, order_log=str(run_dir / "o.jsonl"))
    sim.start()
    try:
        return check(sim_config(run_dir, sim.url, account, MARKETS), sim, key, account)
    finally:
        sim.stop()


def test_a_paper_config_passes_with_the_fee_the_detector_will_assume(run_dir: Path, sim_server: Any,
                                                                     paper_key: str) -> None:
    account = SigningKey(paper_key).address
    cfg = sim_config(run_dir, sim_server.url, account, MARKETS)
    found = check(cfg, sim_server, paper_key, account)
    assert not [f for f in found if f.severity in ("fatal", "block")], lines(found)
    text = "\n".join(lines(found))
    assert f"ok    rest        {sim_server.url} answers" in text
    assert f"ok    websocket   {sim_server.url.replace('http', 'ws')}/ws accepts a connection" in text
    # The simulator charges tier 0 at deployer scale 1: 9 bps a leg; the detector's threshold is twice that
    # plus the default slippage (2) and minimum edge (5).
    for coin in MARKETS:
        assert f"{coin}: asset 1100" in text
    assert "taker fee 9.000 bps a leg (exchange), entry threshold 25.00 bps" in text
    assert "collateral  dex 'xyz': 100000 USDC usable" in text
    assert "requests    0 used of 10,000 (reserve 500 for flattens and cancels): entries allowed" in text
    assert "the dead man's switch is refused below $0" not in text  # the fixture turns the gate off
    # The leverage this account has set (the simulator's default, 10x, within each market's maximum).
    for coin in MARKETS:
        assert f"ok    leverage    {coin}: 10x isolated; an entry at the per-market cap ($50) takes $5.00 of margin" \
            in text


def test_a_leverage_too_low_for_the_dex_collateral_is_a_warning_per_market(run_dir: Path) -> None:
    """1x on a dex holding 30 USDC: an entry at the $50 per-market cap needs $50 of margin, which the exchange
    (and the simulator) refuses with "Insufficient margin to place order."; the check says so before a start,
    per market, as a warning (smaller entries still go)."""
    from hip3.sim.params import SimParams

    found = check_on_own_sim(run_dir, SimParams(default_leverage=1), 30)
    warn = [x for x in lines(found, "warn") if "leverage" in x]
    assert len(warn) == len(MARKETS), lines(found)
    assert warn[0] == ("WARN  leverage    xyz:GOLD: 1x isolated; an entry at the per-market cap ($50) takes $50.00 of "
                       "margin, more than the dex's 30 USDC usable: such an entry is refused for margin (raise the "
                       "leverage in the exchange's app, lower the cap, or fund the dex)")
    assert not lines(found, "fatal") and not lines(found, "block")


def test_a_misspelt_market_is_one_fatal_line_with_the_closest_name(run_dir: Path, sim_server: Any,
                                                                  paper_key: str) -> None:
    account = SigningKey(paper_key).address
    cfg = sim_config(run_dir, sim_server.url, account, ("xyz:GOLD", "xyz:SILVR", "xyz:TSLAA"))
    found = check(cfg, sim_server, paper_key, account)
    fatal = lines(found, "fatal")
    assert fatal == ["FAIL  market      market 'xyz:SILVR' is not listed by dex 'xyz' (did you mean 'xyz:SILVER'?)",
                     "FAIL  market      market 'xyz:TSLAA' is not listed by dex 'xyz' (did you mean 'xyz:TSLA'?)"]
    assert any(line.startswith("ok    market      xyz:GOLD: asset") for line in lines(found))  # the others: checked


def test_a_dex_pattern_that_matches_nothing(run_dir: Path, sim_server: Any, paper_key: str) -> None:
    account = SigningKey(paper_key).address
    cfg = parse_config(f'run_dir = "{run_dir}"\nmode = "paper"\n[exchange]\nnetwork = "sim"\nrest_url = '
                       f'"{sim_server.url}"\ndex_pattern = "nosuchdex"\n[[markets]]\ncoin = "xyz:GOLD"\n', "t.toml")
    fatal = lines(check(cfg, sim_server, paper_key, account), "fatal")
    assert len(fatal) == 1 and "no perp dex name contains 'nosuchdex'" in fatal[0]
    assert "exchange.dex_pattern = 'nosuchdex'" in fatal[0]


def test_an_unfunded_dex_and_a_low_request_budget_block_entries(run_dir: Path) -> None:
    from hip3.sim.params import SimParams

    found = check_on_own_sim(run_dir, SimParams(request_budget_initial=100), None)
    block = lines(found, "block")
    assert len(block) == 2, lines(found)
    assert block[0].startswith("BLOCK collateral  dex 'xyz' has no usable collateral (0 < 10 USDC free")
    assert "fund-dex" in block[0]
    assert block[1].startswith("BLOCK requests    0 used of 100 (reserve 500")
    assert not lines(found, "fatal")
    assert any("dead man's switch is refused below $1,000,000" in x for x in lines(found, "warn"))


def test_live_mode_without_a_key_or_with_an_unapproved_one(run_dir: Path, sim_server: Any, paper_key: str) -> None:
    account = SigningKey(paper_key).address
    cfg = parse_config(f'run_dir = "{run_dir}"\nmode = "live"\n[exchange]\nnetwork = "testnet"\nrest_url = '
                       f'"{sim_server.url}"\nws_url = "{sim_server.url.replace("http", "ws")}/ws"\naccount_address = '
                       f'"{account}"\n[[markets]]\ncoin = "xyz:GOLD"\n', "live.toml")
    fatal = lines(check(cfg, sim_server, None, account), "fatal")
    assert fatal == ["FAIL  key         no key: set HIP3_PRIVATE_KEY or HIP3_KEYSTORE (+ password)"]
    agent = "0x" + secrets.token_hex(32)  # an API wallet the account never approved
    found = check(cfg, sim_server, agent, account)
    assert not lines(found, "fatal")
    assert any(f"the key's address {SigningKey(agent).address} is not among the API wallets" in x
               for x in lines(found, "warn")), lines(found)
    assert paper_key[2:] not in "\n".join(lines(found)) and agent[2:] not in "\n".join(lines(found))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a host that hangs)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


def test_hosts_that_do_not_answer_are_named_and_the_tries_bounded(run_dir: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    rest, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
    cfg = parse_config(f'run_dir = "{run_dir}"\nmode = "observe"\n[exchange]\nnetwork = "testnet"\nrest_url = '
                       f'"{rest}"\nws_url = "{ws}"\n[[markets]]\ncoin = "xyz:GOLD"\n', "o.toml")
    notes: list[str] = []
    found = run_checks(cfg, rest, ws, None, "", "", LOG, Retry(attempts=3, wait_s=0.01, note=notes.append))
    fatal = lines(found, "fatal")
    assert len(fatal) == 2, lines(found)
    assert fatal[0].startswith(f"FAIL  rest        cannot reach the exchange's REST API: POST /info (perpDexs, meta) "
                               f"at {rest} failed 3 times:")
    assert fatal[1].startswith(f"FAIL  websocket   cannot reach the exchange's WebSocket: WebSocket connect at {ws} "
                               "failed 3 times:")
    assert len(notes) == 4 and all(rest in n or ws in n for n in notes)  # 2 retries per host, each named


def test_a_wait_between_tries_ends_at_once_when_stopped() -> None:
    stop = threading.Event()
    calls: list[float] = []

    def fails() -> None:
        calls.append(time.monotonic())
        raise OSError("refused")

    retry = Retry(attempts=5, wait_s=60.0, stop=stop)
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(PreflightInterrupted, match="reading at http://h:1"):
        retry.run("reading", "http://h:1", fails)
    assert len(calls) == 1  # interrupted in the first 60 s wait, not after it


def test_alerts_enabled_without_their_variable_is_a_fatal_line(run_dir: Path, sim_server: Any,
                                                               paper_key: str) -> None:
    account = SigningKey(paper_key).address
    cfg = sim_config(run_dir, sim_server.url, account, MARKETS, "[alerts]\nenabled = true\nurls_env = \"MY_HOOKS\"\n")
    found = check(cfg, sim_server, paper_key, account, alerts_env={})
    assert lines(found, "fatal") == ["FAIL  alerts      [alerts] enabled = true but the environment variable MY_HOOKS "
                                     "holds no destination (apprise URLs separated by spaces; e.g. json://host/path, "
                                     "tgram://TOKEN/CHAT)"]
    ok = check(cfg, sim_server, paper_key, account, alerts_env={"MY_HOOKS": "json://127.0.0.1:9/x"})
    assert "ok    alerts      on: 1 destination(s) from MY_HOOKS: JSON" in lines(ok)


def test_the_check_sends_nothing_to_the_exchange(run_dir: Path, sim_server: Any, paper_key: str) -> None:
    """Reads only: no order, no action (the simulator's order log stays empty)."""
    account = SigningKey(paper_key).address
    cfg = sim_config(run_dir, sim_server.url, account, MARKETS)
    check(cfg, sim_server, paper_key, account)
    log = run_dir / "orders.jsonl"
    assert not log.exists() or log.read_text().strip() == ""

"""Config: defaults load, every bad input is one clear line naming the key and the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hip3.config import DEFAULT_CONFIG, REPO_ROOT, ConfigError, load_config, parse_config, resolve_config_path

MIN = 'mode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n'


@pytest.mark.parametrize("name", ["default.toml", "testnet.toml", "mainnet.toml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(str(REPO_ROOT / "configs" / name))
    if name == "default.toml":
        assert cfg.mode == "paper" and cfg.exchange.network == "sim"  # never real money by default
    else:
        assert cfg.mode == "observe"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MIN + "[bus]\ntransprt = 'ipc'\n", "unknown key `bus.transprt`"),
        ("colour = 1\n" + MIN, "unknown key `colour`"),
        (MIN + "colour = 1\n", "unknown key `markets[0].colour`"),
        (MIN + "[supervisor]\nmax_restarts = -1\n", "`supervisor.max_restarts`: Expected `int` >= 0"),
        (MIN + "[supervisor]\nheartbeat_interval_ms = 'fast'\n", "`supervisor.heartbeat_interval_ms`: Expected `int`"),
        ('mode = "yolo"\n', "`mode`: Invalid enum value 'yolo'"),
        ('mode = "paper"\n[[markets]]\ncoin = "GOLD"\n', "`markets[0].coin`: 'GOLD' is not a HIP-3 name"),
        (MIN + '[[markets]]\ncoin = "XYZ:gold"\n', "listed twice"),
        ('mode = "paper"\n', "`markets`: trading modes need an explicit market allowlist"),
        (MIN + '[exchange]\nnetwork = "mainnet"\n', "paper mode runs against the simulator"),
        ('mode = "live"\n[[markets]]\ncoin = "xyz:GOLD"\n', "live mode needs testnet or mainnet"),
        (MIN + "[[markets]]\ncoin = 'xyz:A'\nthreshold_bps = -1\n", "`markets[1].threshold_bps`"),
        (MIN + "[bus\n", "not valid TOML"),
        (MIN + "[sim.model]\njump_prbo = 0.1\n", "unknown key `sim.model.jump_prbo`"),
        # Asked-for features that are not built are refused, never silently ignored.
        (MIN + "[detector]\nexit_profile_enabled = true\n", "exit profiles are not wired"),
        (MIN + "[sim.model]\njump_prob = 7\n", "`sim.model.jump_prob`"),
        (MIN + "[executor]\nreconnect_base_ms = 5\n", "`executor.reconnect_base_ms`: Expected `int` >= 10"),
        (MIN + "[executor]\nreconnect_base_ms = 500\nreconnect_max_ms = 400\n",
         "reconnect_max_ms must be >= reconnect_base_ms"),
        (MIN + 'key = "0x' + "ab" * 32 + '"\n', "64-hex-digit value"),
        # The bus is not authenticated: no tcp in live mode, never off loopback.
        ('mode = "live"\n[exchange]\nnetwork = "testnet"\n[[markets]]\ncoin = "xyz:GOLD"\n[bus]\ntransport = "tcp"\n',
         "tcp is refused in live mode"),
        (MIN + '[bus]\ntransport = "tcp"\ntcp_host = "0.0.0.0"\n', "is not loopback"),
    ],
)
def test_bad_configs_give_one_clear_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/etc/hip3/bad.toml")
    msg = str(e.value)
    assert "\n" not in msg
    assert "/etc/hip3/bad.toml" in msg
    assert expected in msg


def test_private_key_in_error_is_never_echoed() -> None:
    key = "ab" * 32
    with pytest.raises(ConfigError) as e:
        parse_config(MIN + f'k = "{key}"\n', "x.toml")
    assert key not in str(e.value)


def test_precedence_cli_then_env_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HIP3_CONFIG", raising=False)
    assert resolve_config_path(None) == DEFAULT_CONFIG
    monkeypatch.setenv("HIP3_CONFIG", str(tmp_path / "env.toml"))
    assert resolve_config_path(None) == tmp_path / "env.toml"
    assert resolve_config_path(str(tmp_path / "cli.toml")) == tmp_path / "cli.toml"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "nope.toml"))


def test_cli_with_bad_config_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MIN + "[bus]\nbogus = 1\n")
    r = subprocess.run([sys.executable, str(REPO_ROOT / "supervisor.py"), "status", "--config", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "unknown key `bus.bogus`" in r.stderr and str(bad) in r.stderr


def test_cli_with_bad_arguments_exits_non_zero() -> None:
    r = subprocess.run([sys.executable, str(REPO_ROOT / "supervisor.py"), "strat"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.parametrize("url", ["https://api.hyperliquid.xyz", "https://api.hyperliquid-testnet.xyz/",
                                 "wss://api.hyperliquid.xyz/ws"])
def test_paper_mode_never_points_at_the_exchange(url: str) -> None:
    """Paper mode with an address runs against a simulator of its own; an exchange's address there is refused."""
    key = "ws_url" if url.startswith("wss") else "rest_url"
    text = f'mode = "paper"\n[exchange]\nnetwork = "sim"\n{key} = "{url}"\n[[markets]]\ncoin = "xyz:GOLD"\n'
    with pytest.raises(ConfigError, match="paper mode runs against a simulator, not the exchange"):
        parse_config(text, "paper.toml")
    parse_config(text.replace(url, "http://127.0.0.1:7000"), "paper.toml")


@pytest.mark.parametrize("argv,code", [(["status"], 0), (["status", "--json"], 0), (["reset-hardstop"], 1)])
def test_a_reader_that_goes_away_gets_no_traceback(tmp_path: Path, argv: list[str], code: int) -> None:
    """``status | head``: the output closes before the command writes. A read ends quietly; a command that
    acts says in one line that it may not have finished, and does not claim success."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'run_dir = "{tmp_path / "run"}"\n' + MIN)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command starts: every write fails
    try:
        r = subprocess.run([sys.executable, str(REPO_ROOT / "supervisor.py"), *argv, "--config", str(cfg)],
                           stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr
    assert r.returncode == code
    if code:
        assert r.stderr.count("\n") == 1 and "was closed before it finished" in r.stderr

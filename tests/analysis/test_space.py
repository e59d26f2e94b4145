"""The optimiser's search space (hip3/analysis/space.py): parsing, checks against the config at load,
trial values applied to a config, and the winner written as TOML that a config accepts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hip3.analysis.space import InvalidTrial, SpaceError, apply, load_space, parse_space, toml_fragment
from hip3.config import parse_config

BASE = 'mode = "observe"\nrun_dir = "/tmp/x"\n[[markets]]\ncoin = "xyz:GOLD"\n[[markets]]\ncoin = "xyz:SILVER"\n' \
       'threshold_bps = 40.0\n'
COINS = ["xyz:GOLD", "xyz:SILVER"]

SPACE = """
[detector]
min_edge_bps = { low = 0.0, high = 30.0, step = 0.5 }
min_consecutive_oracle_moves = { low = 1, high = 4 }
adaptive_threshold = { choices = [true, false] }
[exits.time_stop]
threshold_ms = { low = 2000, high = 30000, step = 1000 }
[exits.mark_regression]
exit_threshold_bps = { low = 1.0, high = 50.0, log = true }
[markets."xyz:GOLD"]
threshold_bps = { low = 5.0, high = 80.0 }
[markets."xyz:SILVER"]
enabled = { choices = [true, false] }
"""


def _space(tmp_path: Path, text: str = SPACE) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(text)
    return p


def test_parse_kinds_and_paths(tmp_path: Path) -> None:
    space = load_space(_space(tmp_path), parse_config(BASE), COINS)
    kinds = {p.name: (p.kind, p.path) for p in space.params}
    assert kinds["detector.min_edge_bps"] == ("float", ("detector", "min_edge_bps"))
    assert kinds["detector.min_consecutive_oracle_moves"][0] == "int"
    assert kinds["detector.adaptive_threshold"][0] == "categorical"
    assert kinds["exits.time_stop.threshold_ms"] == ("int", ("exits", "time_stop", "threshold_ms"))
    assert kinds["markets.xyz:GOLD.threshold_bps"] == ("float", ("markets", "xyz:GOLD", "threshold_bps"))
    log = next(p for p in space.params if p.name == "exits.mark_regression.exit_threshold_bps")
    assert log.log and log.step is None


@pytest.mark.parametrize(("text", "error"), [
    ("[detector]\nmin_edge_bps = 5\n", "expected a range"),
    ("[detector]\nmin_edge_bps = { low = 5.0, high = 1.0 }\n", "low must be below high"),
    ("[detector]\nmin_edge_bps = { low = 0.0, high = 1.0, stride = 2 }\n", "unknown: stride"),
    ("[detector]\nmin_edge_bps = { choices = [] }\n", "non-empty list"),
    ("[detector]\nmin_edge_bps = { low = 0.0, high = 9.0, log = true }\n", "log scale"),
    ("[detector]\nno_such_key = { low = 0.0, high = 1.0 }\n", "no such config key"),
    ("[nowhere]\nx = { low = 0.0, high = 1.0 }\n", "only these sections"),
    ("[exchange]\nrequest_timeout_ms = { low = 10, high = 20 }\n", "only these sections"),
    ("[detector]\nsizing_alpha = { low = 0.05, high = 2.0 }\n", "sizing_alpha"),  # the config's bound: <= 1
    ('[markets."xyz:TSLA"]\nthreshold_bps = { low = 1.0, high = 2.0 }\n', "not a market of this replay"),
    ('[markets."xyz:GOLD"]\nsize = { low = 1.0, high = 2.0 }\n', "only threshold_bps and enabled"),
    ("[detector\n", "not valid TOML"),
    ("", "names no parameter"),
])
def test_a_bad_space_is_one_line_before_any_replay(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(SpaceError, match=error) as e:
        load_space(_space(tmp_path, text), parse_config(BASE), COINS)
    assert "\n" not in str(e.value)


def test_values_applied_to_the_config_and_markets_disabled(tmp_path: Path) -> None:
    base = parse_config(BASE)
    space = load_space(_space(tmp_path), base, COINS)
    values = {"detector.min_edge_bps": 7.5, "exits.time_stop.threshold_ms": 9000,
              "markets.xyz:GOLD.threshold_bps": 22.5, "markets.xyz:SILVER.enabled": False}
    cfg = apply(base, COINS, values, space)
    assert cfg.detector.min_edge_bps == 7.5 and cfg.exits.time_stop.threshold_ms == 9000
    assert [(m.coin, m.threshold_bps) for m in cfg.markets] == [("xyz:GOLD", 22.5)]
    assert base.detector.min_edge_bps == 5.0  # the base is untouched
    kept = apply(base, COINS, {"markets.xyz:SILVER.enabled": True}, space)
    assert [(m.coin, m.threshold_bps) for m in kept.markets] == [("xyz:GOLD", None), ("xyz:SILVER", 40.0)]
    bad = parse_space("[detector]\nmin_book_notional_usd = { low = 100.0, high = 9000.0 }\n")
    with pytest.raises(InvalidTrial, match="normal_book_notional_usd must be > min_book_notional_usd"):
        apply(base, COINS, {"detector.min_book_notional_usd": 9000.0}, bad)


def test_the_winner_as_toml_gives_the_same_config(tmp_path: Path) -> None:
    base_text = 'mode = "observe"\nrun_dir = "/tmp/x"\n'  # observe: no market list of its own
    base = parse_config(base_text)
    space = load_space(_space(tmp_path), base, COINS)
    values = {"detector.min_edge_bps": 7.5, "detector.adaptive_threshold": True, "exits.time_stop.threshold_ms": 9000,
              "exits.mark_regression.exit_threshold_bps": 3.3333333333333335,
              "markets.xyz:GOLD.threshold_bps": 22.123456789, "markets.xyz:SILVER.enabled": False}
    cfg = apply(base, COINS, values, space)
    fragment = toml_fragment(values, space, cfg, "best trial 7\nsecond line")
    assert fragment.startswith("# best trial 7\n# second line\n")
    tomllib.loads(fragment)
    again = parse_config(base_text + fragment)
    assert again == cfg  # every value exactly, the market list included

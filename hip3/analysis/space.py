"""The optimiser's search space: which config keys to vary, over what, and how a trial's values become a
``Config`` (and, for the winner, a TOML fragment to paste into one).

The space file is TOML laid out like the config, with a range where a value would be::

    [detector]
    min_edge_bps = { low = 0.0, high = 30.0, step = 0.5 }   # floats (step optional; log = true for a log scale)
    min_consecutive_oracle_moves = { low = 1, high = 4 }     # integers when low and high are
    adaptive_threshold = { choices = [true, false] }         # any TOML values
    [exits.time_stop]
    threshold_ms = { low = 2000, high = 30000, step = 1000 }
    [markets."xyz:GOLD"]                                     # per market: its threshold, or leave it out
    threshold_bps = { low = 5.0, high = 80.0 }
    enabled = { choices = [true, false] }

Every key is checked against the config at load time: an unknown key, a range the config refuses (its
``msgspec.Meta`` bounds) or a market the base config does not trade is one clear line (``SpaceError``),
before any replay runs. A trial whose combination the config refuses (say ``normal_book_notional_usd``
not above ``min_book_notional_usd``) fails alone (``InvalidTrial``) and is recorded as failed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from hip3.config import Config

_RANGE_KEYS = {"low", "high", "step", "log"}
# What a replay can tell apart: the strategy, its risk limits, and the markets it trades. (The exchange,
# bus, logging and simulator sections are the replay's own.)
SECTIONS = ("oracle", "gates", "detector", "exits", "executor", "risk", "soft_gates", "positions", "markets")


class SpaceError(ValueError):
    """A search space that cannot be used: one line naming the key."""


class InvalidTrial(ValueError):
    """A combination of values the config refuses."""


@dataclass(frozen=True)
class Param:
    name: str  # dotted: "detector.min_edge_bps", "markets.xyz:GOLD.threshold_bps"
    path: tuple[str, ...]
    kind: str  # "float" | "int" | "categorical"
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value for an Optuna trial (ask interface)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def _leaf(name: str, path: tuple[str, ...], spec: dict[str, Any]) -> Param:
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
            raise SpaceError(f"`{name}`: choices must be a non-empty list, alone")
        if any(isinstance(c, dict | list) for c in choices):
            raise SpaceError(f"`{name}`: choices must be plain values")
        return Param(name, path, "categorical", choices=tuple(choices))
    unknown = set(spec) - _RANGE_KEYS
    if unknown or "low" not in spec or "high" not in spec:
        raise SpaceError(f"`{name}`: a range is {{ low, high[, step][, log] }} or {{ choices = [...] }}"
                         + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log", False))
    for k, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
            raise SpaceError(f"`{name}.{k}`: a finite number, got {v!r}")
    if not low < high:
        raise SpaceError(f"`{name}`: low must be below high ({low!r} >= {high!r})")
    if step is not None and step <= 0:
        raise SpaceError(f"`{name}.step`: must be > 0")
    if log and (low <= 0 or step is not None):
        raise SpaceError(f"`{name}`: a log scale needs low > 0 and no step")
    is_int = all(isinstance(v, int) for v in (low, high)) and (step is None or isinstance(step, int))
    return Param(name, path, "int" if is_int else "float", float(low), float(high),
                 None if step is None else float(step), log)


def _walk(table: dict[str, Any], prefix: tuple[str, ...], out: list[Param]) -> None:
    for key, value in table.items():
        path = (*prefix, key)
        name = ".".join(path)
        if not isinstance(value, dict):
            raise SpaceError(f"`{name}`: expected a range {{ low, high }} or {{ choices = [...] }}, got {value!r}")
        if "low" in value or "high" in value or "choices" in value:
            out.append(_leaf(name, path, value))
        else:
            _walk(value, path, out)


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]

    def __post_init__(self) -> None:
        if not self.params:
            raise SpaceError("the search space names no parameter")


def parse_space(text: str, source: str = "<space>") -> Space:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(f"{source}: not valid TOML: {e}") from None
    params: list[Param] = []
    try:
        _walk(raw, (), params)
    except SpaceError as e:
        raise SpaceError(f"{source}: {e}") from None
    return Space(tuple(params))


def load_space(path: Path, base: Config, coins: list[str]) -> Space:
    """Read and check a space file against ``base`` (``coins``: the markets a replay would trade)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpaceError(f"{path}: cannot read: {e.strerror or e}") from None
    space = parse_space(text, str(path))
    for p in space.params:
        if len(p.path) < 2 or p.path[0] not in SECTIONS:
            raise SpaceError(f"{path}: `{p.name}`: only these sections can vary: {', '.join(SECTIONS)}")
        if p.path[0] == "markets":
            if len(p.path) != 3 or p.path[2] not in ("threshold_bps", "enabled"):
                raise SpaceError(f"{path}: `{p.name}`: per market only threshold_bps and enabled can vary")
            if p.path[1] not in coins:
                raise SpaceError(f"{path}: `{p.name}`: {p.path[1]} is not a market of this replay "
                                 f"({', '.join(coins)})")
        edges = list(p.choices) if p.kind == "categorical" else [p.low, p.high]
        for v in edges:
            try:
                apply(base, coins, {p.name: int(v) if p.kind == "int" else v}, space)
            except InvalidTrial as e:
                raise SpaceError(f"{path}: `{p.name}` = {v!r}: {e}") from None
    return space


def apply(base: Config, coins: list[str], values: dict[str, Any], space: Space) -> Config:
    """``base`` with a trial's ``values``. Raises ``InvalidTrial`` if the config refuses them."""
    raw = msgspec.to_builtins(base)
    thresholds = {m.coin: m.threshold_bps for m in base.markets} if base.markets else dict.fromkeys(coins)
    enabled = dict.fromkeys(thresholds, True)
    by_name = {p.name: p for p in space.params}
    for name, value in values.items():
        path = by_name[name].path
        if path[0] == "markets":
            (thresholds if path[2] == "threshold_bps" else enabled)[path[1]] = value
            continue
        node = raw
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                raise InvalidTrial(f"`{'.'.join(path)}`: no such config section")
            node = node[key]
        if path[-1] not in node:
            raise InvalidTrial(f"`{'.'.join(path)}`: no such config key")
        node[path[-1]] = value
    raw["markets"] = [{"coin": c, **({"threshold_bps": t} if t is not None else {})}
                      for c, t in thresholds.items() if enabled[c]]
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as e:
        raise InvalidTrial(str(e)) from None
    return cfg


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {v!r} as TOML")


def toml_fragment(values: dict[str, Any], space: Space, cfg: Config, comment: str = "") -> str:
    """The trial's values as TOML to paste into a config: its sections, and the whole ``[[markets]]``
    list when a market parameter varied (it replaces the config's list: disabled markets are left out)."""
    by_name = {p.name: p for p in space.params}
    sections: dict[tuple[str, ...], list[str]] = {}
    markets = False
    for name in sorted(values):
        path = by_name[name].path
        if path[0] == "markets":
            markets = True
            continue
        sections.setdefault(path[:-1], []).append(f"{path[-1]} = {_toml_value(values[name])}")
    out = [f"# {line}" for line in comment.splitlines()] if comment else []
    for section, lines in sections.items():
        out.append(f"[{'.'.join(section)}]" if section else "")
        out.extend(lines)
    if markets and not cfg.markets:
        out.append("# every market disabled: the best result was not to trade these markets at all")
    elif markets:
        out.append("# the whole market list (it replaces yours; disabled markets are left out)")
        for m in cfg.markets:
            out.append("[[markets]]")
            out.append(f"coin = {_toml_value(m.coin)}")
            if m.threshold_bps is not None:
                out.append(f"threshold_bps = {_toml_value(m.threshold_bps)}")
    return "\n".join(line for line in out if line != "") + "\n"

"""Fuzz: the config loader. Random TOML-ish text and structurally valid TOML with wrong types, out-of-range
values and unknown keys: nothing but ``ConfigError`` escapes, with one line that names the file and the
key (or the TOML problem)."""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hip3.config import Config, ConfigError, load_config, parse_config
from hip3.sim.params import SimParams

from .conftest import tally

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCE = "fuzz.toml"
BASE: dict[str, Any] = {"mode": "paper", "run_dir": "/tmp/h3-config-fuzz", "exchange": {"network": "sim"},
                        "markets": [{"coin": "xyz:GOLD"}], "logging": {"stderr": False}}


def _check_message(e: ConfigError, *must_name: str) -> str:
    text = str(e)
    assert "\n" not in text and text.startswith(f"config error in {SOURCE}: "), text
    assert len(text) < 600, text
    for name in must_name:
        assert name in text, (name, text)
    return text


# ---------------------------------------------------------------- a tiny TOML writer (tests only)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is JSON-compatible for these
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise AssertionError(v)


def to_toml(doc: dict[str, Any], prefix: str = "") -> str:
    scalars = [(k, v) for k, v in doc.items() if not isinstance(v, dict) or not v or k == "__inline__"]
    tables = [(k, v) for k, v in doc.items() if isinstance(v, dict) and v and k != "__inline__"]
    out = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in scalars]
    for k, v in tables:
        name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
        out.append(f"[{name}]")
        out.append(to_toml(v, name))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the schema's leaves


def _leaves(cls: type[msgspec.Struct], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for f in msgspec.structs.fields(cls):
        tp = f.type
        base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
        if isinstance(base, type) and issubclass(base, msgspec.Struct):
            out.extend(_leaves(base, (*prefix, f.encode_name)))
        elif f.name in ("markets", "sim"):
            continue
        else:
            out.append(((*prefix, f.encode_name), tp))
    return out


LEAVES = _leaves(Config) + [(("sim", *p), t) for p, t in _leaves(SimParams)]


def _wrong_for(tp: Any) -> list[Any]:
    """TOML values of a type the field does not take."""
    text = repr(tp)
    if text.startswith("tuple") or text.startswith("typing.Tuple"):
        return [12345, "a string", {"x": 1}, [{"x": 1}], [[1]]]
    wrong: list[Any] = [[1, 2], {"x": 1}]
    if "str" not in text and "Literal" not in text:
        wrong.append("not a number \u2603")
    if "int" not in text and "float" not in text:
        wrong.append(12345)
    if "bool" not in text:
        wrong.append(3.5 if "int" in text and "float" not in text else True)
    return wrong


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(BASE))
    d = doc
    for p in path[:-1]:
        d = d.setdefault(p, {})
    d[path[-1]] = value
    return doc


@FUZZ
@given(st.sampled_from(LEAVES), st.data())
def test_wrong_types_name_the_key(leaf: tuple[tuple[str, ...], Any], data: st.DataObject) -> None:
    path, tp = leaf
    value = data.draw(st.sampled_from(_wrong_for(tp)))
    tally("config: wrong-typed values")
    with pytest.raises(ConfigError) as e:
        parse_config(to_toml(_with(path, value)), SOURCE)
    _check_message(e.value, ".".join(path))


_HOSTILE_NUMBERS = [-1, 0, -(2**63), 2**63, 2**64 + 1, 10**40, -1e308, 1e308, float("inf"), float("-inf"),
                    float("nan"), -0.0, 1e-300]


@FUZZ
@given(st.sampled_from([lf for lf in LEAVES if "int" in repr(lf[1]) or "float" in repr(lf[1])]),
       st.sampled_from(_HOSTILE_NUMBERS))
def test_hostile_numbers_are_refused_by_name_or_accepted(leaf: tuple[tuple[str, ...], Any], value: Any) -> None:
    path = leaf[0]
    tally("config: hostile numbers (range)")
    try:
        cfg = parse_config(to_toml(_with(path, value)), SOURCE)
    except ConfigError as e:
        # the key, or for a cross-field rule its section (the rule's text names the other key)
        _check_message(e, path[0])
        return
    assert isinstance(cfg, Config)


@FUZZ
@given(st.sampled_from([p for p, _ in LEAVES]), st.text(st.characters(min_codepoint=97, max_codepoint=122),
                                                        min_size=1, max_size=12))
def test_unknown_keys_are_named(path: tuple[str, ...], junk: str) -> None:
    section = path[:-1]
    name = f"{path[-1]}_{junk}"
    tally("config: unknown keys")
    with pytest.raises(ConfigError) as e:
        parse_config(to_toml(_with((*section, name), 1)), SOURCE)
    text = _check_message(e.value, "unknown key", name)
    assert ".".join((*section, name)) in text


_FRAGMENTS = ['mode = "paper"\n', 'mode = "live"\n', "[exchange]\n", 'network = "sim"\n', "[[markets]]\n",
              'coin = "xyz:GOLD"\n', "[executor]\n", "max_batch_size = 0\n", "[sim.model]\n", "tick_ms = -5\n",
              "[bus]\n", 'transport = "tcp"\n', "a = [", "]", "{", "}", '"', "'''", "\\u0000", "=", "\n", " ",
              "[", "[[", "x.y.z = 1\n", "1979-05-27T07:32:00Z", "nan", "inf", "0x" + "a" * 64, "\U0001f642",
              "#", "\r\n", "\t", "\x00", "\ud800", "= = =", "[a]\n[a]\n", "k = 1\nk = 2\n"]


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=20)), max_size=30))
def test_random_text_raises_only_config_error(parts: list[str]) -> None:
    text = "".join(parts)
    tally("config: random TOML-ish text")
    try:
        parse_config(text, SOURCE)
    except ConfigError as e:
        _check_message(e)


@pytest.mark.parametrize("text", ["a = " + "[" * 5000, "a = " + "{x = " * 3000, "[" * 3000 + "a]",
                                  "a = " + "[" * 900 + "]" * 900],
                         ids=["open-arrays", "inline-tables", "table-header", "closed-arrays"])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(text: str) -> None:
    """Regression (found by fuzzing): tomllib recursed past Python's limit and RecursionError escaped."""
    with pytest.raises(ConfigError) as e:
        parse_config(text, SOURCE)
    _check_message(e.value)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """Regression (found by fuzzing): a binary config file raised UnicodeDecodeError out of load_config."""
    p = tmp_path / "bin.toml"
    p.write_bytes(b'mode = "paper"\n\xff\xfe\x00garbage\n')
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    assert "\n" not in str(e.value) and str(p) in str(e.value) and "UTF-8" in str(e.value)


def test_key_like_values_are_refused_without_echoing_them() -> None:
    key = "0x" + "3f" * 32
    with pytest.raises(ConfigError) as e:
        parse_config(to_toml(_with(("exchange", "account_address"), key)), SOURCE)
    assert key not in str(e.value) and key[2:] not in str(e.value) and "private key" in str(e.value)


def test_the_writer_round_trips_a_valid_config() -> None:
    """The generator itself: the base document is a valid config (so a refusal is the injected fault)."""
    cfg = parse_config(to_toml(json.loads(json.dumps(BASE))), SOURCE)
    assert cfg.markets[0].coin == "xyz:GOLD" and cfg.mode == "paper"


def test_a_bad_value_inside_a_table_valued_key_names_the_key() -> None:
    """Regression (found by fuzzing): msgspec's ``[...]`` path step was not understood, so the message said
    ``(top level)`` instead of the key."""
    with pytest.raises(ConfigError) as e:
        parse_config('mode = "observe"\n[soft_gates.correlation_concurrency]\ngroups = {x = 1}\n', SOURCE)
    _check_message(e.value, "soft_gates.correlation_concurrency.groups")

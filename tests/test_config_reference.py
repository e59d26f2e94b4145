"""docs/config-reference.md: generated from the config classes, current, complete; the shipped configs point
to it and to files that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from hip3 import config_reference
from hip3.config import REPO_ROOT, Config, load_config
from hip3.sim.params import SimParams

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.toml")) + sorted((REPO_ROOT / "deploy").glob("*.toml"))


def test_the_checked_in_reference_is_current() -> None:
    current = config_reference.OUTPUT.read_text(encoding="utf-8")
    assert current == config_reference.render(), (
        "docs/config-reference.md is not current: run `python -m hip3.config_reference --write` and commit it")
    r = subprocess.run([sys.executable, "-m", "hip3.config_reference", "--check"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_check_fails_on_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "config-reference.md"
    stale.write_text(config_reference.render().replace("heartbeat_timeout_ms", "heartbeat_timeout"))
    monkeypatch.setattr(config_reference, "OUTPUT", stale)
    assert config_reference.main(["--check"]) == 1
    assert config_reference.main(["--write"]) == 0
    assert config_reference.main(["--check"]) == 0


def _walk(info: Any, prefix: str) -> list[tuple[str, Any]]:
    """Every leaf key of a Struct (independently of the generator), with its msgspec type."""
    out = []
    for f in info.fields:
        t = f.type
        item = t.item_type if isinstance(t, mi.VarTupleType) else None
        if isinstance(t, mi.StructType):
            out += _walk(t, f"{prefix}{f.name}.")
        elif isinstance(item, mi.StructType):
            out += _walk(item, f"{prefix}{f.name}[].")
        elif not (prefix == "" and f.name == "sim"):
            out.append((prefix + f.name, t))
    return out


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_key_is_there_with_its_type_default_and_bounds() -> None:
    text = config_reference.OUTPUT.read_text(encoding="utf-8")
    sections = _sections(text)
    expected = _walk(mi.type_info(Config), "") + _walk(mi.type_info(SimParams), "sim.")
    assert len(expected) > 250
    assert sorted(config_reference.keys()) == sorted(k for k, _ in expected)
    defaults = {**{k: v for k, v in _defaults(Config(), "").items()}, **_defaults(SimParams(), "sim.")}
    for key, t in expected:
        path, name = key.rsplit(".", 1) if "." in key else ("", key)
        title = "Top level" if not path else (f"[[{path[:-2]}]]" if path.endswith("[]") else f"[{path}]")
        title = title.replace("[]", "")
        assert title in sections, (key, title)
        m = re.search(rf"^- \*\*`{name}`\*\*: (.*)$", sections[title], re.M)
        assert m, f"{key} is missing from section {title}"
        line = m.group(1)
        for bound in ("gt", "ge", "lt", "le"):
            v = getattr(t, bound, None) if not isinstance(t, mi.UnionType) else getattr(t.types[0], bound, None)
            if v is not None:
                assert config_reference._num(v) in line, (key, bound, v, line)
        if key in defaults and not isinstance(defaults[key], tuple | dict):
            assert f"default `{config_reference._toml(defaults[key])}`" in line, (key, line)


def _defaults(obj: msgspec.Struct, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in obj.__struct_fields__:
        v = getattr(obj, name)
        if isinstance(v, msgspec.Struct):
            out.update(_defaults(v, f"{prefix}{name}."))
        elif v is not None:
            out[prefix + name] = v
    return out


def test_the_comment_that_explains_a_key_is_in_the_reference() -> None:
    sections = _sections(config_reference.OUTPUT.read_text(encoding="utf-8"))
    sup = sections["[supervisor]"]
    assert "An actor whose heartbeats stop for this long is hung" in sup  # the comment above the field
    assert "- **`restart_period_s`**: float, default `60.0`; > 0, ≤ 86400.0.\n  See `max_restarts` above." in sup
    assert "full HIP-3 name" in sections["[[markets]]"]  # a trailing comment
    assert "rows are committed at most this long" in sections["[recorder]"]  # the class docstring's ``key``:
    assert "*batching*" in sections["[executor]"]  # a "---- title ----" group
    assert "- **`level`**: one of" in sections["[logging]"] and "10^6 bytes" in sections["[logging]"]
    assert "[sim.model]" in sections and "The simulator's own settings" in sections["[sim]"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_point_to_the_reference_and_link_only_to_files_that_exist(path: Path) -> None:
    load_config(str(path))
    text = path.read_text(encoding="utf-8")
    assert "docs/config-reference.md" in text
    refs = re.findall(r"[\w./-]+\.(?:md|py|toml|html|json|ya?ml)\b", "\n".join(
        line.split("#", 1)[1] for line in text.splitlines() if "#" in line))
    assert refs
    refs = [r for r in refs if not r.startswith("/")]  # a path on the host or in the container, not a link
    missing = [r for r in refs if not (REPO_ROOT / r).exists() and not (path.parent / r).exists()]
    assert not missing, f"{path.name} names files that do not exist: {missing}"

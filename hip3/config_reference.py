"""The configuration reference, generated from the config classes: ``docs/config-reference.md``.

    python -m hip3.config_reference            # print it
    python -m hip3.config_reference --write    # write docs/config-reference.md
    python -m hip3.config_reference --check    # exit 1 if the checked-in file is not current

Every key of ``hip3.config.Config`` (and of the simulator's ``hip3.sim.params.SimParams``, the ``[sim]``
table) with its type, default and bounds, read from the Structs themselves (``msgspec.inspect``), and the
words that explain it, read from the source: the comment block right above the field (shared by the
fields that follow it without a blank line), its trailing comment, or the class docstring's
``name``: sentence. A ``# ---- title ----`` comment starts a group. The class docstring introduces the
section. So the reference cannot drift from the code: ``tests/test_config_reference.py`` fails when the
checked-in file is not what this prints.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import re
import sys
import tokenize
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

__all__ = ["Key", "build", "keys", "render"]

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"
_HEADING = re.compile(r"^-{2,}\s*(.*?)\s*-{2,}$")


@dataclass
class Key:
    """One key of a section."""

    name: str
    type: str
    default: str
    bounds: str
    doc: str
    group: str = ""


@dataclass
class Section:
    path: str  # "supervisor", "exits.time_stop"; "markets" (with ``array``) for an array of tables
    intro: str
    keys: list[Key] = field(default_factory=list)
    array: bool = False
    prefix: str = ""  # of its keys' dotted paths: "markets[]" for an element of an array of tables


# -------------------------------------------------------------------------------------------------
# What the source says about a Struct's fields
# -------------------------------------------------------------------------------------------------


@dataclass
class _FieldDoc:
    doc: str = ""
    group: str = ""
    own: bool = True  # the comment is the field's own, not one shared with the field above


# A shared comment block covers the next fields only where they belong together: the comment names them,
# or their names share a first word (tcp_host, tcp_base_port) or a last one that is not a unit (md_hwm,
# event_hwm). Dense lists of unrelated keys are common, and a wrong explanation is worse than none.
_UNITS = frozenset({"ms", "s", "us", "ns", "usd", "bps", "mb", "minutes", "n", "pct"})
_GENERIC = frozenset({"min", "max", "enabled", "is", "use", "exit", "entry"})


def _related(name: str, documented: str, comment: str) -> bool:
    if re.search(rf"\b{re.escape(name)}\b", comment):
        return True
    a, b = name.split("_"), documented.split("_")
    return (a[0] == b[0] and a[0] not in _GENERIC) or (a[-1] == b[-1] and a[-1] not in _UNITS)


@cache
def _module_comments(module_name: str) -> tuple[ast.Module, dict[int, str], frozenset[int]]:
    """The module's AST, its comments by line, and the lines that hold only a comment."""
    source = inspect.getsource(sys.modules[module_name])
    comments: dict[int, str] = {}
    alone: set[int] = set()
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            comments[row] = tok.string.lstrip("#").strip()
            if lines[row - 1].strip().startswith("#"):
                alone.add(row)
    return ast.parse(source), comments, frozenset(alone)


def _docstring_mentions(docstring: str, name: str) -> str:
    """The sentence(s) of a class docstring that explain ``name`` (``name``: ...), up to the next one."""
    m = re.search(rf"``{re.escape(name)}``:\s*(.+?)(?=\s``\w+``:|\n\s*\n|\Z)", docstring, re.S)
    return " ".join(m.group(1).split()) if m else ""


def _is_title(block: list[str], run_continues: bool) -> bool:
    """A short one-line comment over a run of fields names the group ("5.2 filters.", "Session multipliers
    (threshold x, size x) by UTC window."), not the first field: it has no "this" (this long, this many)."""
    return run_continues and len(block) == 1 and len(block[0]) <= 64 and "this" not in block[0].lower()


def _field_docs(cls: type) -> dict[str, _FieldDoc]:
    tree, comments, alone = _module_comments(cls.__module__)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__), None)
    out: dict[str, _FieldDoc] = {}
    if node is None:
        return out
    docstring = inspect.cleandoc(cls.__doc__ or "")
    stmts = [(st.target.id, st.lineno, st.end_lineno or st.lineno) for st in node.body
             if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)]
    inherited, documented, group, titled = "", "", "", False
    last_end = 0
    for i, (name, start, end) in enumerate(stmts):
        block: list[str] = []
        row = start - 1
        while row in alone:
            block.insert(0, comments[row])
            row -= 1
        in_run = row == last_end  # no blank line or other statement between this field and the one above
        heads = [j for j, text in enumerate(block) if _HEADING.match(text)]
        if heads:  # an explicit "---- title ----": the group lasts until the next one
            group, titled = _HEADING.match(block[heads[-1]]).group(1), False  # type: ignore[union-attr]
            block = block[heads[-1] + 1:]
        elif block and _is_title(block, i + 1 < len(stmts) and stmts[i + 1][1] == end + 1):
            group, titled, block = block[0].rstrip("."), True, []
        elif titled and (block or not in_run):  # a short title's group ends at the next comment or gap
            group, titled = "", False
        trailing = " ".join(comments[r] for r in range(start, end + 1) if r in comments and r not in alone)
        own = " ".join(" ".join(block).split())
        shared = False
        if own:
            inherited, documented = own, name
            doc = own
        elif in_run and inherited and _related(name, documented, inherited):
            doc, shared = f"See `{documented}` above.", True  # no blank line, and it belongs: shared
        else:
            inherited = ""
            doc = ""
        doc = " ".join(x for x in (doc, trailing) if x) or _docstring_mentions(docstring, name)
        out[name] = _FieldDoc(doc, group, not shared)
        last_end = end
    return out


# -------------------------------------------------------------------------------------------------
# Types, defaults and bounds
# -------------------------------------------------------------------------------------------------


def _num(v: float) -> str:
    """A number as TOML writes it, with ``_`` between thousands from 100_000 on (readable, and valid TOML)."""
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1e15:
        return f"{v:.0e}"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 100_000:
        return f"{int(v):_}.0"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 100_000:
        return f"{v:_}"
    return repr(v)


def _type(t: mi.Type) -> tuple[str, str]:
    """(type, bounds) in words."""
    if isinstance(t, mi.UnionType):
        inner = [x for x in t.types if not isinstance(x, mi.NoneType)]
        name, bounds = _type(inner[0]) if len(inner) == 1 else (" or ".join(_type(x)[0] for x in inner), "")
        return f"{name} (optional)", bounds
    if isinstance(t, mi.IntType | mi.FloatType):
        name = "integer" if isinstance(t, mi.IntType) else "float"
        parts = [f"{op} {_num(v)}" for op, v in ((">", t.gt), ("≥", t.ge), ("<", t.lt), ("≤", t.le)) if v is not None]
        return name, ", ".join(parts)
    if isinstance(t, mi.StrType):
        parts = []
        if t.min_length:
            parts.append(f"at least {t.min_length} characters")
        if t.pattern:
            parts.append(f"matches `{t.pattern}`")
        return "string", ", ".join(parts)
    if isinstance(t, mi.BoolType):
        return "boolean", ""
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(f"`{_toml(v)}`" for v in t.values), ""
    if isinstance(t, mi.VarTupleType | mi.ListType):
        item, bounds = _type(t.item_type)
        return f"list of {item}", (f"each {bounds}" if bounds else "")
    if isinstance(t, mi.DictType):
        val, bounds = _type(t.value_type)
        return f"table of {_type(t.key_type)[0]} to {val}", (f"each {bounds}" if bounds else "")
    if isinstance(t, mi.StructType):
        return "table", ""
    return type(t).__name__.removesuffix("Type").lower(), ""


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, int | float):
        return _num(v)
    if isinstance(v, tuple | list):
        if v and isinstance(v[0], msgspec.Struct):
            return f"{len(v)} entries (see the source)"
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    return str(v)


def _default(f: mi.Field) -> str:
    if f.required:
        return "required"
    if f.default is not msgspec.NODEFAULT:
        return "unset" if f.default is None else _toml(f.default)
    if f.default_factory is not msgspec.NODEFAULT:
        return _toml(f.default_factory())
    return "required"


# -------------------------------------------------------------------------------------------------
# The walk
# -------------------------------------------------------------------------------------------------


def _struct_of(t: mi.Type) -> mi.StructType | None:
    if isinstance(t, mi.StructType):
        return t
    if isinstance(t, mi.VarTupleType | mi.ListType) and isinstance(t.item_type, mi.StructType):
        return t.item_type
    return None


def _walk(info: mi.StructType, path: str, prefix: str, intro: str, array: bool, out: list[Section]) -> None:
    cls = info.cls
    docs = _field_docs(cls)
    doc = inspect.cleandoc(cls.__doc__ or "") if cls.__doc__ and cls.__doc__ != msgspec.Struct.__doc__ else ""
    section = Section(path, "\n\n".join(x for x in (intro, doc) if x), array=array, prefix=prefix)
    out.append(section)
    nested: list[tuple[mi.Field, mi.StructType, bool]] = []
    for f in info.fields:
        if path == "" and f.name == "sim":  # dict[str, object] here; the simulator's own Struct below
            continue
        sub = _struct_of(f.type)
        if sub is not None:
            nested.append((f, sub, not isinstance(f.type, mi.StructType)))
            continue
        name, bounds = _type(f.type)
        fd = docs.get(f.name, _FieldDoc())
        section.keys.append(Key(f.name, name, _default(f), bounds, fd.doc, fd.group))
    for f, sub, is_array in nested:
        fd = docs.get(f.name, _FieldDoc())
        fd = fd if fd.own else _FieldDoc()
        extra = f"Default: {_default(f)}." if is_array and _default(f) not in ("[]", "required") else ""
        sub_path = f"{path}.{f.name}" if path else f.name
        sub_prefix = (f"{prefix}.{f.name}" if prefix else f.name) + ("[]" if is_array else "")
        _walk(sub, sub_path, sub_prefix, " ".join(x for x in (fd.doc, extra) if x), is_array, out)


def build() -> list[Section]:
    """Every section of the config, in the order of the Structs, then ``[sim]``."""
    from hip3.config import Config
    from hip3.sim.params import SimParams

    out: list[Section] = []
    root = mi.type_info(Config)
    assert isinstance(root, mi.StructType)
    _walk(root, "", "", "", False, out)
    sim = mi.type_info(SimParams)
    assert isinstance(sim, mi.StructType)
    _walk(sim, "sim", "sim", "The simulator's own settings (paper mode, tests, replays), validated by the simulator "
                      "(`hip3/sim/params.py`). They never reach a real exchange.", False, out)
    return out


def keys(sections: list[Section] | None = None) -> list[str]:
    """Every key as a dotted path (``[]`` for an element of an array of tables)."""
    return [f"{s.prefix}.{k.name}" if s.prefix else k.name for s in sections or build() for k in s.keys]


def render(sections: list[Section] | None = None) -> str:
    sections = sections or build()
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m hip3.config_reference --write` from the config classes; do not edit by "
        "hand (tests/test_config_reference.py fails when this file is not current). -->",
        "",
        "Every key of a hip3 config file (TOML), section by section: its type, its default, the values it "
        "accepts and what it does, taken from the config classes (`hip3/config.py` and the parameter classes it "
        "includes) and their comments. Every key is optional unless marked *required*. An unknown key, a wrong "
        "type or a value out of bounds stops the start with one line naming the key and the file. Rules over "
        "several keys (a heartbeat timeout above the interval, a restart limit that can trip, ...) are checked "
        "at load too: `hip3/config.py` (`_check`) and `hip3/config_safety.py`.",
        "",
        "Secrets never go in a config file: the signing key comes from the environment or a keystore "
        "(`hip3/runtime/secrets.py`), and a config holding a 64-hex-digit value is refused.",
        "",
        "Sections:",
        "",
    ]
    lines += [f"- [{_title(s)}](#{_anchor(s)})" for s in sections]
    for s in sections:
        lines += ["", f"## {_title(s)}", ""]
        if s.intro:
            lines += [s.intro, ""]
        group = ""
        for k in s.keys:
            if k.group and k.group != group:
                group = k.group
                lines += ([""] if lines[-1] else []) + [f"*{group}*", ""]
            allowed = f"; {k.bounds}" if k.bounds else ""
            lines.append(f"- **`{k.name}`**: {k.type}, default `{k.default}`{allowed}.".replace("`required`",
                                                                                              "*required*"))
            if k.doc:
                lines.append(f"  {k.doc}")
        if not s.keys:
            lines.append("(only the sub-tables below)")
    return "\n".join(lines).rstrip() + "\n"


def _title(s: Section) -> str:
    if not s.path:
        return "Top level"
    return f"[[{s.path}]]" if s.array else f"[{s.path}]"


def _anchor(s: Section) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", _title(s).lower()).replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hip3.config_reference", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {OUTPUT.relative_to(OUTPUT.parent.parent)}")
    mode.add_argument("--check", action="store_true", help="exit 1 if the checked-in reference is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        OUTPUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUTPUT} ({len(keys())} keys)")
        return 0
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is not current: run python -m hip3.config_reference --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

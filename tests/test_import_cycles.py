"""No import cycles between hip3's modules, the actors and the supervisor CLI.

The graph is read from the source with ``ast`` (nothing is imported): one node per module of ``hip3/``,
``actors/`` and ``supervisor.py``, one edge per import of another of those modules. Counted:

* module-level imports, including those under ``if TYPE_CHECKING:`` (a type-only import still ties the two
  modules together: the one cannot be read, type-checked or moved without the other);
* function-local imports too. An import placed inside a function runs when the function is first called,
  and the two modules still depend on each other; counting it keeps a cycle from being hidden in a
  function instead of being broken (a shared type moved down, a callable injected, a Protocol).

``from pkg import name`` is an edge to ``pkg`` and, when ``name`` is a submodule, to ``pkg.name``. Importing
``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``, so those are edges too, except the packages that
contain the importing module (Python has already started them before the module runs).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_files(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for base in ("hip3", "actors"):
        for path in sorted((root / base).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    out["supervisor"] = root / "supervisor.py"
    return out


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name ``path``'s imports mention, wherever they are (module level, ``TYPE_CHECKING``,
    functions), relative imports resolved."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                mod = ".".join([*pkg, mod] if mod else pkg)
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        own = name.split(".")
        running = {".".join(own[:i]) for i in range(1, len(own) + 1)}  # itself and its enclosing packages
        edges: set[str] = set()
        for dotted in imported_names(name, path):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in files and target not in running:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component of more than one
    module, or of one module that imports itself (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(iter(children), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1 or node in graph[node]:
                    components.append(sorted(comp))
    return [_a_cycle(graph, set(comp)) for comp in components]


def _a_cycle(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    first = min(comp)
    came: dict[str, str] = {}
    frontier = [first]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & comp):
                if child == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(came[path[-1]])
                    return [first, *reversed(path[:-1]), first]
                if child not in came:
                    came[child] = node
                    nxt.append(child)
        frontier = nxt
    return [first, first]


def test_no_import_cycles() -> None:
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_detector_names_a_cycle_and_its_kinds_of_import(tmp_path: Path) -> None:
    """The checker itself: a type-only import and a function-local one each close a cycle; an import of the
    package that contains the module does not."""
    (tmp_path / "hip3" / "pkg").mkdir(parents=True)
    (tmp_path / "actors").mkdir()
    (tmp_path / "supervisor.py").write_text("import hip3.a\n")
    (tmp_path / "hip3" / "__init__.py").write_text("")
    (tmp_path / "hip3" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hip3.b import B\n")
    (tmp_path / "hip3" / "b.py").write_text("def f():\n    from hip3 import a\n")
    (tmp_path / "hip3" / "pkg" / "__init__.py").write_text("from hip3.pkg.m import X\n")
    (tmp_path / "hip3" / "pkg" / "m.py").write_text("from . import n\nX = 1\n")
    (tmp_path / "hip3" / "pkg" / "n.py").write_text("from hip3.pkg import m\n")
    graph = import_graph(tmp_path)
    assert graph["hip3.a"] == {"hip3.b"} and graph["hip3.b"] == {"hip3.a"}
    assert graph["hip3.pkg.m"] == {"hip3.pkg.n"}  # ``from . import n``; its own package is not an edge
    assert cycles(graph) == [["hip3.a", "hip3.b", "hip3.a"], ["hip3.pkg.m", "hip3.pkg.n", "hip3.pkg.m"]]

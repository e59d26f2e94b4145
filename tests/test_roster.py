"""One actor roster (hip3/runtime/roster.py): the supervisor's start order and its flatten actors, the
runner's name -> class lookup, the forkserver's preload and the replay's graph all derive from it, and no
other module spells the actors out again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import zmq

from hip3.runtime import launchers, roster, runner
from hip3.runtime.actor import Actor
from hip3.runtime.logs import Log
from hip3.runtime.roster import ROSTER, ActorSpec, flatten_actors, preloaded_modules, start_order, target_of
from hip3.runtime.supervisor import Supervisor
from tests.conftest import BASE_TOML, make_config
from tests.supervisor_harness import FakeLauncher

ROOT = Path(__file__).resolve().parents[1]
NAMES = {s.name for s in ROSTER}


class ProbeActor(Actor):
    """An actor that exists only in this test's roster."""

    name = "probe"


PROBE = ActorSpec("probe", f"{__name__}:ProbeActor", observe=True, flatten=True, preload=True)


def test_the_roster_is_the_runtime_as_it_was() -> None:
    assert start_order("paper") == start_order("live") == (
        "feed", "position_tracker", "executor", "detector", "exit_watcher", "recorder")
    assert start_order("observe") == ("feed", "detector", "recorder")
    assert flatten_actors() == {"feed", "position_tracker", "executor"}
    assert launchers.preload_list() == [
        "hip3.runtime.runner", "hip3.messages", "hip3.runtime.bus", "actors.feed", "actors.position_tracker",
        "actors.executor", "actors.detector", "actors.exit_watcher"]
    for spec in ROSTER:
        assert runner.actor_class(spec.name).name == spec.name
    with pytest.raises(KeyError, match="unknown actor 'nope'; known: feed, position_tracker"):
        target_of("nope")


def _supervisor_slots(run_dir: Path, mode: str) -> list[str]:
    run_dir.mkdir()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    cfg = make_config(run_dir, '[bus]\ntransport = "inproc"\n', base=BASE_TOML.replace('"paper"', f'"{mode}"'))
    sup = Supervisor(cfg, FakeLauncher(), Log("supervisor"), context=ctx)  # type: ignore[arg-type]
    try:
        return list(sup.slots)
    finally:
        sup.close()
        ctx.term()


def test_an_actor_added_to_the_roster_is_picked_up_everywhere(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setattr(roster, "ROSTER", (*ROSTER, PROBE))
    assert runner.actor_class("probe") is ProbeActor
    assert start_order("paper")[-1] == start_order("observe")[-1] == "probe"
    assert "probe" in flatten_actors()
    assert launchers.preload_list()[-1] == __name__ == preloaded_modules()[-1]
    # The supervisor starts it by default and accepts it by name.
    assert _supervisor_slots(tmp_path / "a", "paper")[-1] == "probe"
    assert _supervisor_slots(tmp_path / "b", "observe") == ["feed", "detector", "recorder", "probe"]


def _actor_lists(path: Path) -> list[int]:
    """Lines of ``path`` with a literal tuple, list, set or dict naming three or more of the actors."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        items = node.keys if isinstance(node, ast.Dict) else (
            node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [])
        named = {i.value for i in items if isinstance(i, ast.Constant) and i.value in NAMES}
        if len(named) >= 3:
            found.append(node.lineno)
    return found


def test_no_other_module_lists_the_actors() -> None:
    sources = [*sorted((ROOT / "hip3").rglob("*.py")), *sorted((ROOT / "actors").rglob("*.py")),
               ROOT / "supervisor.py"]
    copies = {str(p.relative_to(ROOT)): lines for p in sources
              if p != ROOT / "hip3" / "runtime" / "roster.py" and (lines := _actor_lists(p))}
    assert copies == {}

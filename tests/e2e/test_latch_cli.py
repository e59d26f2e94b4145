"""The CLI on a hard-stop latch file it cannot read: a directory, garbage, no permission.

Before the fix ``start`` and ``status`` ended in a traceback on a directory (and on no permission), and
garbage was silently taken as latched at an invented epoch. Now ``status`` reports the latch as unknown
in one line, and ``start`` (detached or not), ``hardstop`` and ``reset-hardstop`` refuse in one line naming
the file and what to do; nothing starts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hip3.config import load_config
from hip3.runtime.hardstop import LATCH_FILE
from tests.e2e.helpers import cli
from tests.fs_faults import as_other_user

pytestmark = pytest.mark.slow


@pytest.fixture
def config(run_dir: Path) -> Iterator[Path]:
    path = run_dir / "hip3.toml"
    path.write_text(f'run_dir = "{run_dir}"\nmode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n'
                    "[logging]\nstderr = false\n")
    yield path
    cli(path, "stop", timeout=60)


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


BREAK: dict[str, tuple[Callable[[Path], None], str]] = {
    "directory": (lambda p: p.mkdir(), "it is a directory"),
    "garbage": (lambda p: p.write_bytes(b"\x00\x13garbage{"), "not a latch record"),
}


@pytest.mark.parametrize("case", list(BREAK))
def test_unreadable_latch_is_reported_by_status_and_refused_by_every_command(config: Path, run_dir: Path,
                                                                            case: str) -> None:
    breaker, why = BREAK[case]
    path = run_dir / LATCH_FILE
    breaker(path)
    r = cli(config, "status")
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r
    assert f"hard stop UNKNOWN: unreadable hard-stop latch {path}: {why}" in r.stdout, r.stdout
    st = json.loads(cli(config, "status", "--json").stdout)
    assert st["hard_stop"]["latched"] is None and why in st["hard_stop"]["unreadable"]
    for args in (("start", "--detach"), ("start",)):
        r = cli(config, *args, timeout=60)
        line = _one_line(r.stderr)
        assert r.returncode == 2 and line.startswith(f"error: unreadable hard-stop latch {path}: {why}"), r
        assert "does not start" in line
        assert not (run_dir / "supervisor.lock").exists() and not (run_dir / "sim").exists()
    for args, what in ((("hardstop", "--reason", "x"), "NOT latched"), (("reset-hardstop",), "NOT reset")):
        r = cli(config, *args)
        assert r.returncode == 2 and what in _one_line(r.stderr) and str(path) in r.stderr, r


def test_latch_without_read_permission_is_reported_by_status_for_that_user(config: Path, run_dir: Path) -> None:
    """Root reads any file: the status runs as another uid (a forked child; skipped unless root)."""
    from hip3.ops import commands as cli_mod

    assert cli(config, "hardstop", "--reason", "before").returncode == 0  # a real latch, root's, 0600
    os.chmod(run_dir, 0o755)
    cfg = load_config(str(config))

    def status_as_other_user() -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli_mod.cmd_status(cfg, False)
        return code, out.getvalue()

    code, text = as_other_user(status_as_other_user)
    assert code == 1 and "Traceback" not in text
    assert f"hard stop UNKNOWN: unreadable hard-stop latch {run_dir / LATCH_FILE}: Permission denied (EACCES)" in text

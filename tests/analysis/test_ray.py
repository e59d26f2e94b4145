"""``optimize --ray ADDRESS``: the same study on a Ray cluster as in local processes. The test starts a
one-node Ray cluster on 127.0.0.1 (its own process group, ended by that group's id) and runs the CLI
against it in a separate process, the recordings shipped through Ray's object store.

Loopback only: ``ray start`` swaps 127.0.0.1 for the machine's reachable address unless Ray believes it
cannot form a multi-node cluster (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's own switch for that), so
the head, its workers and the driver run with it: every Ray server then listens on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.config import REPO_ROOT, parse_config
from tests.analysis.test_optimize import SPACE, base_text, comparable, recordings, study  # noqa: F401

pytestmark = pytest.mark.timeout(300)

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = Path("/tmp") / f"h3ray{os.getpid()}"  # short: Ray's socket paths live under it
    out = tmp_path_factory.mktemp("ray") / "head.log"
    ray_bin = Path(sys.executable).parent / "ray"
    port = free_port()
    with open(out, "w") as log:
        head = subprocess.Popen(
            [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", "--object-store-memory=100000000",
             f"--temp-dir={tmp}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ, **LOOPBACK_ENV))
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in out.read_text() and time.monotonic() < deadline and head.poll() is None:
            time.sleep(0.5)
        text = out.read_text()
        assert "Ray runtime started" in text and "Local node IP: 127.0.0.1" in text, text[-3000:]
        yield f"127.0.0.1:{port}"
    finally:
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(head.pid, sig)  # the group this test started, by its id
            except ProcessLookupError:
                break
            try:
                head.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:
                time.sleep(2)  # let the group's children exit, then make sure
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def test_a_study_on_ray_equals_the_local_one(ray_address: str, recordings: list[str],  # noqa: F811
                                             tmp_path: Path) -> None:
    cfg_path = tmp_path / "base.toml"
    cfg_path.write_text(base_text(tmp_path / "run"))
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    proc = subprocess.run(
        [sys.executable, "supervisor.py", "optimize", *recordings, "--space", str(space), "--trials", "6",
         "--batch", "3", "--seed", "7", "--ray", ray_address, "--json", "--config", str(cfg_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=dict(os.environ, **LOOPBACK_ENV))
    assert proc.returncode == 0, proc.stderr[-3000:]
    on_ray = json.loads(proc.stdout.strip().splitlines()[-1])
    assert on_ray["backend"].startswith(f"Ray cluster at {ray_address}") and on_ray["workers"] == 2
    local = study(parse_config(base_text(tmp_path / "run")), recordings, 1)
    assert comparable(on_ray) == comparable(json.loads(json.dumps(local)))


def test_an_unreachable_ray_cluster_is_one_line(recordings: list[str], tmp_path: Path) -> None:  # noqa: F811
    cfg_path = tmp_path / "base.toml"
    cfg_path.write_text(base_text(tmp_path / "run"))
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    proc = subprocess.run(
        [sys.executable, "supervisor.py", "optimize", recordings[0], "--space", str(space), "--trials", "1",
         "--ray", "127.0.0.1:1", "--config", str(cfg_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, **LOOPBACK_ENV))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach the Ray cluster at '127.0.0.1:1'")

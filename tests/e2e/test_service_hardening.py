"""The unit's confinement leaves hip3 working: a paper session on a read-only system, its run directory alone
writable, a private /tmp, no capability and no new privileges.

systemd is not this machine's PID 1, so the test builds what ``ProtectSystem=strict``, ``StateDirectory=``,
``PrivateTmp=yes``, ``NoNewPrivileges=yes`` and an empty ``CapabilityBoundingSet=`` give the service, with
the tools systemd itself uses underneath: a private mount namespace (``unshare -m``) in which / is remounted
read-only, the run directory bound writable and a tmpfs mounted on /tmp, then ``setpriv`` drops every
capability and sets no-new-privs before ``exec``-ing the console script. The run directory is under
/var/tmp, as the unit's is under /var/lib (outside /tmp, which is private). Not emulated: another user (the
interpreter of this machine's venv lives in root's home); ``ProtectHome``, ``PrivateDevices`` and the
system-call filters.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hip3.config import DEFAULT_CONFIG, REPO_ROOT, parse_config
from tests.conftest import stop_process
from tests.faults.restart_loop import HIP3
from tests.faults.session import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.skipif(not HIP3.exists(), reason="no hip3 console script: pip install -e .")]

SCRIPT = """set -e
mount --bind {run} {run}
{keep_out}
mount -t tmpfs -o mode=1777 tmpfs /tmp
{keep_in}
mount -o remount,bind,ro /
if touch /usr/.hip3-write-probe 2>/dev/null; then rm -f /usr/.hip3-write-probe; exit 97; fi
exec setpriv --no-new-privs --inh-caps=-all --bounding-set=-all {hip3} start --log-format console --config {config}
"""


def _installed_under_tmp() -> list[Path]:
    """The top directories under /tmp that this installation lives in (the checkout, the venv).

    The unit's install is /opt/hip3, never under /tmp; but a checkout may be (CI clones into one), and the
    private /tmp would hide it. These are carried across the new /tmp, read-only as ``ProtectSystem=strict``
    leaves /opt."""
    tmp = Path("/tmp").resolve()
    keep = set()
    for p in (REPO_ROOT, Path(sys.prefix), HIP3.parent):
        p = p.resolve()
        if p.is_relative_to(tmp) and p != tmp:
            keep.add(tmp / p.relative_to(tmp).parts[0])
    return sorted(keep)


def _keep_lines(run: Path) -> tuple[str, str]:
    """The script's lines that carry ``_installed_under_tmp`` across: each bound aside (under the run
    directory, before /tmp is replaced), then bound back into the new /tmp and made read-only."""
    out, back = [], []
    for i, d in enumerate(_installed_under_tmp()):
        aside = run / ".install" / str(i)
        aside.mkdir(parents=True)
        out.append(f"mount --bind {d} {aside}")
        back.append(f"mkdir -p {d} && mount --bind {aside} {d} && mount -o remount,bind,ro {d}")
    return "\n".join(out), "\n".join(back)


def _can_confine() -> str:
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return "unshare or setpriv is not installed"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        "mount -t tmpfs tmpfs /mnt && mount -o remount,bind,ro / && ! touch /usr/.hip3-probe"],
                       capture_output=True, text=True, timeout=30)
    return "" if r.returncode == 0 else f"no private mount namespace here: {r.stderr.strip()[:200]}"


@pytest.fixture
def run_dir_outside_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="h3s", dir="/var/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_paper_session_runs_confined_as_the_unit_confines_it(run_dir_outside_tmp: Path) -> None:
    why = _can_confine()
    if why:
        pytest.skip(why)
    from hip3.ops import ctl as cli

    run = run_dir_outside_tmp
    config = run / "hip3.toml"
    config.write_text(DEFAULT_CONFIG.read_text().replace('run_dir = "run"', f'run_dir = "{run}"', 1))
    cfg = parse_config(config.read_text(), str(config))
    keep_out, keep_in = _keep_lines(run)
    out = open(run / "service.out", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                             SCRIPT.format(run=run, hip3=HIP3, config=config, keep_out=keep_out, keep_in=keep_in)],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            try:
                st = cli.request(cfg, {"cmd": "status"}, timeout_ms=1000)
            except cli.CliError:
                return False
            return bool(st["actors"]) and all(a["ready"] for a in st["actors"])

        assert wait_until(ready, 90, 0.5), (proc.poll(), (run / "service.out").read_text()[-2000:])
        # It trades: orders reach the simulator, fills come back, the journal and the logs are written.
        assert wait_until(lambda: cli.request(cfg, {"cmd": "status"})["trading"]["entries"] >= 1, 60, 0.5)
        r = subprocess.run([str(HIP3), "stop", "--config", str(config)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert proc.wait(30) == 0, (run / "service.out").read_text()[-2000:]
    finally:
        stop_process(proc, 10)
        out.close()
    assert (run / "journal.sqlite").exists() and (run / "logs" / "executor.log").stat().st_size > 0
    assert (run / "sim" / "orders.jsonl").stat().st_size > 0

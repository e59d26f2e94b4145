"""deploy/: the systemd unit, the credential drop-in, the Dockerfile and the compose file, checked by parsing.

Docker cannot run here and systemd is not PID 1, so the files are read as their tools read them: the unit as
an INI-like file (and by ``systemd-analyze verify`` where it is installed), the compose file with PyYAML,
the Dockerfile instruction by instruction. What they say is checked against hip3 itself: the config the
image ships loads, the ports and paths agree across files, the exit status the unit does not restart on is
the one hip3 refuses with.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hip3.config import REPO_ROOT, SupervisorConfig, load_config
from hip3.runtime.paper import PaperExchange
from hip3.runtime.secrets import ENV_KEY_FILE
from tests.faults.restart_loop import seconds

DEPLOY = REPO_ROOT / "deploy"
HIP3 = Path(sys.executable).with_name("hip3")


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat), as systemd reads a unit: comments and blanks skipped."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        assert section is not None and "=" in line, f"{path.name}: {raw!r}"
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def one(u: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = u[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def test_the_unit_runs_hip3_under_a_watchdog_restarts_it_and_confines_it() -> None:
    u = unit(DEPLOY / "hip3.service")
    assert set(u) == {"Unit", "Service", "Install"}
    assert one(u, "Unit", "StartLimitIntervalSec") == "0"  # never give up: positions would stay unwatched
    assert "network-online.target" in one(u, "Unit", "After")
    s = "Service"
    assert one(u, s, "Type") == "notify" and one(u, s, "NotifyAccess") == "main"
    exec_start = one(u, s, "ExecStart").split()
    assert Path(exec_start[0]).name == "hip3" and exec_start[1:] == ["start", "--log-format", "console"]
    assert one(u, s, "Restart") == "on-failure" and "2" in one(u, s, "RestartPreventExitStatus").split()
    assert 0 < seconds(one(u, s, "RestartSec")) <= 5
    # The watchdog outlasts the loop's longest legitimate block (a paper simulator's restart waits for it).
    sim_start_s = inspect.signature(PaperExchange.start).parameters["timeout_s"].default
    assert seconds(one(u, s, "WatchdogSec")) > sim_start_s
    stop_s = SupervisorConfig().stop_timeout_ms / 1000
    assert seconds(one(u, s, "TimeoutStopSec")) >= stop_s + 10
    assert one(u, s, "KillMode") == "mixed"
    # Not root; the run directory (relative default "run") lands in the one writable place, 0700.
    assert one(u, s, "User") not in ("root", "0") and one(u, s, "Group") not in ("root", "0")
    assert one(u, s, "StateDirectory") == "hip3" and one(u, s, "WorkingDirectory") == "/var/lib/hip3"
    assert one(u, s, "StateDirectoryMode") == "0700" and one(u, s, "UMask") == "0077"
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("RestrictSUIDSGID", "yes")):
        assert one(u, s, key) == value, key
    assert one(u, s, "CapabilityBoundingSet") == ""
    assert set(one(u, s, "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert one(u, s, "EnvironmentFile").startswith("-/etc/hip3/")  # optional: paper mode needs none
    envs = dict(v.split("=", 1) for line in u[s]["Environment"] for v in line.split())
    assert envs["HIP3_CONFIG"].startswith("/etc/hip3/")
    assert one(u, "Install", "WantedBy") == "multi-user.target"


def test_the_credential_drop_in_hands_the_key_file_to_hip3() -> None:
    u = unit(DEPLOY / "hip3-credential.conf")
    cred_id, _, source = one(u, "Service", "LoadCredential").partition(":")
    assert source.startswith("/etc/hip3/")
    env = one(u, "Service", "Environment")
    assert env == f"{ENV_KEY_FILE}=%d/{cred_id}"  # %d: $CREDENTIALS_DIRECTORY; the variable hip3.runtime.secrets reads


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit_and_its_drop_in(tmp_path: Path) -> None:
    if not HIP3.exists():
        pytest.skip("no hip3 console script: pip install -e .")
    # ExecStart must exist for verify: point it at this venv's console script; the rest as shipped.
    text = (DEPLOY / "hip3.service").read_text()
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={HIP3}", text, count=1, flags=re.M)
    (tmp_path / "hip3.service").write_text(text)
    (tmp_path / "hip3.service.d").mkdir()
    shutil.copy(DEPLOY / "hip3-credential.conf", tmp_path / "hip3.service.d" / "credential.conf")
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "hip3.service")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and (r.stdout + r.stderr).strip() == "", r.stdout + r.stderr
    # It does read both files: an unknown key in the drop-in is reported.
    with open(tmp_path / "hip3.service.d" / "credential.conf", "a") as f:
        f.write("NoSuchSetting=1\n")
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "hip3.service")], capture_output=True,
                       text=True, timeout=60)
    assert "NoSuchSetting" in r.stdout + r.stderr


def test_hip3_refuses_with_the_exit_status_the_unit_does_not_restart_on(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('mode = "paper"\n[supervisor]\nheartbeat_timeout_ms = "soon"\n')
    r = subprocess.run([sys.executable, str(REPO_ROOT / "supervisor.py"), "start", "--config", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: config error"), (r.returncode, r.stderr)
    assert "2" in one(unit(DEPLOY / "hip3.service"), "Service", "RestartPreventExitStatus").split()


# -------------------------------------------------------------------------------------------------
# The container
# -------------------------------------------------------------------------------------------------


def dockerfile(path: Path) -> list[list[tuple[str, str]]]:
    """Stages, each a list of (INSTRUCTION, arguments): continuations joined, comments skipped."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        logical += (" " if logical else "") + line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        instr, _, args = logical.partition(" ")
        if instr.upper() == "FROM":
            stages.append([])
        stages[-1].append((instr.upper(), args.strip()))
        logical = ""
    assert not logical, "a continuation runs off the end"
    return stages


def _args(stage: list[tuple[str, str]], instr: str) -> list[str]:
    return [a for i, a in stage if i == instr]


def _container_config() -> Any:
    return load_config(str(DEPLOY / "hip3.docker.toml"))


def test_the_dockerfile_builds_hip3_runs_it_unprivileged_and_probes_it() -> None:
    stages = dockerfile(DEPLOY / "Dockerfile")
    assert len(stages) == 2
    for st in stages:
        image = _args(st, "FROM")[0].split()[0]
        assert ":" in image and not image.endswith(":latest"), image
        assert re.match(r"python:3\.11", image), image  # the version the project is tested on
    final = stages[-1]
    user = _args(final, "USER")[-1]
    assert user not in ("root", "0") and any(user in a for a in _args(final, "RUN"))  # created in the image
    assert json.loads(_args(final, "ENTRYPOINT")[-1]) == ["hip3"]  # the console script, exec form (signals)
    assert json.loads(_args(final, "CMD")[-1]) == ["start", "--log-format", "console"]
    assert _args(final, "STOPSIGNAL") == ["SIGTERM"]
    cfg = _container_config()
    health = _args(final, "HEALTHCHECK")[-1]
    assert f"127.0.0.1:{cfg.metrics.port}/healthz" in health
    assert _args(final, "EXPOSE") == [str(cfg.metrics.port)]
    assert json.loads(_args(final, "VOLUME")[-1]) == [cfg.run_dir]
    env = " ".join(_args(final, "ENV"))
    copied = [a.split() for a in _args(final, "COPY") if not a.startswith("--from")]
    assert ["deploy/hip3.docker.toml", "/etc/hip3/hip3.toml"] in copied
    assert "HIP3_CONFIG=/etc/hip3/hip3.toml" in env
    # Every source the build copies exists in the build context (the repository's root) and is not ignored.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for st in stages:
        for a in _args(st, "COPY"):
            if a.startswith("--from"):
                continue
            *sources, _dest = a.split()
            for src in sources:
                assert (REPO_ROOT / src).exists(), src
                assert src.rstrip("/") in kept, f"{src} is excluded by Dockerfile.dockerignore"


def test_the_container_config_is_paper_mode_with_the_endpoint_for_prometheus() -> None:
    cfg = _container_config()
    assert cfg.mode == "paper" and cfg.exchange.network == "sim"  # never real money by default
    assert cfg.metrics.enabled and cfg.metrics.host == "0.0.0.0"
    assert not cfg.dashboard.enabled  # off loopback it would need a token
    assert cfg.run_dir.startswith("/var/lib/hip3/")


def test_compose_runs_hip3_restarts_it_and_adds_monitoring_under_a_profile() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    hip3 = services["hip3"]
    assert "profiles" not in hip3
    assert (DEPLOY / hip3["build"]["context"] / hip3["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert hip3["restart"] == "on-failure"  # like the unit: a clean stop stays stopped
    assert hip3["init"] is True
    stop_s = SupervisorConfig().stop_timeout_ms / 1000
    assert seconds(hip3["stop_grace_period"]) >= stop_s + 10
    cfg = _container_config()
    assert hip3["environment"]["HIP3_CONFIG"] == "/etc/hip3/hip3.toml"
    volumes = {v.split(":")[1]: v.split(":")[0] for v in hip3["volumes"]}
    assert volumes[cfg.run_dir] in doc["volumes"]  # a named volume: the latch and the ledger survive
    assert hip3["ports"] == [f"127.0.0.1:{cfg.metrics.port}:{cfg.metrics.port}"]
    assert "ALL" in hip3["cap_drop"] and "no-new-privileges:true" in hip3["security_opt"]
    assert hip3["logging"]["options"]["mode"] == "non-blocking"
    for name in ("prometheus", "grafana"):
        svc = services[name]
        assert svc["profiles"] == ["monitoring"], name
        image = svc["image"]
        assert re.search(r":v?\d+\.\d+\.\d+$", image), image  # pinned
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)  # loopback on the host
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), (name, src)
    # Prometheus scrapes hip3 by its service name and port; Grafana reads Prometheus by its own.
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"hip3:{cfg.metrics.port}"]
    assert prom["scrape_configs"][0]["metrics_path"] == "/metrics"
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    boards = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/hip3.yaml").read_text())
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert boards["providers"][0]["options"]["path"] in mounted
    dash = json.loads((DEPLOY / "grafana/dashboards/hip3.json").read_text())
    uid = ds["datasources"][0]["uid"]
    assert dash["panels"] and all(p["datasource"]["uid"] == uid for p in dash["panels"])


def test_the_hip3_console_script_is_the_supervisor_cli(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "hip3"]
    import supervisor

    assert ep.value == "supervisor:main" and ep.load() is supervisor.main
    if not HIP3.exists():
        pytest.skip("no hip3 console script: pip install -e .")
    r = subprocess.run([str(HIP3), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("usage: hip3 ")
    assert all(c in r.stdout for c in ("start", "status", "stop", "hardstop", "reset-hardstop", "report"))
    config = tmp_path / "c.toml"
    config.write_text(f'run_dir = "{tmp_path / "run"}"\nmode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n')
    r = subprocess.run([str(HIP3), "status", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "NOT RUNNING" in r.stdout  # the same command, the same answer

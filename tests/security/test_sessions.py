"""Security of whole sessions that end in errors, with real processes.

* Live-like: ``supervisor.py start --live`` (mode live, network testnet) pointed at the simulator on
  127.0.0.1, with a real key from ``HIP3_PRIVATE_KEY`` or from an eth-account keystore with its
  password (ipc bus: a live config with a tcp bus is refused, the bus is not authenticated). The key is
  loaded by the supervisor, handed to the executor, and signs actions that the simulator verifies (its
  order log records the recovered signer). The session then goes wrong:
  rejected orders, a hard stop, the executor killed (-9) and restarted with the key, the executor raising at
  start (corrupt nonce state) until the restart limit latches. Afterwards every file of the run directory,
  the simulator's files, the CLI's stdout/stderr and every status output are scanned for the key (hex with
  and without 0x, any case, raw bytes, base64) and the password: nothing may contain them.
* While it runs: no actor's environment or command line holds the secret; every listening socket of the
  session's processes is on loopback; the run directory is 0700 and every file and socket in it 0600.
* Paper: a decoy key in the environment is never used (the supervisor makes a throwaway key), and every file
  the paper session creates (simulator files included) is private too.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from hip3.config import REPO_ROOT

from .helpers import (
    Session,
    SimProcess,
    cli,
    descendants,
    listening_sockets,
    loose_permissions,
    proc_blob,
    scan_bytes,
    scan_tree,
    secret_needles,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA", "xyz:NVDA")
LOOPBACK = {"127.0.0.1", "::1"}
SIM_MODEL = "[sim.model]\noracle_interval_ms = 300\nmaker_lag_ms = 1500\njump_prob = 0.3\n"


def _free_base_port() -> int:
    for _ in range(50):
        base = random.randrange(20000, 60000)
        socks = []
        try:
            for off in range(9):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + off))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


def _live_config(run_dir: Path, sim: SimProcess, account: str, transport: str) -> Path:
    bus = f'transport = "{transport}"\n' + (f"tcp_base_port = {_free_base_port()}\n" if transport == "tcp" else "")
    text = (f'run_dir = "{run_dir}"\nmode = "live"\n'
            f'[exchange]\nnetwork = "testnet"\nrest_url = "{sim.url}"\nws_url = "ws://127.0.0.1:{sim.port}/ws"\n'
            f'account_address = "{account}"\n[bus]\n{bus}[logging]\nstderr = true\n'
            "[supervisor]\nheartbeat_interval_ms = 100\nmax_restarts = 2\nrestart_backoff_initial_ms = 20\n"
            "[executor]\nmax_notional_per_market_usd = 200.0\nmax_total_notional_usd = 1000.0\n"
            "[positions]\nresync_interval_s = 1.0\n"
            + "".join(f'[[markets]]\ncoin = "{m}"\n' for m in MARKETS))
    path = run_dir.parent / f"{run_dir.name}.toml"
    path.write_text(text)
    return path


def _env(**secrets_env: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIP3_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(secrets_env)
    return env


@pytest.fixture
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # short: ipc socket paths are limited to ~100 bytes
    d = Path(os.path.realpath(tmp_path_factory.mktemp("sec", numbered=True)))
    yield d


def _signed_by(sim: SimProcess, address: str) -> list[dict[str, Any]]:
    return [e for e in sim.orders() if e.get("signer") == address]


def _actor(st: dict[str, Any], name: str) -> dict[str, Any]:
    a: dict[str, Any] = next(x for x in st["actors"] if x["name"] == name)
    return a


def _check_processes(s: Session, extra_pids: list[int], needles: dict[str, bytes], expect_tcp: bool) -> dict[str, Any]:
    """While the session runs: environments, command lines, listening sockets."""
    pids = s.pids()
    sup = s.proc.pid
    leaks = []
    for pid in pids:
        for what in ("cmdline", "environ"):
            if what == "environ" and pid == sup:
                continue  # the supervisor was started with the secret; it scrubs os.environ, not /proc (noted)
            found = scan_bytes(proc_blob(pid, what), needles)
            if found:
                leaks.append((pid, what, found, proc_blob(pid, "cmdline")[:80]))
    assert not leaks, leaks
    listeners = listening_sockets(pids + extra_pids)
    assert all(addr in LOOPBACK for _, addr, _ in listeners), listeners
    if expect_tcp:
        assert len([x for x in listeners if x[0] in pids]) >= 9, listeners  # the bus endpoints: really checked
    # Recorded, not asserted (a known limit, see the notes): the supervisor's initial environment block.
    sup_env = bool(scan_bytes(proc_blob(sup, "environ"), needles))
    return {"pids": len(pids), "listeners": listeners, "supervisor_proc_environ_has_secret": sup_env}


def _jumps(sim: SimProcess, n: int = 3) -> None:
    for _ in range(n):
        for coin in MARKETS:
            sim.control(cmd="jump", coin=coin, bps=90)
        time.sleep(0.35)


def _wait(pred: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def _break_nonce_state(path: Path) -> None:
    for _ in range(100):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        try:
            os.mkdir(path, 0o700)
            return
        except FileExistsError:  # the executor persisted a new ceiling in between: again
            continue
    raise AssertionError("could not replace the nonce state")


FIGURES: dict[str, Any] = {}


def _record(name: str, **figures: Any) -> None:
    FIGURES[name] = figures
    out = os.environ.get("HIP3_SECURITY_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"session": name, **figures}) + "\n")


def _run_live_session(base: Path, *, key: str, env: dict[str, str], transport: str, needles: dict[str, bytes],
                      name: str) -> None:
    account = Account.from_key(key).address.lower()
    sim_toml = base / "sim.toml"
    sim_toml.write_text(SIM_MODEL)
    sim = SimProcess(base / "sim", account, sim_toml)
    run_dir = base / "run"
    cfg = _live_config(run_dir, sim, account, transport)
    s: Session | None = None
    try:
        # (d) no opt-in, no start: a clear message and nothing started or signed
        r = cli(cfg, env, "start")
        assert r.returncode == 2 and "--live" in r.stderr and "real money" in r.stderr, r
        assert not scan_bytes((r.stdout + r.stderr).encode(), needles)
        assert not (run_dir / "supervisor.lock").exists() and not _signed_by(sim, account)

        s = Session(cfg, env, base / "out", live=True)
        s.wait_ready(120)
        running = _check_processes(s, [sim.proc.pid], needles, expect_tcp=transport == "tcp")
        if transport == "ipc":
            assert not loose_permissions(run_dir), loose_permissions(run_dir)
            assert any(p.is_socket() for p in (run_dir / "sock").iterdir())

        # The key signs: the simulator recovers our address from the executor's signatures.
        assert _wait(lambda: bool(_signed_by(sim, account)), 30), sim.orders()[-5:]
        _jumps(sim)
        _wait(lambda: any(e["action_type"] == "order" for e in _signed_by(sim, account)), 20)

        # Errors: rejected orders, a hard stop, the executor killed and restarted (the key handed over again).
        sim.control(cmd="faults", reject_posts=True, reject_text="simulated: order rejected")
        _jumps(sim, 2)
        time.sleep(1.0)
        sim.control(cmd="faults", reject_posts=False)
        assert s.cli("hardstop", "--reason", "security test").returncode == 0
        st = s.status()
        old = _actor(st, "executor")["pid"]
        t_kill_ms = int(time.time() * 1000)
        os.kill(old, signal.SIGKILL)
        assert _wait(lambda: _actor(s.status(), "executor")["ready"] and _actor(s.status(), "executor")["pid"] != old,
                     60), s.status()
        assert _wait(lambda: any(e["time_ms"] >= t_kill_ms for e in _signed_by(sim, account)), 30), \
            "the restarted executor never signed"
        _check_processes(s, [sim.proc.pid], needles, expect_tcp=transport == "tcp")

        # The executor refuses to start (unreadable nonce state: a directory where the file was), in one line
        # and without a traceback, until the restart limit latches the stop. (A corrupt file would be replaced
        # by the running executor's next write.)
        _break_nonce_state(run_dir / "nonce")
        os.kill(_actor(s.status(), "executor")["pid"], signal.SIGKILL)
        assert _wait(lambda: "actor_restart_limit" in (run_dir / "logs" / "supervisor.log").read_text()
                     and s.stderr.read_text().count('"start_refused"') >= 2, 60), s.status()
        st = s.status()
        assert st["hard_stop"]["latched"]
        s.cli("status")
        code = s.stop()
        assert code == 0, s.stderr.read_text()[-2000:]
        signed = _signed_by(sim, account)
        stderr = s.stderr.read_text()
        assert "hip3 session ended" in stderr  # the summary went to the captured stderr
        assert "cannot read nonce state" in stderr, stderr[-3000:]  # it really refused, and said why
        assert "ExecutorStartError" not in stderr, stderr[-3000:]  # in one line, not a traceback

        # The scan: run directory, simulator files, captured CLI output, every status output.
        (base / "out" / "cli.txt").write_text("\n".join(s.cli_outputs))
        n_files, hits = scan_tree([run_dir, base / "sim", base / "out"], needles)
        assert n_files >= 10 and hits == [], hits
        # The same scan does find a copy planted in that tree (in the case the CLI was given it).
        planted = run_dir / "logs" / "planted.log"
        planted.write_text('{"event":"oops","k":"' + env.get("HIP3_PRIVATE_KEY", key[2:].upper()) + '"}\n')
        assert scan_tree([run_dir], needles)[1] == [(str(planted), "key-hex")]
        planted.unlink()
        assert not loose_permissions(run_dir), loose_permissions(run_dir)
        _record(name, files_scanned=n_files, secrets_found=len(hits), needles=sorted(needles),
                signed_actions=len(signed), orders=sum(len(e["cloids"]) for e in signed),
                rejected_by_fault=sum(1 for e in sim.orders() if e.get("status") == "fault"),
                listeners=sorted({f"{a}:{p}" for _, a, p in running["listeners"]}),
                pids_checked=running["pids"], executor_restarts=_actor(st, "executor")["restarts"],
                supervisor_proc_environ_has_secret=running["supervisor_proc_environ_has_secret"])
    finally:
        if s is not None:
            s.stop(30)
            s.kill_all()
        sim.stop()


def test_live_session_with_env_key_ends_in_errors_and_leaks_nothing(base: Path) -> None:
    key = "0x" + secrets.token_hex(32)
    # given upper-case without 0x: the scan must still find any copy (it looks for every form)
    env = _env(HIP3_PRIVATE_KEY=key[2:].upper())
    _run_live_session(base, key=key, env=env, transport="ipc", needles=secret_needles(key), name="live-env-key-ipc")


def test_live_session_with_keystore_ends_in_errors_and_leaks_nothing(base: Path) -> None:
    key = "0x" + secrets.token_hex(32)
    password = "pw-" + secrets.token_urlsafe(18)
    ks = base / "keystore.json"
    ks.write_text(json.dumps(Account.encrypt(bytes.fromhex(key[2:]), password, iterations=2)))
    env = _env(HIP3_KEYSTORE=str(ks), HIP3_KEYSTORE_PASSWORD=password)
    _run_live_session(base, key=key, env=env, transport="ipc", needles=secret_needles(key, password),
                      name="live-keystore-ipc")


def test_paper_session_never_uses_the_environment_key_and_keeps_files_private(base: Path) -> None:
    decoy = "0x" + secrets.token_hex(32)
    decoy_account = Account.from_key(decoy).address.lower()
    run_dir = base / "run"
    default = (REPO_ROOT / "configs" / "default.toml").read_text()
    cfg = base / "paper.toml"
    cfg.write_text(default.replace('run_dir = "run"', f'run_dir = "{run_dir}"')
                   + "\n[logging]\nstderr = true\n[supervisor]\nheartbeat_interval_ms = 100\n")
    env = _env(HIP3_PRIVATE_KEY=decoy)
    s = Session(cfg, env, base / "out", live=False)
    try:
        st = s.wait_ready(120)
        sim_pid = st["exchange"]["pid"]
        running = _check_processes(s, [], secret_needles(decoy), expect_tcp=False)
        assert any(pid == sim_pid for pid, _, _ in running["listeners"])  # the simulator's port: checked too
        assert not loose_permissions(run_dir), loose_permissions(run_dir)
        assert _wait(lambda: (run_dir / "sim" / "orders.jsonl").exists()
                     and (run_dir / "sim" / "orders.jsonl").stat().st_size > 0, 30)
        # Malformed frames end to end (real processes): the simulator sends 25 to every WebSocket (the feed's
        # and the executor's order-entry connection); the feed counts exactly 25, logs them, keeps running.
        before = {a["name"]: a["pid"] for a in s.status()["actors"]}
        req = urllib.request.Request(st["exchange"]["url"] + "/sim/control", method="POST",
                                     data=json.dumps({"cmd": "malformed", "count": 25}).encode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["connections"] >= 2
        assert _wait(lambda: _actor(s.status(), "feed")["stats"].get("bad_frames", 0) >= 25, 10), s.status()
        time.sleep(1.2)
        st2 = s.status()
        assert _actor(st2, "feed")["stats"]["bad_frames"] == 25
        assert {a["name"]: a["pid"] for a in st2["actors"]} == before and all(a["ready"] for a in st2["actors"])

        def logged_25() -> bool:  # the summary line is rate-limited (10 s) if the burst straddled a tick
            lines = [json.loads(x) for x in (run_dir / "logs" / "feed.log").read_text().splitlines()]
            return any(e["event"] == "bad_frames" and e["bad"] == 25 for e in lines)

        assert _wait(logged_25, 15)
        os.kill(_actor(s.status(), "feed")["pid"], signal.SIGKILL)  # an error: a crashed actor
        assert s.cli("hardstop", "--reason", "paper security test").returncode == 0
        time.sleep(1.0)
        assert s.stop() == 0
        log = [json.loads(x) for x in (run_dir / "sim" / "orders.jsonl").read_text().splitlines()]
        signers = {e.get("signer") for e in log} - {None}
        assert signers and decoy_account not in signers  # a throwaway key signed, never the environment's
        (base / "out" / "cli.txt").write_text("\n".join(s.cli_outputs))
        n_files, hits = scan_tree([run_dir, base / "out"], secret_needles(decoy))
        assert hits == [] and n_files >= 8
        loose = loose_permissions(run_dir)
        assert not loose, loose
        _record("paper-decoy-env-key", files_scanned=n_files, secrets_found=len(hits), signers=len(signers),
                listeners=sorted({f"{a}:{p}" for _, a, p in running["listeners"]}))
    finally:
        s.stop(30)
        s.kill_all()
    assert not [p for p in descendants(os.getpid()) if p == s.proc.pid]

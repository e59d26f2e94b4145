"""A paper session under fault injection: start it, hurt it, and check what must still hold.

Shared by ``tests/faults/`` and ``python -m bench.soak``. A ``Session`` drives ``supervisor.py`` with real
processes over ``ipc://`` against the bundled simulator (paper mode), with short timeouts so that a
failure is noticed in a test's time. It talks to the supervisor over its ``ctl`` socket (``status``), to
the simulator over HTTP (``/info``, ``POST /sim/control``) and reads the run directory's files: the
simulator's order log, the actors' JSON logs and the executor's sent-intent journal.

The invariants (each returns the problems it found, empty = holds):

* ``doubled_cloids``: a client order id the exchange accepted twice (an intent sent twice);
* ``lost_orders``: an order the executor journaled as sent that never reached the exchange;
* ``book_mismatch``: hip3's positions (the tracker's snapshot, via status) differ from the simulator's
  clearinghouseState (a lost or double-counted fill, or a resync that failed);
* ``orders_while_not_ready``: a new (not reduce-only) order signed while the executor was not READY
  (its nonce is its signing time in ms, compared with the READY transitions of the executor's log,
  same clock), or an entry intent the detector created while its entries were blocked (the order of the
  detector's own log lines: no timing involved), traced to the order through the executor's journal;
* ``leftover_processes``: any process whose environment names this run directory (actors, forkserver,
  simulator, supervisor) still alive after a stop or a supervisor kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hip3.config import REPO_ROOT, Config, parse_config

SUPERVISOR = str(REPO_ROOT / "supervisor.py")
ACTORS = ("feed", "position_tracker", "executor", "detector", "exit_watcher")
MARKETS = ("xyz:GOLD", "xyz:SILVER", "xyz:TSLA", "xyz:NVDA", "xyz:AAPL", "xyz:MSFT")

# Short timeouts everywhere, so a fault is noticed within a test's time; a lively simulated market, so
# entries and exits happen every few seconds; caps that let several positions be open at once.
FAULT_TOML = """
mode = "paper"
[exchange]
network = "sim"
request_timeout_ms = 3000
[supervisor]
heartbeat_interval_ms = 100
heartbeat_timeout_ms = 3000
ready_timeout_ms = 20000
restart_backoff_initial_ms = 50
# 100 restarts at most 500 ms apart fit in the 60 s period (a restart limit that can never trip is
# refused at load).
restart_backoff_max_ms = 500
max_restarts = {max_restarts}
restart_period_s = 60.0
hardstop_rebroadcast_ms = 300
stop_timeout_ms = 5000
[feed]
ping_after_idle_ms = 1000
pong_timeout_ms = 1000
stall_timeout_ms = 1500
reconnect_base_ms = 100
reconnect_max_ms = 1000
[positions]
resync_interval_s = {resync_s}
snapshot_interval_ms = 200
{manual_positions}[executor]
post_timeout_ms = 3000
expires_after_ms = 3000
max_concurrent_positions = 6
max_notional_per_market_usd = 60.0
max_total_notional_usd = 400.0
# The injected rate-limit fault answers "Too many cumulative requests sent (10001 > 10000)", which is not
# the simulator's own count: the executor believes it (entries stop) until the next read of the budget.
request_budget_poll_ms = 2000
[risk]
# The loss and rejection triggers are tested on their own (tests/execution); here a random walk's losing
# streak or an injected rejection burst must not latch the stop and hide what the faults do.
max_consecutive_failures = 1000
max_loss_usd = 100000.0
daily_loss_cap_usd = 100000.0
max_rejections_per_bucket = 100000
[exits.time_stop]
threshold_ms = 6000
check_interval_ms = 250
[logging]
stderr = false
[sim.model]
oracle_interval_ms = 500
maker_lag_ms = 1500
jump_prob = 0.15
"""


def config_text(run_dir: Path, *, markets: tuple[str, ...] = MARKETS, max_restarts: int = 100,
                resync_s: float = 30.0, extra: str = "", exchange: tuple[str, str] | None = None,
                manual_positions: str | None = None) -> str:
    """The session's config; ``exchange`` = (simulator URL, account) for a simulator the test runs;
    ``manual_positions`` = the ``[positions]`` key (absent: the default)."""
    body = FAULT_TOML.format(max_restarts=max_restarts, resync_s=resync_s, manual_positions="" if manual_positions
                             is None else f'manual_positions = "{manual_positions}"\n')
    if exchange is not None:
        body = body.replace('network = "sim"\n', f'network = "sim"\nrest_url = "{exchange[0]}"\n'
                            f'account_address = "{exchange[1]}"\n', 1)
    text = f'run_dir = "{run_dir}"\n' + body + "".join(f'[[markets]]\ncoin = "{m}"\n' for m in markets)
    return text + extra


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a torn last line is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


class Session:
    """One supervised paper session in ``run_dir``. ``close()`` always leaves no process behind."""

    def __init__(self, run_dir: Path, **config: Any) -> None:
        self.run_dir = run_dir.resolve()
        self.config_path = self.run_dir / "faults.toml"
        self.config_path.write_text(config_text(self.run_dir, **config))
        self.cfg: Config = parse_config(self.config_path.read_text(), str(self.config_path))
        self._exchange: dict[str, Any] | None = None
        self.seen_pids: set[int] = set()

    # ---- lifecycle ----------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.pop("HIP3_RUN_DIR", None)
        return subprocess.run([sys.executable, SUPERVISOR, *args, "--config", str(self.config_path)],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def start(self) -> None:
        r = self.cli("start", "--detach")
        if r.returncode != 0:
            raise RuntimeError(f"start failed ({r.returncode}): {r.stderr.strip()} {r.stdout.strip()}")
        st = self.status()
        self._exchange = st["exchange"]
        self.seen_pids.update(self.pids().values())

    def start_external(self, sim_url: str, account: str, key_hex: str, timeout: float = 60) -> None:
        """Start ``tests.faults.external_supervisor`` (no paper simulator of its own) and wait for READY."""
        env = dict(os.environ, HIP3_RUN_DIR=str(self.run_dir), HIP3_FAULTS_KEY=key_hex,
                   PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "logs" / "supervisor.out", "ab") as out:
            subprocess.Popen([sys.executable, "-m", "tests.faults.external_supervisor", str(self.config_path)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=str(REPO_ROOT),
                             start_new_session=True)
        self._exchange = {"url": sim_url, "account": account}
        if not wait_until(self.all_ready, timeout, 0.2):
            raise RuntimeError(f"the external supervisor did not get READY in {timeout:g} s")
        self.seen_pids.update(self.pids().values())

    def close(self) -> None:
        """Stop the supervisor (bounded), then SIGKILL anything of this run directory still alive."""
        with contextlib.suppress(Exception):
            if self.supervisor_pid() is not None:
                self.cli("stop", timeout=30)
        for pid in self.run_dir_processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.run_dir_processes(), 5)

    # ---- the supervisor -----------------------------------------------------------------------------

    def status(self, timeout_ms: int = 5000) -> dict[str, Any]:
        """The supervisor's status (over its ctl socket, no interpreter start)."""
        from hip3.ops import ctl as cli_mod

        st = cli_mod.request(self.cfg, {"cmd": "status"}, timeout_ms=timeout_ms)
        for a in st.get("actors", []):
            if a.get("pid"):
                self.seen_pids.add(int(a["pid"]))
        return st

    def supervisor_pid(self) -> int | None:
        lock = self.run_dir / "supervisor.lock"
        try:
            text = lock.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() and alive(int(text)) else None

    def pids(self) -> dict[str, int]:
        return {a["name"]: a["pid"] for a in self.status()["actors"] if a["pid"]}

    def actor(self, name: str) -> dict[str, Any]:
        return next(a for a in self.status()["actors"] if a["name"] == name)

    def all_ready(self) -> bool:
        try:
            st = self.status()
        except Exception:
            return False
        return bool(st["actors"]) and all(a["ready"] and a["state"] == "running" for a in st["actors"])

    def kill_actor(self, name: str) -> int:
        """SIGKILL ``name``'s process; returns the pid that was killed."""
        pid = self.pids()[name]
        os.kill(pid, signal.SIGKILL)
        return pid

    def back(self, name: str, old_pid: int) -> bool:
        """``name`` runs again under a new pid and is READY."""
        try:
            a = self.actor(name)
        except Exception:
            return False
        return bool(a["pid"] and a["pid"] != old_pid and a["ready"] and a["state"] == "running")

    def run_dir_processes(self) -> list[int]:
        """Live processes started for this run directory: the supervisor sets ``HIP3_RUN_DIR`` for
        itself and everything it starts (forkserver, actors, simulator)."""
        marker = f"HIP3_RUN_DIR={self.run_dir}".encode()
        me = os.getpid()
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if marker in env and alive(int(entry)):
                out.append(int(entry))
        return out

    @staticmethod
    def title(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return ""

    # ---- the simulator ------------------------------------------------------------------------------

    @property
    def sim_url(self) -> str:
        assert self._exchange is not None, "session not started"
        return str(self._exchange["url"])

    @property
    def account(self) -> str:
        assert self._exchange is not None, "session not started"
        return str(self._exchange["account"])

    def _post(self, path: str, body: dict[str, Any], timeout: float = 10) -> Any:
        req = urllib.request.Request(self.sim_url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """``POST /sim/control`` (the simulator runs in its own process)."""
        out: dict[str, Any] = self._post("/sim/control", {"cmd": cmd, **args})
        return out

    def faults(self, **switches: Any) -> dict[str, Any]:
        return self.control("faults", **switches)

    def clear_faults(self) -> None:
        self.faults(stalled_channels=[], post_delay_ms=0, reject_posts=False, rate_limit_actions=False,
                    rate_limit_http=False, malformed_every=0)

    def info(self, body: dict[str, Any]) -> Any:
        return self._post("/info", body)

    def sim_positions(self) -> dict[str, float]:
        ch = self.info({"type": "clearinghouseState", "user": self.account, "dex": "xyz"})
        return {p["position"]["coin"]: float(p["position"]["szi"]) for p in ch["assetPositions"]
                if float(p["position"]["szi"]) != 0}

    def sim_open_orders(self) -> int:
        return len(self.info({"type": "openOrders", "user": self.account, "dex": "xyz"}))

    def sim_fills(self) -> list[dict[str, Any]]:
        fills: list[dict[str, Any]] = self.info({"type": "userFills", "user": self.account})
        return fills

    def hip3_positions(self, st: dict[str, Any] | None = None) -> dict[str, float]:
        """hip3's view of the account's net position per coin: what it manages plus what it leaves (the
        two parts of one coin add up)."""
        st = st or self.status()
        out: dict[str, float] = {}
        for p in st["trading"]["positions"] + st["trading"].get("outside_positions", []):
            out[p["coin"]] = out.get(p["coin"], 0.0) + (p["size"] if p["side"] == "long" else -p["size"])
        return {c: v for c, v in out.items() if v}

    def order_log(self) -> list[dict[str, Any]]:
        return read_jsonl(self.run_dir / "sim" / "orders.jsonl")

    def actor_log(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.run_dir / "logs" / f"{name}.log")

    def journal(self) -> dict[str, str]:
        """cloid -> intent id, from the executor's sent-intent journal."""
        out = {}
        path = self.run_dir / "sent_intents.log"
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 3:
                    out[parts[2]] = parts[1]
        return out

    def wait_new_order(self, timeout: float) -> bool:
        """Wait (polling every 5 ms) until the simulator accepts another order action: a kill right after
        it lands mid-order (the answer, the fill and the order events are on their way)."""
        path = self.run_dir / "sim" / "orders.jsonl"

        def orders() -> int:
            try:
                return path.read_bytes().count(b'"action_type":"order"')
            except FileNotFoundError:
                return 0

        n = orders()
        return wait_until(lambda: orders() > n, timeout, 0.005)

    def new_orders_signed_between(self, from_ms: float, to_ms: float) -> list[dict[str, Any]]:
        """Order actions with a new (not reduce-only) order whose nonce (signing time) is in the window,
        whatever the exchange answered (faulted actions included)."""
        return [r for r in self.order_log()
                if r.get("action_type") == "order" and not all(r.get("reduce_only") or [True])
                and isinstance(r.get("nonce"), int) and from_ms <= r["nonce"] <= to_ms]

    def stats(self, actor: str) -> dict[str, int]:
        out: dict[str, int] = self.actor(actor).get("stats") or {}
        return out

    def events(self, actor: str, event: str) -> list[dict[str, Any]]:
        return [e for e in self.actor_log(actor) if e.get("event") == event]

    def new_orders_accepted(self) -> int:
        """Orders the exchange accepted, over the session."""
        return sum(len(r.get("cloids", [])) for r in self.order_log()
                   if r.get("action_type") == "order" and r.get("status") == "ok")

    # ---- invariants ---------------------------------------------------------------------------------

    def doubled_cloids(self) -> list[str]:
        """Client order ids that the exchange accepted more than once."""
        n = Counter(c for r in self.order_log() if r.get("status") == "ok" for c in r.get("cloids", []))
        return sorted(c for c, k in n.items() if k > 1)

    def lost_orders(self) -> list[str]:
        """Cloids the executor journaled (the line is written right before the frame) that the exchange
        never received (neither accepted nor refused by a fault) and that hip3's own files do not explain
        as at-most-once working: killed before the frame, written into a dropped connection, refused
        before the order log (``tests.faults.accounting``). The journal is read first, then the order log
        until every line arrived or 5 s passed: the session may still be trading."""
        from tests.faults.accounting import LOST, classify_unreceived, recorder_view, unreceived

        lines, missing = unreceived(self)
        if not missing:
            return []
        why = classify_unreceived(lines, missing, self.actor_log("executor"), self.actor_log("supervisor"),
                                  recorder_view(self.run_dir))
        return sorted(c for c, w in why.items() if w == LOST)

    def flat_after_hardstop(self) -> bool:
        """The hard stop's flatten reported done, and both the simulator and hip3 hold no position and
        the simulator no open order."""
        st = self.status()
        fl = st["hard_stop"].get("flatten") or {}
        return bool(fl.get("done")) and not self.sim_positions() and self.sim_open_orders() == 0 \
            and not st["trading"]["positions"]

    def book_mismatch(self) -> str:
        """'' if hip3's positions equal the simulator's, else both books."""
        st = self.status()
        ours, theirs = self.hip3_positions(st), self.sim_positions()
        if set(ours) == set(theirs) and all(abs(ours[c] - theirs[c]) < 1e-9 for c in ours):
            return ""
        return f"hip3 {ours} != simulator {theirs}"

    def wait_books_agree(self, timeout: float) -> str:
        """Wait until the books agree (a snapshot may lag a fill by a bus round trip, and a resync
        after a reconnect takes a REST round trip); returns the last mismatch, '' once they agree."""
        last = ["not checked"]

        def agree() -> bool:
            try:
                last[0] = self.book_mismatch()
            except Exception as e:  # a status or info call that failed under load: try again
                last[0] = f"check failed: {e!r}"
            return not last[0]

        wait_until(agree, timeout, 0.25)
        return last[0]

    def orders_while_not_ready(self, tolerance_ms: int = 20) -> list[str]:
        """New orders signed while the executor was not READY, and entries created while the detector
        had entries blocked. See the module docstring for why each check is exact or nearly so."""
        problems = []
        # 1. The executor: READY transitions (its log, wall clock) against each new order's nonce (its
        #    signing time, same clock). A process start counts as not READY until its "ready" line.
        transitions: list[tuple[float, bool]] = []
        for e in self.actor_log("executor"):
            ev = e.get("event")
            if ev == "ready":
                transitions.append((float(e["ts"]) * 1000, True))
            elif ev in ("not_ready", "starting"):
                transitions.append((float(e["ts"]) * 1000, False))
        new_orders = [r for r in self.order_log()
                      if r.get("action_type") == "order" and not all(r.get("reduce_only") or [True])]
        for r in new_orders:
            nonce = r.get("nonce")
            if not isinstance(nonce, int):
                continue
            state = False
            since = 0.0
            for ts, ready in transitions:
                if ts > nonce:
                    break
                state, since = ready, ts
            if not state and nonce - since > tolerance_ms:
                problems.append(f"executor: new order {r.get('cloids')} signed at {nonce} while not READY "
                                f"(since {since:.0f})")
        # 2. The detector: every entry intent it created while its entries were blocked (log order).
        blocked_intents: set[str] = set()
        blocked = True  # a (re)started detector blocks until it says otherwise
        for e in self.actor_log("detector"):
            ev = e.get("event")
            if ev == "starting" or ev == "entries_blocked":
                blocked = True
            elif ev == "entries_allowed":
                blocked = False
            elif ev == "entry_intent" and blocked:
                blocked_intents.add(str(e.get("intent_id")))
        if blocked_intents:
            journal = self.journal()
            for r in new_orders:
                for c in r.get("cloids", []):
                    if journal.get(c) in blocked_intents:
                        problems.append(f"detector: entry {journal[c]} (cloid {c}) created while entries "
                                        "were blocked reached the exchange")
        return problems

    def orders_while_latched(self, tolerance_ms: int = 20) -> list[str]:
        """New orders the executor signed while it knew the hard stop was latched (its own log: the
        latch it read at start, and every ``hardstop_state`` it applied), by nonce, same clock."""
        transitions: list[tuple[float, bool]] = []
        for e in self.actor_log("executor"):
            if e.get("event") in ("starting", "hardstop_state"):
                transitions.append((float(e["ts"]) * 1000, bool(e.get("latched"))))
        problems = []
        for r in self.order_log():
            nonce = r.get("nonce")
            if r.get("action_type") != "order" or all(r.get("reduce_only") or [True]) or not isinstance(nonce, int):
                continue
            latched, since = False, 0.0
            for ts, state in transitions:
                if ts > nonce:
                    break
                latched, since = state, ts
            if latched and nonce - since > tolerance_ms:
                problems.append(f"new order {r.get('cloids')} signed at {nonce} with the hard stop latched "
                                f"since {since:.0f}")
        return problems

    def leftover_processes(self) -> list[str]:
        return [f"{pid} {self.title(pid)!r}" for pid in self.run_dir_processes()]


def ready_count(log: list[dict[str, Any]]) -> int:
    return sum(1 for e in log if e.get("event") == "ready")


def http_error(e: Exception) -> bool:
    return isinstance(e, (urllib.error.URLError, TimeoutError, ConnectionError))

"""Soak: a paper session under random (seeded) ``kill -9``s and exchange faults, then the invariants.

Run: ``python -m bench.soak [--seconds N] [--seed S]`` (default 180 s). Real processes over ``ipc://``,
the bundled simulator, the fault-test config (``tests/faults/session.py``: short timeouts; restart limit
raised to 100 and the loss/rejection hard-stop triggers relaxed so that the run measures the plumbing,
not a random walk's losing streak; both are tested on their own).

Every 1 to 4 s one event, drawn with the seed: a ``kill -9`` of a random actor (for the executor and
the position tracker, half of the time right after the exchange accepted an order: mid-order), or an
exchange fault for a few seconds (dropped connections, stalled market data, a silent server without
pongs, delayed answers including past the post timeout, rejected actions, the exchange's rate limit,
HTTP 429 on /info with a reconnect, malformed frames); during a third of the faults an actor is killed
too. After each event every actor must be READY again (30 s).

At the end, with the faults cleared: hip3's positions equal the simulator's, no client order id was
accepted twice, no new order was signed while the executor was not READY nor an entry created while the
detector blocked entries, the hard stop is not latched; then the operator's hard stop must flatten the
account at the exchange, and ``stop`` must leave no process behind. Last line: one JSON object.

``orders_lost`` counts orders the executor journaled (the line is written right before the frame) that
the exchange never received (neither accepted nor refused by a fault) and that nothing below explains.
The journal is read first, then the simulator's order log until every line arrived or 5 s passed (the
session still trades: read the other way round, an order journaled between the two reads counted as
lost). A journaled cloid that never arrived is explained, from hip3's own files, as one of
``orders_not_received`` (see ``classify_unreceived``): the executor killed between the journal line and
the frame, the frame written into a connection the simulator dropped, or a refusal before the order
log (the exchange's, answered before the simulator logs, or the client's, before anything left). Each
is at-most-once working: never re-sent, nothing holds it live.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hip3.runtime.percentiles import percentile_floor
from tests.faults.accounting import DROPPED, KILLED, LOST, REFUSED, classify_unreceived, recorder_view, unreceived
from tests.faults.session import Session, wait_until

MD_CHANNELS = ["bbo", "activeAssetCtx", "l2Book", "allMids"]
USER_CHANNELS = ["orderUpdates", "userFills", "userEvents", "user"]
FAULT_KINDS = ("drop", "stall_market_data", "silent_server", "delay_posts", "reject_posts",
               "rate_limit_actions", "rate_limit_http", "malformed")
RECOVER_S = 30.0

class Soak:
    def __init__(self, s: Session, rng: random.Random) -> None:
        self.s = s
        self.rng = rng
        self.t0 = time.monotonic()
        self.kills: Counter[str] = Counter()
        self.kills_survived: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.restart_ms: list[float] = []
        self.problems: list[str] = []

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    # ---- kills ---------------------------------------------------------------------------------

    def kill(self, name: str | None = None, then: Callable[[], None] | None = None) -> None:
        """``kill -9`` an actor, run ``then`` (e.g. end the fault in progress), then wait for it to be
        READY again under a new pid."""
        s = self.s
        names = [a["name"] for a in s.status()["actors"]]
        name = name or self.rng.choice(names)
        how = "at a random moment"
        if name in ("executor", "position_tracker") and self.rng.random() < 0.5 and s.wait_new_order(5):
            how = "mid-order (the exchange just accepted an order)"
        old = s.kill_actor(name)
        self.kills[name] += 1
        if then is not None:
            then()
        t = time.monotonic()  # READY-again time counts from the end of a fault held over the kill
        if wait_until(lambda: s.back(name, old), RECOVER_S, 0.02):
            self.kills_survived[name] += 1
            self.restart_ms.append((time.monotonic() - t) * 1000)
            self.say(f"kill -9 {name} {how}: READY again in {(time.monotonic() - t) * 1000:.0f} ms")
        else:
            self.problems.append(f"{name} not back READY {RECOVER_S:g} s after kill -9")
            self.say(f"kill -9 {name} {how}: NOT BACK after {RECOVER_S:g} s")

    # ---- faults --------------------------------------------------------------------------------

    def fault(self, kind: str) -> None:
        s, rng = self.s, self.rng
        hold = rng.uniform(2.0, 5.0)
        detail = ""
        if kind == "drop":
            detail = f"{s.control('drop')['dropped']} connections"
            hold = rng.uniform(0.3, 2.0)
        elif kind == "stall_market_data":
            chans = rng.choice([["bbo"], ["activeAssetCtx"], MD_CHANNELS])
            s.faults(stalled_channels=chans)
            detail = ",".join(chans)
        elif kind == "silent_server":
            s.faults(stalled_channels=[*MD_CHANNELS, *USER_CHANNELS, "pong"])
        elif kind == "delay_posts":
            ms = rng.choice([300, 1500, 4000])
            s.faults(post_delay_ms=ms)
            detail = f"{ms} ms"
        elif kind == "reject_posts":
            s.faults(reject_posts=True)
        elif kind == "rate_limit_actions":
            s.faults(rate_limit_actions=True)
        elif kind == "rate_limit_http":
            s.faults(rate_limit_http=True)
            s.control("drop")  # a reconnect, so that the tracker must resync through the 429s
        elif kind == "malformed":
            every = rng.randint(3, 12)
            s.faults(malformed_every=every)
            s.control("malformed", count=3)
            detail = f"1 frame in {every}"
        self.faults[kind] += 1
        self.say(f"fault {kind} {detail} for {hold:.1f} s")
        if rng.random() < 1 / 3:
            # A kill during the fault. The restarted actor is waited for only once the fault is over: an
            # executor cannot start while every /info answers 429 (it needs the market specs), by design.
            at = rng.uniform(0.2, hold)
            time.sleep(at)

            def end_fault() -> None:
                time.sleep(hold - at)
                s.clear_faults()

            self.kill(then=end_fault)
        else:
            time.sleep(hold)
        s.clear_faults()
        t = time.monotonic()
        if wait_until(s.all_ready, RECOVER_S, 0.1):
            self.say(f"  recovered: every actor READY {(time.monotonic() - t) * 1000:.0f} ms after the fault")
        else:
            self.problems.append(f"not every actor READY {RECOVER_S:g} s after fault {kind}")
            self.say(f"  NOT RECOVERED {RECOVER_S:g} s after the fault")

    # ---- the run ---------------------------------------------------------------------------------

    def run(self, seconds: float) -> None:
        end = self.t0 + seconds
        while time.monotonic() < end:
            time.sleep(self.rng.uniform(1.0, 4.0))
            if time.monotonic() >= end:
                break
            if self.rng.random() < 0.5:
                self.kill()
            else:
                self.fault(self.rng.choice(FAULT_KINDS))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="how long to inject (default 180)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, order log)")
    args = ap.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="h3soak", dir="/tmp"))
    s = Session(run_dir)
    rng = random.Random(args.seed)
    started = time.monotonic()
    result: dict[str, Any] = {}
    try:
        s.start()
        print(f"hip3 soak: seed {args.seed}, {args.seconds:g} s of kills and faults, run dir {run_dir}", flush=True)
        print(f"simulator {s.sim_url}, account {s.account}, actors {sorted(s.pids())}", flush=True)
        soak = Soak(s, rng)
        soak.run(args.seconds)
        s.clear_faults()
        ready = wait_until(s.all_ready, RECOVER_S, 0.2)
        mismatch = s.wait_books_agree(30)
        st = s.status()
        doubled = s.doubled_cloids()
        not_ready = s.orders_while_not_ready()
        latched = s.orders_while_latched()
        lines, missing = unreceived(s)
        view = recorder_view(s.run_dir)
        why = classify_unreceived(lines, missing, s.actor_log("executor"), s.actor_log("supervisor"), view)
        lost = sorted(c for c, w in why.items() if w == LOST)
        not_received = Counter(w for w in why.values() if w != LOST)
        log = s.order_log()
        sent = {c for r in log if r.get("action_type") == "order" for c in r.get("cloids", [])}
        accepted = s.new_orders_accepted()
        hs = st["hard_stop"]
        print(f"end of injection: every actor READY: {ready}; positions: hip3 {s.hip3_positions(st)} "
              f"simulator {s.sim_positions()} ({'match' if not mismatch else 'MISMATCH'})", flush=True)
        print(f"trading: {st['trading']['entries']} entries, {st['trading']['exits']} exits; orders sent "
              f"{len(sent)} (accepted {accepted}), lost {len(lost)}, doubled {len(doubled)}", flush=True)
        for t_ms, intent, cloid in missing:
            print(f"journaled at {t_ms}, never received: {cloid} (intent {intent}): {why[cloid]}; hip3 "
                  f"published {view.get(cloid) or 'nothing'}", flush=True)
        # Every position of the soak is hip3's own: one shown as "not hip3's" lost its owner in a kill.
        not_own = [f"{p['coin']} shown as {p['owner']}" for p in st["trading"].get("outside_positions", [])]
        for p in soak.problems + not_ready + latched + [f"doubled cloid {c}" for c in doubled] + \
                [f"journaled, never received: {c}" for c in lost] + ([mismatch] if mismatch else []) + not_own:
            print(f"PROBLEM: {p}", flush=True)
        # The operator's hard stop after all that: the account must end flat at the exchange.
        s.cli("hardstop", "--reason", "end of soak")
        flat_ok = wait_until(s.flat_after_hardstop, 60, 0.5)
        st = s.status()
        print(f"hard stop at the end: flat at the exchange: {flat_ok} (simulator positions {s.sim_positions()}, "
              f"open orders {s.sim_open_orders()}; hip3 positions {s.hip3_positions(st)}; flatten "
              f"{st['hard_stop'].get('flatten')})", flush=True)
        restarts = {a["name"]: a["restarts"] for a in s.status()["actors"]}
        result = {
            "duration_s": round(time.monotonic() - started, 1),
            "seed": args.seed,
            "kills": sum(soak.kills.values()),
            "kills_survived": sum(soak.kills_survived.values()),
            "kills_survived_by_actor": dict(sorted(soak.kills_survived.items())),
            "restarts_by_actor": restarts,
            "restart_to_ready_median_ms": round(percentile_floor(sorted(soak.restart_ms), 50), 1)
            if soak.restart_ms else None,
            "faults_injected": sum(soak.faults.values()),
            "faults_by_kind": dict(sorted(soak.faults.items())),
            "entries": st["trading"]["entries"],
            "exits": st["trading"]["exits"],
            "orders_sent": len(sent),
            "orders_accepted": accepted,
            "orders_lost": len(lost),
            "orders_not_received": {k: not_received[k] for k in (KILLED, DROPPED, REFUSED)},
            "orders_doubled": len(doubled),
            "new_orders_while_not_ready": len(not_ready),
            "new_orders_while_latched": len(latched),
            "positions_match": not mismatch,
            "positions_not_hip3_at_end": len(not_own),
            "hard_stop": "latched: " + str(hs["reason"]) if hs["latched"] else "not latched",
            "flat_after_operator_hard_stop": flat_ok,
            "problems": len(soak.problems),
        }
    finally:
        s.close()
        left = s.leftover_processes()
        if result:
            result["processes_left_after_stop"] = len(left)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

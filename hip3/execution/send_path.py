"""The executor's send path without sockets: pump the scheduler's batches, sign, journal, post over the
order-entry transport, and take the exchange's answers. The actor (``actors/executor.py``) hands in the
transport (its ``WsClient``: ``post``, ``can_post``, ``state``), the signer and the nonce manager, and a
host (the actor itself: counters, log, READY, alerts, the bus) so that a test drives all of it with a
fake transport and an injected clock (``hip3.clock``).

* ``pump``: every intake, answer and timer calls it: ``next_batch`` -> wire -> sign (``expiresAfter`` = the
  exchange's now + ``expires_after_ms``) -> journal line written before the frame -> ``post`` -> ``on_sent``
  -> ``OrderSubmitted`` (``sent_ns`` = monotonic right after the frame was written). A post the transport
  refuses (not connected, over its budget) requeues the batch without spending the requeue budget (new
  orders are dropped) and pauses the pump until the next tick or a reconnect: no requeue storm. Nothing is
  taken or signed while the transport says it cannot post.
* The journal is fsynced 5 ms after a frame, by a timer (the line was written before the frame): not in
  the same loop turn, where it made the next order of a burst (two positions exiting on one oracle move)
  wait 0.3-1 ms for the disk. The fsync is for a host crash only, which loses the intent queues too.
* A full disk stops entries only: an entry needs its nonce ceiling and journal line on disk (a restarted
  executor must neither reuse the nonce nor send the intent again); reduce-only orders, cancels and the dead
  man's switch leave without (``hip3.hyperliquid.nonce``, ``hip3.execution.journal``). READY is off with
  the reason until the disk takes writes again; one critical alert.
* The exchange refusing a whole action (its rate limit, any whole-request error) stops every post for a
  while (0.5 s doubling to 10 s, ``admission.RefusalBackoff``) and drops the queued entries (they would
  leave late, at stale prices); reduce-only orders and cancels wait in their queues. Found by the fault
  tests: a refusing exchange got about 60 posts a second and the flattens' requeue budget was gone.
* The dead man's switch (``scheduleCancel``) is re-armed while READY unless the exchange refused it.
* Nonces, ``expiresAfter`` and ``scheduleCancel`` are in the exchange's time (``EntryConditions.time``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Literal, Protocol

import msgspec

from hip3 import clock
from hip3.account.entry_conditions import EntryConditions
from hip3.execution.batch import Batch
from hip3.execution.core import ExecutionCore
from hip3.execution.deadman import DeadMansSwitch, Note
from hip3.execution.journal import JournalWriteError
from hip3.execution.latency import LatencySamples
from hip3.execution.orders import post_answer
from hip3.execution.params import ExecutorParams
from hip3.hyperliquid.frames import PostResponse
from hip3.hyperliquid.nonce import NonceError, NonceManager, NonceStorageError
from hip3.hyperliquid.signing import Signer
from hip3.hyperliquid.wire import cancel_action, order_action, order_wire, schedule_cancel_action
from hip3.hyperliquid.ws import WsBudgetError, WsNotConnected
from hip3.messages import HardStopProgress, Msg, OrderSubmitted, PositionSnapshot
from hip3.runtime.logs import Log

__all__ = ["Host", "SendPath", "Transport", "Wake", "Waker", "now_ms"]

_LATENCY_SAMPLES = 4096
_STAGE_SAMPLES = 1024
# Signing nonces spent by a send are replaced this long after it (off the send path, after its events and
# log lines), a few per turn (each ~40 µs of the loop) until the pool is full again.
SIGN_POOL_REFILL_DELAY_NS = 2_000_000
_SIGN_POOL_REFILL_PER_TURN = 2
JOURNAL_SYNC_DELAY_NS = 5_000_000


def now_ms() -> int:
    return clock.time_ns() // 1_000_000


class Transport(Protocol):
    """The order-entry connection (``hip3.hyperliquid.ws.WsClient``)."""

    @property
    def state(self) -> str: ...

    def can_post(self) -> bool: ...

    def post(self, request_type: Literal["action", "info"], payload: dict[str, Any],
             on_response: Callable[[PostResponse], None]) -> int: ...


class Host(Protocol):
    """What the send path needs of its process: ``hip3.runtime.actor.Actor`` plus where events and the hard
    stop's progress go."""

    stats: dict[str, int]
    ready: bool
    ready_detail: str

    @property
    def log(self) -> Log: ...

    def count(self, key: str, n: int = 1) -> None: ...

    def set_ready(self, ready: bool, detail: str = "") -> None: ...

    def alert(self, level: str, text: str) -> None: ...

    def raise_hardstop(self, reason: str) -> None: ...

    def publish_events(self, events: list[Msg]) -> None: ...

    def report_progress(self, progress: HardStopProgress) -> None: ...


class Waker(Protocol):
    def wake_by(self, due_ns: int) -> None: ...


class Wake:
    """A due time pulled in by ``wake_by`` (the actor hands in its loop's timers, which do the same)."""

    __slots__ = ("due_ns",)

    def __init__(self, due_ns: int = 2**62) -> None:
        self.due_ns = due_ns

    def wake_by(self, due_ns: int) -> None:
        if due_ns < self.due_ns:
            self.due_ns = due_ns


class SendPath:
    def __init__(self, core: ExecutionCore, transport: Transport, signer: Signer, nonces: NonceManager,
                 params: ExecutorParams, host: Host, *, vault: str | None = None, mainnet: bool = False,
                 conditions: EntryConditions | None = None) -> None:
        self.core = core
        self.transport = transport
        self.signer = signer
        self.nonces = nonces
        self.params = params
        self.host = host
        self.vault = vault
        self.mainnet = mainnet  # the simulator and testnet sign with source "b"
        self.conditions = conditions
        self.snapshot: PositionSnapshot | None = None  # the tracker's latest
        self.paused = False  # the transport refused a post: nothing until the next tick or a reconnect
        self.nonce_problem: str | None = None  # every signature would be refused (the READY detail)
        self.storage_problem: str | None = None  # the disk refuses the nonce ceiling or the journal
        self.latencies_ns: deque[int] = deque(maxlen=_LATENCY_SAMPLES)  # intent receipt -> frame written
        self.stages = LatencySamples(_STAGE_SAMPLES)  # gates, wire, sign, journal, write
        self.recv_ns: dict[str, tuple[int, int]] = {}  # intent id -> (receipt, creation): latency samples
        self.switch = DeadMansSwitch(params.schedule_cancel_after_ms)
        # The hard-stop step (``Intake.hardstop_step``: after an answer or a snapshot), and the loop's timers.
        self.step_hardstop: Callable[[], None] = lambda: None
        self.pump_timer: Waker = Wake()
        self.refill_timer: Waker = Wake()
        self.journal_timer: Waker = Wake()

    # ------------------------------------------------------------------ READY

    def update_ready(self) -> None:
        """READY = connected and synced, with usable nonces and a disk that takes the entries' writes;
        said once (an alert) when a nonce or disk problem appears. Becoming READY re-arms the switch and
        pumps."""
        host = self.host
        was = host.ready
        nonce_problem = self.nonces.problem(now_ms())
        if nonce_problem is not None and self.nonce_problem is None:
            host.alert("critical", nonce_problem)
        self.nonce_problem = nonce_problem
        connected = self.transport.state == "connected"
        synced = self.snapshot is not None and self.snapshot.synced
        storage = self.nonces.storage_problem or self.core.journal.problem
        if storage is not None and self.storage_problem is None:
            host.alert("critical", f"entries stopped: {storage}; flattens, cancels and the hard stop go on")
        elif storage is None and self.storage_problem is not None:
            host.log.info("storage_recovered", was=self.storage_problem)
        self.storage_problem = storage
        if nonce_problem is not None:  # every signature would be refused: never READY (and say so)
            host.set_ready(False, nonce_problem)
        elif storage is not None:  # entries need their nonce and journal line on disk; exits do not
            host.set_ready(False, f"entries stopped: {storage}")
        elif connected and synced:
            host.set_ready(True, "order entry connected, positions synced")
        elif not connected:
            host.set_ready(False, f"order entry {self.transport.state}")
        else:
            host.set_ready(False, "waiting for a synced position snapshot")
        if host.ready and not was:
            self.rearm_schedule_cancel()
            self.pump()

    def check_storage(self) -> None:
        """READY follows whether the disk takes the nonce ceiling and the journal's lines."""
        if (self.nonces.storage_problem is None and self.core.journal.problem is None) != (
                self.storage_problem is None):
            self.update_ready()

    def on_connection(self, state: str) -> None:
        """The transport's state changed (the actor has registered its socket); then ``update_ready``."""
        if state != "connected":
            self.switch.on_disconnected()
        else:
            self.paused = False

    def check_hardstop_request(self) -> None:
        reason = self.core.take_hardstop_request()
        if reason is not None:
            self.host.raise_hardstop(reason)

    # ------------------------------------------------------------------ timers

    def on_tick(self) -> None:
        """The actor's 100 ms tick (after the transport's own): post timeouts, entries past their
        validity, the exchange's clock, un-pause, pump, and the files' health."""
        core = self.core
        now_ns = clock.monotonic_ns()
        self.host.publish_events(core.expire(now_ns, now_ms()))
        # Entries that could not leave in time (the exchange's message budget, the in-flight limit).
        self.host.publish_events(core.drop_expired_entries(now_ns))
        self.check_hardstop_request()
        self.follow_exchange_clock()
        self.paused = False
        self.pump()
        # Keep the nonce ceiling's fsync off the send path (hip3.hyperliquid.nonce); while the disk refused
        # a write, this and the journal's retry find out when it takes writes again.
        if not self.nonces.reserve_ahead(now_ms()) and self.nonces.storage_problem is not None:
            self.host.count("nonce_reserve_failed")
        if core.journal.problem is not None:
            core.journal.retry()
        self.check_storage()
        if (self.nonces.problem(now_ms()) is None) != (self.nonce_problem is None):
            self.update_ready()  # the clock moved past (or back behind) the nonce state

    def refill_sign_pool(self) -> None:
        signer = self.signer
        signer.refill(max_new=_SIGN_POOL_REFILL_PER_TURN)
        if signer.pooled < signer.pool_size:
            self.refill_timer.wake_by(clock.monotonic_ns() + SIGN_POOL_REFILL_DELAY_NS)

    def sync_journal(self) -> None:
        self.core.journal.sync()  # no-op unless a line was written since the last one
        self.check_storage()

    def follow_exchange_clock(self) -> None:
        """The nonce manager's server offset is the measured skew, evaluated now (a step of the host's wall
        clock is followed at the next tick); ``sign`` adds it to ``expiresAfter`` too."""
        c = self.conditions
        skew = c.time.skew_ms(clock.monotonic_ns(), clock.time_ns()) if c is not None else None
        if skew is not None and skew != self.nonces.server_offset_ms:
            self.nonces.set_server_offset(skew)
            self.host.stats["signing_offset_ms"] = skew

    # ------------------------------------------------------------------ sending

    def can_send(self) -> bool:
        # Checked before a batch is taken and signed: no nonce is spent and nothing is requeued while
        # the connection is down or the outbound budget (2000/min, 100 in flight) is used up.
        return (not self.paused and self.transport.can_post()
                and not self.core.admission.backoff.blocked(clock.monotonic_ns()))

    def pump(self) -> None:
        """Send every batch the scheduler releases now; pull the pump timer in to the next one."""
        if not self.can_send():
            return  # reduce-only orders and cancels stay queued until the connection (or budget) is back
        core = self.core
        while self.can_send():  # re-checked every turn: a send can drop the connection
            now_ns = clock.monotonic_ns()
            batch = core.next_batch(now_ns)
            if batch is None:
                break
            if batch.kind == "order" and not self.host.ready and any(not o.reduce_only for o in batch.orders):
                # New orders dropped (marks released); reduce-only requeued, budget untouched: not ready is
                # not a failure of the flatten, which goes out on the next turn without the entries.
                self.host.publish_events(core.on_send_failure(batch, "not ready", now_ns, now_ms(), transient=True))
                continue
            if not self.send(batch):
                break
        self.host.publish_events(core.drop_expired_entries(clock.monotonic_ns()))  # those next_batch skipped
        if not self.can_send():
            return
        wake = core.next_wakeup_ns(clock.monotonic_ns())
        if wake is not None:
            self.pump_timer.wake_by(max(wake, clock.monotonic_ns() + 100_000))

    def sign(self, action: dict[str, object], now: int, durable: bool = True) -> dict[str, Any]:
        """The signed payload; ``durable=False`` (reduce-only, cancels, the switch) signs on a full disk."""
        nonce = self.nonces.next(now, durable=durable)
        # The exchange refuses an action once its own time passes expiresAfter: its time, not ours.
        expires = now + self.nonces.server_offset_ms + self.params.expires_after_ms
        sig = self.signer.sign_action(action, self.vault, nonce, self.mainnet, expires)
        payload: dict[str, Any] = {"action": action, "nonce": nonce, "signature": sig, "expiresAfter": expires}
        if self.vault is not None:
            payload["vaultAddress"] = self.vault
        return payload

    def send(self, batch: Batch) -> bool:
        """Wire -> sign -> journal (written before the frame) -> frame written; everything else after.
        False if the transport refused the post (the caller stops pumping until the next tick)."""
        core, host = self.core, self.host
        t0 = clock.monotonic_ns()
        now = now_ms()
        # An entry needs its nonce ceiling and journal line on disk (a restarted executor must neither reuse
        # the nonce nor send the intent again); reduce-only orders and cancels leave without: a full disk
        # must never stop a flatten.
        entries = False
        if batch.kind == "order":
            for o in batch.orders:  # a loop, not any(<generator>): about 0.4 µs less per post
                if not o.reduce_only:
                    entries = True
                    break
        try:
            if batch.kind == "order":
                action = order_action([
                    order_wire(o.asset, o.is_buy, o.px, o.sz, o.reduce_only, o.tif, o.cloid) for o in batch.orders
                ])
            else:
                action = cancel_action([(c.asset, c.oid) for c in batch.cancels])
            t1 = clock.monotonic_ns()
            payload = self.sign(action, now, durable=entries)
        except NonceStorageError as e:
            return self._storage_refused(batch, str(e), now)
        except (ValueError, NonceError) as e:
            host.log.error("sign_failed", error=str(e), kind=batch.kind, n=len(batch))
            host.count("sign_failed")
            host.publish_events(core.on_send_failure(batch, f"sign failed: {e}", clock.monotonic_ns(), now))
            return True
        t2 = clock.monotonic_ns()
        try:
            core.prepare_send(batch, now, sync=self.params.journal_fsync_before_send, required=entries)
        except JournalWriteError as e:
            return self._storage_refused(batch, str(e), now)
        t3 = clock.monotonic_ns()
        try:
            post_id = self.transport.post("action", payload, self.on_order_response)
        except (WsNotConnected, WsBudgetError) as e:
            # Nothing left the process: requeue without spending the requeue budget, count no failure,
            # and stop until the next tick / reconnect (taking the batch straight back would spin).
            host.count("send_failed")
            host.log.warning("send_failed", error=str(e), kind=batch.kind, n=len(batch))
            self.paused = True
            host.publish_events(core.on_send_failure(batch, str(e), clock.monotonic_ns(), now, transient=True))
            return False
        sent_ns = clock.monotonic_ns()
        stages = self.stages
        stages.add("stage_wire", t1 - t0)
        stages.add("stage_sign", t2 - t1)
        stages.add("stage_journal", t3 - t2)
        stages.add("stage_write", sent_ns - t3)
        events = core.on_sent(batch, post_id, int(payload["nonce"]), sent_ns)
        host.count("posts")
        host.count(f"{batch.kind}s_sent", len(batch))
        for i, ev in enumerate(events):
            if isinstance(ev, OrderSubmitted):
                recv_ns, created_ns = self.recv_ns.pop(ev.intent_id, (0, 0))
                if recv_ns:
                    self.latencies_ns.append(sent_ns - recv_ns)
                    events[i] = msgspec.structs.replace(ev, intent_recv_ns=recv_ns, intent_created_ns=created_ns)
        host.publish_events(events)
        self.refill_timer.wake_by(sent_ns + SIGN_POOL_REFILL_DELAY_NS)
        self.journal_timer.wake_by(sent_ns + JOURNAL_SYNC_DELAY_NS)
        if self.storage_problem is None and (self.nonces.storage_problem or core.journal.problem):
            self.update_ready()  # a flatten left past a write the disk refused: entries stop now
        return True

    def _storage_refused(self, batch: Batch, why: str, now: int) -> bool:
        """The disk refused an entry's nonce ceiling or journal line: its entries dropped (released, benign),
        its reduce-only orders requeued without spending their budget (they leave on the next turn)."""
        self.host.count("entries_refused_storage")
        self.host.publish_events(self.core.on_send_failure(batch, f"entries stopped: {why}", clock.monotonic_ns(),
                                                           now, transient=True))
        self.check_storage()
        return True

    # ------------------------------------------------------------------ answers

    def on_order_response(self, resp: PostResponse) -> None:
        answer = post_answer(resp)
        if answer is None:
            # Outcome unknown: the scheduler's expiry (post_timeout_ms >= expires_after_ms) resolves it.
            self.host.count(f"post_{resp.type}")
            return
        events = self.core.on_post_response(resp.id, answer, clock.monotonic_ns(), now_ms())
        ex = resp.exchange
        if resp.type == "action" and ex is not None and ex.ok:
            self.core.admission.on_accepted()
        elif resp.type in ("action", "error"):
            # Before anything below pumps the requeued orders again.
            self.back_off((ex.error if ex is not None else resp.error) or f"post answered {resp.type}")
        self.host.publish_events(events)
        self.check_hardstop_request()
        self.step_hardstop()

    def back_off(self, error: str) -> None:
        """The exchange refused a whole action: send nothing for a while (the next accepted action resets
        it) and drop the queued entries; reduce-only orders and cancels wait in their queues."""
        now_ns = clock.monotonic_ns()
        backoff = self.core.admission.backoff
        delay_ms = backoff.on_refused(now_ns)
        self.host.publish_events(self.core.drop_queued_entries("dropped: exchange backoff", now_ns))
        self.host.count("exchange_backoffs")
        self.host.log.warning("exchange_backoff", error=error[:200], delay_ms=delay_ms, refusals=backoff.refusals)
        self.pump_timer.wake_by(backoff.until_ns)

    # ------------------------------------------------------------------ dead man's switch

    def rearm_schedule_cancel(self) -> None:
        if not self.host.ready or self.transport.state != "connected":
            return
        now = now_ms()
        until = self.switch.want(now + self.nonces.server_offset_ms)  # the exchange's time
        if until is None or not self.core.admission.may_send_other(clock.monotonic_ns()):
            return
        self.switch.on_sent()
        try:
            payload = self.sign(schedule_cancel_action(until), now, durable=False)
            self.transport.post("action", payload, lambda r: self._on_schedule_cancel_response(r, until))
        except (WsNotConnected, WsBudgetError, NonceError, ValueError) as e:
            self.switch.on_not_sent()
            self.host.count("schedule_cancel_failed")
            self.host.log.warning("schedule_cancel_failed", error=str(e))
            return
        self.core.admission.on_other_sent(clock.monotonic_ns())

    def _on_schedule_cancel_response(self, resp: PostResponse, until_ms: int) -> None:
        """Never a hard-stop matter: a refused switch is reported (once), not counted as a rejection."""
        ex = resp.exchange
        ok = resp.type == "action" and ex is not None and ex.ok
        error = "" if ok else (ex.error if ex is not None else resp.error) or f"post answered {resp.type}"
        budget = self.core.admission.budget
        budget.resolve(1, now_ms())
        if not ok:
            budget.on_rate_limit_error(error, 1, clock.monotonic_ns())
        self.host.count("schedule_cancel_armed" if ok else "schedule_cancel_failed")
        self.note(self.switch.on_answer(ok, error, until_ms, now_ms() + self.nonces.server_offset_ms))

    def note(self, note: Note | None) -> None:
        if note is not None:
            (self.host.log.warning if note.warning else self.host.log.info)(note.event, detail=note.detail)

"""The position_tracker actor process. The source of truth for positions and open orders.

A thin loop over ``hip3.positions`` (the book, the resync planner, the REST converters): I/O and publishing.

* sockets: SUB ``user`` (``OrderUpdate``, ``UserFill``, ``FeedState``) and ``exec`` (``OrderSubmitted``,
  ``OrderAcked``, ``OrderFilled``, ``OrderRejected``, ``OrderCancelled``); XPUB ``positions``
  (``PositionSnapshot`` as state ``positions`` on every change and every ``snapshot_interval_ms``,
  ``Fill``, exactly one ``PositionClosed`` per close).
* REST sync (``clearinghouseState`` with the dex, the L1 one for the balance, ``openOrders`` with the dex):
  when, and what an answer means for the next one, is ``hip3.positions.planner.ResyncPlanner`` (at start,
  after a user-stream reconnect, once the user streams are acked, when the book asks, periodically, every
  second while the hard stop is latched). The book adds/updates first and removes after, never clearing
  first; suspect empty answers are held back by the book and retried soon. Every snapshot carries
  ``feed_conn_id`` (``ResyncPlanner.synced_conn_id``): the detector resumes entries on that exact match.
* REST calls block, so they run in one worker thread; results come back through a pipe whose read end
  sits in the actor's poller, and are applied on the actor's thread (the book is single-threaded). Two
  small periodic reads run as their own jobs, each on its own worker thread (``hip3.runtime.rest_job``):
  the market terms (``hip3.runtime.terms_poller``) and the account's request budget (``userRateLimit``
  every ``executor.request_budget_poll_ms``, ``hip3.runtime.budget_poller``, published as state
  ``request_budget`` for the executor's admission).
* The dex's collateral (``hip3.account.collateral``) from the sync's clearinghouseState answers, on every snapshot
  (``PositionSnapshot.collateral``); an unfunded dex is said once (WARNING + alert, naming the dex, the
  balance and how to fund it) and re-read every ``collateral.recheck_unfunded_s`` until funded. It is
  an entry condition (the detector and the executor refuse entries), never a READY condition: the
  tracker is doing its job, and exits must keep working.
* READY = the first REST sync succeeded. Until then it stays not READY and retries with backoff: never
  trade on an empty book (the Rust original did after a failed start-up sync).
* Ownership (``hip3.positions.ownership``, ``hip3.positions.ownership_ledger``): every applied fill and resync
  also updates hip3's part of each position (persisted in ``<run_dir>/ownership.json``), and the published
  snapshot is divided into what hip3 manages and what it leaves (``outside``). The first sync of the process,
  the one after the user streams are acked and the one after a sync that corrected the book also fetch the
  account's recent fills (REST ``userFills``) to recover fills no tracker saw. Each outside position is logged
  (and alerted) once when it appears, and once when it goes. Fills of another dex (the validator dex) are not
  this book's: the dex's clearinghouseState never holds them; those positions are shown from the validator
  dex's clearinghouseState instead.

Run alone for debugging: `python -m actors.position_tracker --config configs/default.toml`.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections import deque
from decimal import Decimal

import msgspec

from hip3 import clock
from hip3.account.collateral import collateral_from_states, collateral_problem
from hip3.config import account_address, exchange_urls
from hip3.hyperliquid.errors import is_margin_rejection
from hip3.hyperliquid.rest import RestClient
from hip3.messages import (
    Alert,
    DexCollateral,
    FeedState,
    HardStopState,
    Message,
    OrderAcked,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    OrderUpdate,
    PositionClosed,
    PositionSnapshot,
    UserFill,
)
from hip3.positions import BookResult, ExchangePosition, HeldCloses, PositionBook, exit_reason_of
from hip3.positions.ownership import describe
from hip3.positions.ownership_ledger import FILE_NAME as OWNERSHIP_FILE
from hip3.positions.ownership_ledger import PositionOwnership, parse_history
from hip3.positions.planner import ResyncPlanner, SyncRequest
from hip3.positions.rest import RestSnapshot, fetch_sync, net_sizes, open_orders_from_rest, positions_from_rest
from hip3.runtime.actor import Actor
from hip3.runtime.budget_poller import BudgetPoller
from hip3.runtime.markets import load_registry
from hip3.runtime.runner import standalone_main
from hip3.runtime.terms_poller import TermsPoller

__all__ = ["PositionTracker"]


class PositionTracker(Actor):
    name = "position_tracker"

    def setup(self) -> None:
        cfg = self.cfg
        self.account = account_address(cfg)
        if not self.account:
            raise RuntimeError("position_tracker: the account address is unknown (exchange.account_address or "
                               "HIP3_ACCOUNT_ADDRESS)")
        registry = load_registry(cfg, self.log)
        self.dex = registry.dex
        self._dex_prefix = f"{self.dex}:"
        self.assets = {s.coin: s.asset for s in registry.specs}
        self.book = PositionBook(self.assets)
        self._held = HeldCloses()  # closes waiting for the OrderSubmitted that names their exit reason
        self.ownership = PositionOwnership([m.coin for m in cfg.markets], cfg.positions.manual_positions,
                                           self.run_dir / OWNERSHIP_FILE)
        problem = self.ownership.ledger.load()
        if problem is not None:
            self.log.error("ownership_ledger_unusable", problem=problem,
                           effect="every position counts as manual until the exchange's history shows it")
            self.inbox.send(Alert(level="critical", actor=self.name, text=f"ownership ledger {problem}"))
        self._save_failed = False
        self.positions = self.publisher("positions")
        self.subscriber(["user", "exec"], self.on_message)

        base, _ = exchange_urls(cfg)
        self._rest = RestClient(base, timeout_s=cfg.exchange.request_timeout_ms / 1000, info_retries=1)
        self._requests: queue.Queue[SyncRequest | None] = queue.Queue()
        self._results: deque[RestSnapshot] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._worker = threading.Thread(target=self._rest_worker, name="hip3:position_tracker:rest", daemon=True)
        self._worker.start()
        self.add_reader(self._wake_r, self._on_rest_results)
        # Fees and open-interest caps: their own job and worker thread (hip3.runtime.terms_poller).
        terms_rest = RestClient(base, timeout_s=cfg.exchange.request_timeout_ms / 1000)
        self._terms = TermsPoller(self, self.positions, terms_rest, self.dex, self.account,
                                  [m.coin for m in cfg.markets], cfg.market_terms)
        # The address request budget for the executor's admission: its own job too (budget_poller).
        budget_rest = RestClient(base, timeout_s=cfg.exchange.request_timeout_ms / 1000)
        self._budget = BudgetPoller(self, self.positions, budget_rest, self.account,
                                    cfg.executor.request_budget_poll_ms)

        self.planner = ResyncPlanner(cfg.positions.resync_interval_s, cfg.collateral.recheck_unfunded_s)
        self._published_version = -1
        self.collateral: DexCollateral | None = None
        self._collateral_problem = ""
        self._setup_done = True
        self.every(cfg.positions.snapshot_interval_ms, self._publish_periodic)
        self.every(50, self._maybe_sync, first_in_ms=0)

    def teardown(self) -> None:
        if not getattr(self, "_setup_done", False):
            return
        self._terms.close()
        self._budget.close()
        self._requests.put(None)
        self._worker.join(timeout=2.0)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ------------------------------------------------------------------ REST resync

    def _rest_worker(self) -> None:
        """Worker thread: one REST sync per request; never touches the book."""
        while True:
            request = self._requests.get()
            if request is None:
                return
            snap = fetch_sync(self._rest, self.account, self.dex, request)
            self._results.append(snap)
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # closed at teardown: the worker's next get() is the None that ends it

    def busy(self) -> bool:
        """A REST sync or read is in flight in a worker thread (a replay steps this actor alone until done)."""
        planner = getattr(self, "planner", None)
        return (planner is not None and planner.pending) or any(
            job is not None and job.busy() for job in (getattr(self, "_terms", None), getattr(self, "_budget", None)))

    def request_resync(self, why: str) -> None:
        """Ask for a REST sync as soon as none is running."""
        if self.planner.want():
            self.log.info("resync_requested", why=why)

    def _maybe_sync(self) -> None:
        if self._held:
            for c in self._held.expire(clock.time_ns() // 1_000_000):
                self.count("close_reason_unknown")
                self._publish_close(c)
        request = self.planner.next_request(clock.monotonic_ns(), clock.time_ns() // 1_000_000,
                                            book_synced=self.book.synced, needs_resync=self.book.needs_resync,
                                            hardstop_latched=self.hardstop.latched)
        if request is not None:
            self._requests.put(request)

    def _on_rest_results(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while self._results:
            self._apply_sync(self._results.popleft())

    def _apply_sync(self, snap: RestSnapshot) -> None:
        now_ns = clock.monotonic_ns()
        if not snap.complete or snap.dex_state is None or snap.open_orders is None:
            delay_ms = self.planner.on_failed(snap.history_wanted, now_ns)
            failures = self.planner.failures
            self.count("resync_failed")
            self.log.warning("resync_failed", error=snap.error or "incomplete", failures=failures, retry_ms=delay_ms)
            if not self.book.synced and failures >= 3:
                self.set_ready(False, f"REST sync failing: {snap.error}")
            return
        now_ms = clock.time_ns() // 1_000_000
        rows = positions_from_rest(snap.dex_state)
        before = net_sizes(self.book)
        res = self.book.apply_rest_positions(rows, now_ms, requested_ms=snap.requested_ms)
        self._apply_ownership(snap, res, rows, before)
        if res.unknown:
            self.count("resync_unknown_entry_px", len(res.unknown))
            self.log.warning("resync_rows_without_entry_px", coins=res.unknown, synced=self.book.synced)
        if res.stale_skipped:
            self.count("resync_stale_skipped", len(res.stale_skipped))
            self.log.warning("resync_stale_answer", coins=res.stale_skipped)
        if res.suspect:
            self.count("resync_suspect")
        if self.planner.on_answer(res, now_ns):
            self.book.apply_rest_open_orders(open_orders_from_rest(snap.open_orders, self.assets))
        l1 = snap.l1_state.margin_summary if snap.l1_state is not None else None
        dex = snap.dex_state.margin_summary
        if dex is not None:
            self.book.set_balance(l1.account_value if l1 is not None else Decimal(0), dex.account_value)
        self._on_collateral(collateral_from_states(self.dex, snap.dex_state, snap.l1_state))
        self.count("resyncs")
        self._emit(res)
        if self.book.synced and not self.ready:
            self.set_ready(True, self._ready_detail())
        self._publish_snapshot(force=True)

    def _on_collateral(self, c: DexCollateral) -> None:
        """Keep the dex's collateral for the snapshots; say it once when it becomes (un)usable."""
        self.collateral = c
        problem = collateral_problem(c, self.cfg.collateral)
        self.planner.unfunded = bool(problem)
        self.stats["collateral_free_usd"] = int(c.withdrawable)
        changed = bool(problem) != bool(self._collateral_problem)
        self._collateral_problem = problem
        if not changed:
            return
        if problem:
            self.alert("warning", f"entries refused: {problem}")  # the one WARNING line (and status)
        else:
            self.log.info("dex_funded", dex=c.dex, withdrawable=str(c.withdrawable))
        if self.ready:
            self.set_ready(True, self._ready_detail())

    def _ready_detail(self) -> str:
        problem = self._collateral_problem
        return "REST synced" + (f"; entries refused: {problem}" if problem else "")

    # ------------------------------------------------------------------ events

    def _apply_ownership(self, snap: RestSnapshot, res: BookResult, rows: list[ExchangePosition],
                         before: dict[str, Decimal]) -> None:
        """After a resync: clamp and (with a history) rebuild hip3's part of each position; a sync that had
        to correct the book asks for the history next time (a fill reached neither stream)."""
        history = None
        if snap.fills is not None:
            history, bad = parse_history(snap.fills)
            if bad:
                self.count("history_rows_bad", bad)
        elif snap.history_wanted:
            self.planner.history_wanted = True
            self.count("history_failed")
            self.log.warning("history_failed", error=(snap.history_error or "")[:200])
        changes, uncovered = self.ownership.on_resync(res, self.book, rows, history, snap.requested_ms)
        for coin, old, new in changes:
            self.log.info("ownership_rebuilt", coin=coin, own_before=str(old), own=str(new))
        if uncovered:
            self.log.info("ownership_uncovered", coins=uncovered,
                          effect="the exchange's history does not reach the fill that opened these; the ledger stands")
        if history is None and net_sizes(self.book) != before:
            self.planner.history_wanted = True
            self.request_resync("the resync corrected a position: whose was the fill it missed")
        if snap.l1_state is not None:
            self.ownership.set_others(positions_from_rest(snap.l1_state))

    def _owned(self, res: BookResult, now_ms: int) -> BookResult:
        self.ownership.on_result(res, self.book, now_ms)
        return res

    def on_message(self, msg: Message) -> None:
        book = self.book
        now_ms = clock.time_ns() // 1_000_000
        if isinstance(msg, OrderFilled):
            self._emit(self._owned(book.on_order_filled(msg, now_ms), now_ms))
        elif isinstance(msg, UserFill):
            if msg.coin not in self.assets and not msg.coin.startswith(self._dex_prefix):
                self.count("fills_other_dex")  # never in this dex's clearinghouseState: not this book's
                return
            self._emit(self._owned(book.on_user_fill(msg, now_ms), now_ms))
            self._terms.on_fill(msg)
        elif isinstance(msg, OrderUpdate):
            book.on_order_update(msg)
        elif isinstance(msg, OrderSubmitted):
            book.on_order_submitted(msg, msg.edge_bps)
            if self._held and (c := self._held.release(msg.cloid, exit_reason_of(msg.kind, msg.reason))):
                self._publish_close(c)
        elif isinstance(msg, OrderAcked):
            book.on_order_acked(msg)
        elif isinstance(msg, OrderRejected):
            book.on_order_rejected(msg)
            if is_margin_rejection(msg.reason):  # the dex's collateral changed: see it now, not in a minute
                self.request_resync("an order was refused for insufficient margin")
        elif isinstance(msg, OrderCancelled):
            book.on_order_cancelled(msg)
        elif isinstance(msg, FeedState):
            self._on_feed_state(msg)
            return
        else:
            return
        if book.needs_resync:
            self.request_resync("book needs resync")
        self._publish_snapshot()

    def _on_feed_state(self, msg: FeedState) -> None:
        unsync, reasons = self.planner.on_feed_state(msg.conn_id, msg.user_ready, msg.state == "connected")
        if unsync and self.book.synced:
            self.book.set_synced(False)  # entries wait until the resync after the acks
            self._publish_snapshot()
        for why in reasons:
            self.request_resync(why)

    def on_hardstop(self, state: HardStopState) -> None:
        if state.latched and getattr(self, "_setup_done", False):
            self.request_resync("hard stop latched")

    # ------------------------------------------------------------------ publishing

    def _emit(self, res: BookResult) -> None:
        pub = self.positions.publish
        for f in res.fills:
            pub(f)
        for c in res.closed:
            self._publish_close(c)
        for cloid, c in res.held:  # published when their OrderSubmitted (the exit reason) arrives
            for late in self._held.hold(cloid, c, clock.time_ns() // 1_000_000):
                self._publish_close(late)

    def _publish_close(self, c: PositionClosed) -> None:
        self.count("positions_closed")
        self.log.info("position_closed", coin=c.coin, pnl_usd=str(c.pnl_usd), reason=c.exit_reason, owner=c.owner)
        self.positions.publish(c)

    def _publish_snapshot(self, force: bool = False) -> None:
        if not force and self.book.version == self._published_version:
            return
        self._published_version = self.book.version
        snap = self.book.snapshot(self.planner.synced_conn_id)
        if self.collateral is not None:
            snap = msgspec.structs.replace(snap, collateral=self.collateral)
        view = self.ownership.view(snap)
        self.positions.publish(view, state_key="positions")
        self._report_outside(view)
        if self.ownership.ledger.dirty:
            self.defer(self._save_ownership)

    def _report_outside(self, view: PositionSnapshot) -> None:
        """Each outside position once when it appears (a warning and an alert) and once when it goes."""
        appeared, gone = self.ownership.transitions(view, clock.time_ns() // 1_000_000)
        for p in appeared:
            self.count("outside_positions_seen")
            self.log.warning("outside_position", coin=p.coin, owner=p.owner, side="long" if p.is_long else "short",
                             size=str(p.size), entry_px=str(p.entry_px), action=describe(p))
            self.inbox.send(Alert(level="warning", actor=self.name,
                                  text=f"{p.coin} {'long' if p.is_long else 'short'} {p.size}: {describe(p)}"))
        for p in gone:
            self.log.info("outside_position_gone", coin=p.coin, owner=p.owner)
        self.stats["outside_positions"] = len(view.outside)

    def _save_ownership(self) -> None:
        error = self.ownership.ledger.save()
        if error is not None and not self._save_failed:
            self._save_failed = True
            self.log.error("ownership_save_failed", error=error,
                           effect="a restarted tracker would rebuild ownership from the exchange's history only")
            self.inbox.send(Alert(level="critical", actor=self.name, text=f"ownership ledger {error}"))
        elif error is None and self._save_failed:
            self._save_failed = False
            self.log.info("ownership_saved_again")

    def _publish_periodic(self) -> None:
        self._publish_snapshot(force=True)


if __name__ == "__main__":
    sys.exit(standalone_main("position_tracker"))

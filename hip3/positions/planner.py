"""The position tracker's decisions, pure (the clock is passed in): when to sync from REST, what an answer
means for the next one, and which feed connection a sync's snapshot vouches for.

* Sync at start, after every user-stream reconnect (``FeedState.conn_id`` change), again once the feed
  reports the user streams acked on the new connection (``FeedState.user_ready``), when the book asks for
  it (``needs_resync``), every ``resync_interval_s``, every second while the hard stop is latched (the
  flatten sequence ends on this view), and every ``recheck_unfunded_s`` while the dex is unfunded (a
  transfer is seen in seconds). One sync at a time.
* A failed sync is retried after 0.5 s doubling to 10 s; until the first one succeeds the tracker is not
  READY after three failures (a book never synced is empty, not flat: never trade on it).
* A suspect answer (an empty position list contradicting the book, held back by the book) is asked again
  after 300 ms; a stale one (a coin closed locally after the request) or rows without an entry price after
  1 s (the book asks; not at once, so a persistent quirk cannot spin).
* Every snapshot carries ``synced_conn_id``: the feed connection whose user streams were acked when the last
  completed sync was asked for. The detector resumes entries after a reconnect on that exact match. Why
  acked, not just connected: a fill between the reconnect and the exchange's acks reaches no stream (the
  userFills snapshot that comes with the ack is never applied), so a sync asked for before the acks could
  miss it; one asked for after them cannot. The sync right at the reconnect still runs (a fresh view for
  the exit watcher and the hard-stop flatten) but does not resume entries.
* The account's fill history (REST userFills, for ownership) is fetched by the first sync, the one after the
  user streams are acked, and again after a sync whose history failed or that corrected the book.
"""

from __future__ import annotations

from typing import NamedTuple

from hip3.positions.records import BookResult

__all__ = ["ResyncPlanner", "SyncRequest"]

HARDSTOP_RESYNC_MS = 1000
SUSPECT_RETRY_MS = 300
STALE_RETRY_MS = 1000  # a stale answer or rows without an entry price: sync again, not at once
RETRY_MAX_MS = 10_000


class SyncRequest(NamedTuple):
    """What the worker thread asks the exchange for: positions and open orders (and the history)."""

    requested_ms: int
    history_wanted: bool


class ResyncPlanner:
    def __init__(self, resync_interval_s: float, recheck_unfunded_s: float) -> None:
        self.interval_ms = resync_interval_s * 1000
        self.unfunded_interval_ms = recheck_unfunded_s * 1000
        self.unfunded = False  # the dex's collateral cannot fund an entry (the tracker says)
        self.pending = False  # a sync is in the worker thread
        self.wanted = True  # the first sync
        self.history_wanted = True  # the first sync recovers what happened while no tracker listened
        self.next_sync_ns = 0  # not before (a retry's delay)
        self.last_sync_ns = 0
        self.failures = 0  # in a row
        self.conn_id: int | None = None  # the feed's user-stream connection
        self.acked_conn_id = 0  # the latest connection whose user streams the feed reported acked
        self.sync_conn_id = 0  # the acked connection the sync in flight follows
        self.synced_conn_id = 0  # the one the last completed sync followed (stamped on every snapshot)

    def want(self) -> bool:
        """Sync as soon as none is running. True if it was not wanted already (say why once)."""
        new = not self.wanted
        self.wanted = True
        return new

    def next_request(self, now_ns: int, now_ms: int, *, book_synced: bool, needs_resync: bool,
                     hardstop_latched: bool) -> SyncRequest | None:
        """The sync to start now, or None. Called on a short timer."""
        interval_ms = self.interval_ms
        if hardstop_latched:
            interval_ms = min(interval_ms, HARDSTOP_RESYNC_MS)
        if needs_resync:
            self.wanted = True
        if self.unfunded:  # unfunded: look again soon (a transfer is seen in seconds)
            interval_ms = min(interval_ms, self.unfunded_interval_ms)
        if not self.wanted and book_synced and now_ns - self.last_sync_ns >= interval_ms * 1e6:
            self.wanted = True
        if not self.wanted or self.pending or now_ns < self.next_sync_ns:
            return None
        self.wanted = False
        self.pending = True
        self.sync_conn_id = self.acked_conn_id
        request = SyncRequest(now_ms, self.history_wanted)
        self.history_wanted = False
        return request

    def on_failed(self, history_was_wanted: bool, now_ns: int) -> int:
        """The sync failed or came back incomplete: retried after the returned delay (ms)."""
        self.pending = False
        self.failures += 1
        delay_ms = min(RETRY_MAX_MS, 250 << min(self.failures, 6))  # 0.5 s doubling
        self.next_sync_ns = now_ns + int(delay_ms * 1e6)
        self.wanted = True
        self.history_wanted = self.history_wanted or history_was_wanted
        return delay_ms

    def on_answer(self, res: BookResult, now_ns: int) -> bool:
        """A complete answer, applied to the book's positions (``res``). True if it counts as a sync (its
        open orders apply too, its snapshot vouches for ``synced_conn_id``); False if it was suspect."""
        self.pending = False
        self.failures = 0
        if res.unknown or res.stale_skipped:
            # The book asks for another sync (needs_resync); not at once, so a persistent quirk cannot spin.
            self.next_sync_ns = now_ns + STALE_RETRY_MS * 1_000_000
        if res.suspect:
            self.wanted = True
            self.next_sync_ns = now_ns + SUSPECT_RETRY_MS * 1_000_000
            return False
        self.last_sync_ns = now_ns
        self.synced_conn_id = self.sync_conn_id
        return True

    def on_feed_state(self, conn_id: int, user_ready: bool, connected: bool) -> tuple[bool, list[str]]:
        """The feed's connection state. Returns (the book must stop vouching until the next sync: a new
        connection after the first, the reasons to sync now)."""
        unsync = False
        reasons = []
        if conn_id != self.conn_id:
            previous, self.conn_id = self.conn_id, conn_id
            unsync = previous is not None  # entries wait until the resync after the acks
            reasons.append(f"user stream connection {previous} -> {conn_id}")
        if user_ready and connected and conn_id != self.acked_conn_id:
            # Everything the exchange does from now on reaches the stream: the sync asked for now is the
            # one that lets entries resume (its snapshots carry this connection).
            self.acked_conn_id = conn_id
            self.history_wanted = True  # fills before the acks reached no stream
            reasons.append(f"user streams acked on connection {conn_id}")
        return unsync, reasons

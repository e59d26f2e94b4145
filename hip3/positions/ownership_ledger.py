"""hip3's part of each position (``hip3.positions.ownership``), kept across restarts, resyncs and gaps.

The position tracker owns one ``PositionOwnership``: it feeds it every fill its book applied and every
REST resync, and publishes ``view(book.snapshot())``. Nothing here touches a socket or a clock.

Why a ledger and the exchange's history, and what happens when they disagree:

* The ledger (``own`` per coin, with the net it was computed against) is written to
  ``<run_dir>/ownership.json`` (temporary file, fsync, rename) at the end of every loop turn that changed
  it, so a tracker killed with ``kill -9`` restarts exactly where it stopped, whatever the exchange's
  history holds. A REST resync only ever clamps ``own`` (to the net the book now holds), never raises it.
* Fills that no tracker saw (during its restart, or between a user-stream reconnect and the exchange's
  acks, when nothing reaches the stream) are recovered from the exchange: the first sync of a process and
  the sync after every user-stream ack also fetch REST ``userFills`` (newest first, each with
  ``startPosition`` and ``cloid``), as does the sync after one that corrected the book. For a coin whose
  history reaches back to the fill that opened the position from flat, with every fill's start equal to
  the previous one's end and the newest ending at clearinghouseState's net, ``own`` is rebuilt from the
  history with the live rule (``own_after_fill``). Otherwise (a gap, an episode older than the history,
  a fill newer than the answer) the ledger's value stands, clamped to the net.
* In doubt, the extra is manual: in "leave" mode hip3 never flattens what it cannot show is its own. The
  cost is the reverse case: a fill of hip3's that the history does not show stays "manual" (left alone,
  entries blocked there, shown in status) until a later complete history resolves it; the
  ``ownership_uncovered`` log line names it.
* An unreadable ledger (corrupt, a directory, no permission) is reported in one line and treated as empty:
  every position is then manual until the history rebuilds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from hip3.hyperliquid.frames import WsFill
from hip3.hyperliquid.wire import is_hip3_cloid
from hip3.messages import Position, PositionClosed, PositionSnapshot
from hip3.positions import BookResult, ExchangePosition, PositionBook
from hip3.positions.ownership import ADOPTED, HIP3, MANUAL, UNCONFIGURED, Policy, clamp_own, own_after_fill, split
from hip3.runtime.durable import atomic_write

__all__ = ["FILE_NAME", "HistoryFill", "OwnershipLedger", "PositionOwnership", "parse_history", "rebuild_own"]

FILE_NAME = "ownership.json"
_VERSION = 1
_ZERO = Decimal(0)
# A part that a REST resync added (no fill seen) shows as manual at once (the safe side) but is reported
# (logged, alerted) only once a fill history has looked at it, or after this long: the history sync asked
# for right after usually shows it was hip3's (a fill in a reconnect window), and the alert would be false.
UNCONFIRMED_REPORT_MS = 10_000

# What the rebuild assumes of REST ``{"type": "userFills", "user": U}``, in one place ([UNVERIFIED] until a
# live session confirms it; if one is wrong the chain check fails and the ledger's value stands):
# * it includes the builder dex's fills (``coin`` = "dex:COIN"): observed on the WebSocket userFills
#   stream, assumed for REST (no ``dex`` parameter exists);
# * each fill carries ``startPosition``, the coin's signed position before it (observed on the stream);
# * within one millisecond, a larger ``tid`` is a later fill (fills are ordered by (time, tid));
# * each row carries the order's ``cloid`` when it had one (the JS SDK's schema says so; the Python SDK
#   passes rows through untyped): a history without any hip3 fill never lowers hip3's part (``rebuild``).
HISTORY_REQUEST_TYPE = "userFills"


class HistoryFill(msgspec.Struct, frozen=True):
    """One fill of the exchange's history, as the rebuild needs it."""

    coin: str
    signed_sz: Decimal  # > 0: a buy
    start_position: Decimal
    time_ms: int
    tid: int
    is_own: bool


def parse_history(rows: Iterable[object]) -> tuple[list[HistoryFill], int]:
    """REST ``userFills`` rows → fills; a row that does not parse or has no ``startPosition`` is counted
    (the coin's chain then breaks, and its rebuild is skipped)."""
    out: list[HistoryFill] = []
    bad = 0
    for row in rows:
        try:
            f = msgspec.convert(row, WsFill)
        except (msgspec.ValidationError, ValueError, TypeError):
            bad += 1
            continue
        if f.start_position is None:
            bad += 1
            continue
        out.append(HistoryFill(coin=f.coin, signed_sz=f.sz if f.side == "B" else -f.sz,
                               start_position=f.start_position, time_ms=f.time, tid=f.tid,
                               is_own=is_hip3_cloid(f.cloid)))
    return out, bad


def rebuild_own(fills: Sequence[HistoryFill], net: Decimal) -> Decimal | None:
    """hip3's part of a coin's position ``net`` (≠ 0) from that coin's fills (any order), or None if they
    do not cover the position's episode back to the fill that opened it, gap-free, ending at ``net``."""
    ordered = sorted(fills, key=lambda f: (f.time_ms, f.tid), reverse=True)
    episode: list[HistoryFill] = []
    expected_end = net
    for f in ordered:
        end = f.start_position + f.signed_sz
        if end != expected_end:
            return None
        episode.append(f)
        if f.start_position == 0 or (f.start_position > 0) != (end > 0):
            own = _ZERO
            for g in reversed(episode):
                own = own_after_fill(own, g.start_position, g.signed_sz, g.is_own)
            return own
        expected_end = f.start_position
    return None


class OwnershipLedger:
    """``own`` (hip3's signed part) and the net it was last computed against, per coin."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._own: dict[str, Decimal] = {}
        self._net: dict[str, Decimal] = {}
        self._fill_ms: dict[str, int] = {}  # coin -> local time of its last live fill (epoch ms)
        self._unconfirmed: dict[str, int] = {}  # coin -> since when a resync grew it with no fill seen (ms)
        self.dirty = False

    @property
    def own_by_coin(self) -> Mapping[str, Decimal]:
        return self._own

    def own(self, coin: str) -> Decimal:
        return self._own.get(coin, _ZERO)

    def confirmed(self, coin: str, now_ms: int) -> bool:
        """False while a resync grew ``coin`` with no fill seen and no history has looked at it yet."""
        since = self._unconfirmed.get(coin)
        return since is None or now_ms - since >= UNCONFIRMED_REPORT_MS

    def _set(self, coin: str, own: Decimal) -> None:
        if own == 0:
            if self._own.pop(coin, None) is not None:
                self.dirty = True
        elif self._own.get(coin) != own:
            self._own[coin] = own
            self.dirty = True

    def on_fill(self, coin: str, cloid: str | None, is_buy: bool, sz: Decimal, net_after: Decimal,
                now_ms: int) -> None:
        """One fill the book applied; ``net_after``: the book's signed position in ``coin`` after it."""
        net_before = self._net.get(coin, _ZERO)
        own = own_after_fill(self.own(coin), net_before, sz if is_buy else -sz, is_hip3_cloid(cloid))
        self._set(coin, clamp_own(own, net_after))
        if self._net.get(coin, _ZERO) != net_after:
            self._net[coin] = net_after
            self.dirty = True
        self._fill_ms[coin] = now_ms

    def on_book(self, nets: Mapping[str, Decimal], now_ms: int = 0) -> None:
        """After a REST resync: the book's signed position per coin it holds (absent = flat). ``own`` is
        only clamped here, never raised: a resync cannot say whose a change was."""
        for coin in list(self._own):
            self._set(coin, clamp_own(self._own[coin], nets.get(coin, _ZERO)))
        for coin, net in nets.items():
            before = self._net.get(coin, _ZERO)
            if net != 0 and (abs(net) > abs(before) or (net > 0) != (before > 0)):
                self._unconfirmed.setdefault(coin, now_ms)
        new = {c: n for c, n in nets.items() if n != 0}
        if new != self._net:
            self._net = new
            self.dirty = True

    def rebuild(self, history: Sequence[HistoryFill], rest_nets: Mapping[str, Decimal],
                requested_ms: int) -> tuple[list[tuple[str, Decimal, Decimal]], list[str]]:
        """Rebuild ``own`` of every coin held at the exchange (``rest_nets``, clearinghouseState) from the
        history where it covers the position. Coins with a live fill at or after ``requested_ms`` are left
        (the book's view is newer than both answers). Returns (changes (coin, old, new), uncovered coins)."""
        by_coin: dict[str, list[HistoryFill]] = {}
        for f in history:
            by_coin.setdefault(f.coin, []).append(f)
        # A history without a single fill of hip3's may not lower hip3's part: were the rows ever to come
        # without their cloid, every restart would otherwise hand hip3's positions to the operator.
        may_lower = any(f.is_own for f in history)
        changes: list[tuple[str, Decimal, Decimal]] = []
        uncovered: list[str] = []
        for coin, net in sorted(rest_nets.items()):
            if net == 0 or self._fill_ms.get(coin, -1) >= requested_ms:
                continue
            self._unconfirmed.pop(coin, None)
            rebuilt = rebuild_own(by_coin.get(coin, ()), net)
            if rebuilt is None:
                uncovered.append(coin)
                continue
            old = self.own(coin)
            new = clamp_own(rebuilt, self._net.get(coin, net))
            if abs(new) < abs(old) and not may_lower:
                uncovered.append(coin)
                continue
            if new != old:
                self._set(coin, new)
                changes.append((coin, old, new))
        return changes, uncovered

    # ------------------------------------------------------------------ persistence

    def load(self) -> str | None:
        """Read the file; None if it is fine or absent (a first start), else the problem (then empty)."""
        if self.path is None:
            return None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            return f"{self.path}: cannot read: {getattr(e, 'strerror', None) or e}"
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("version") != _VERSION:
                raise ValueError(f"not a version {_VERSION} ledger")
            own = {str(c): Decimal(str(v)) for c, v in dict(raw["own"]).items()}
            net = {str(c): Decimal(str(v)) for c, v in dict(raw["net"]).items()}
            if not all(v.is_finite() for v in (*own.values(), *net.values())):
                raise ValueError("a size is not finite")
        except (ValueError, KeyError, TypeError, InvalidOperation) as e:
            return f"{self.path}: unusable ({e})"
        self._net = {c: n for c, n in net.items() if n != 0}
        self._own = {c: o for c in own if (o := clamp_own(own[c], self._net.get(c, _ZERO))) != 0}
        self.dirty = False
        return None

    def save(self) -> str | None:
        """Write the file if anything changed (atomically); None, or the error (it stays dirty)."""
        if self.path is None or not self.dirty:
            return None
        body = json.dumps({"version": _VERSION, "own": {c: str(v) for c, v in sorted(self._own.items())},
                           "net": {c: str(v) for c, v in sorted(self._net.items())}})
        try:
            # No directory fsync: the ledger is for a killed tracker (the next process sees the rename at
            # once); a host crash that loses the rename leaves the previous ledger, which the first sync
            # reconciles with the exchange's history like any fill the tracker missed.
            atomic_write(self.path, body.encode(), sync_dir=False)
        except OSError as e:
            return f"{self.path}: cannot write: {e.strerror or e}"
        self.dirty = False
        return None


def _signed_positions(book: PositionBook) -> dict[str, Decimal]:
    return {p.coin: p.size if p.is_long else -p.size for p in book.snapshot().positions}


class PositionOwnership:
    """The tracker's side of ``hip3.positions.ownership``: the ledger, the classification it publishes, and which
    outside positions appeared or went away (so each is logged once, not per message)."""

    def __init__(self, configured: Iterable[str], policy: Policy, path: Path | None = None) -> None:
        self.configured = frozenset(configured)
        self.policy: Policy = policy
        self.ledger = OwnershipLedger(path)
        self.others: tuple[Position, ...] = ()  # positions outside the tracker's dex (display only)
        self._reported: dict[tuple[str, str], Position] = {}

    def owner_of(self, coin: str) -> str:
        """Whose ``coin``'s position is now (a close's owner is taken before its fill is applied)."""
        if coin not in self.configured:
            return UNCONFIGURED
        if self.ledger.own(coin) != 0:
            return HIP3
        return ADOPTED if self.policy == "adopt" else MANUAL

    def _tag(self, res: BookResult) -> None:
        res.closed = [c if (o := self.owner_of(c.coin)) == c.owner else msgspec.structs.replace(c, owner=o)
                      for c in res.closed]
        res.held = [(k, c if (o := self.owner_of(c.coin)) == c.owner else msgspec.structs.replace(c, owner=o))
                    for k, c in res.held]

    def on_result(self, res: BookResult, book: PositionBook, now_ms: int) -> list[PositionClosed]:
        """After the book applied a fill: its closes (held ones too) tagged with their owner, and the ledger
        updated."""
        self._tag(res)
        for f in res.fills:
            p = book.position(f.coin)
            net_after = _ZERO if p is None else (p.size if p.is_long else -p.size)
            self.ledger.on_fill(f.coin, f.cloid, f.is_buy, f.sz, net_after, now_ms)
        return res.closed + [c for _, c in res.held]

    def on_resync(self, res: BookResult, book: PositionBook, rest_rows: Sequence[ExchangePosition],
                  history: Sequence[HistoryFill] | None, requested_ms: int
                  ) -> tuple[list[tuple[str, Decimal, Decimal]], list[str]]:
        """After ``book.apply_rest_positions``: closes tagged, ``own`` clamped to the book, then rebuilt from
        the history when there is one. Returns the rebuild's (changes, uncovered coins)."""
        self._tag(res)
        self.ledger.on_book(_signed_positions(book), requested_ms)
        if history is None:
            return [], []
        rest_nets: dict[str, Decimal] = {}
        for r in rest_rows:
            rest_nets[r.coin] = rest_nets.get(r.coin, _ZERO) + r.szi
        return self.ledger.rebuild(history, rest_nets, requested_ms)

    def set_others(self, rows: Iterable[ExchangePosition]) -> None:
        """Positions outside the tracker's dex (e.g. the validator dex's clearinghouseState): shown only."""
        self.others = tuple(
            Position(coin=r.coin, asset=0, is_long=r.szi > 0, size=abs(r.szi), entry_px=r.entry_px, opened_ms=0,
                     owner=UNCONFIGURED)
            for r in rows if r.szi != 0 and r.coin not in self.configured)

    def view(self, snap: PositionSnapshot) -> PositionSnapshot:
        return split(snap, self.ledger.own_by_coin, self.configured, self.policy, self.others)

    def transitions(self, view: PositionSnapshot, now_ms: int) -> tuple[list[Position], list[Position]]:
        """Outside positions that appeared and that went away since the last synced view (by coin and
        owner; a size change is neither). Unsynced views are skipped: they may be partial. A manual part
        a resync added is reported once confirmed (``UNCONFIRMED_REPORT_MS``)."""
        if not view.synced:
            return [], []
        now = {(p.coin, p.owner): p for p in view.outside
               if p.owner != MANUAL or self.ledger.confirmed(p.coin, now_ms)}
        appeared = [p for k, p in now.items() if k not in self._reported]
        gone = [p for k, p in self._reported.items() if k not in now]
        self._reported = now
        return appeared, gone

"""The position book's REST resync, kept apart from the fills: a mixin of ``PositionBook`` over the same
state.

* A REST resync adds/updates first and removes absent positions after, never clearing first (a resync
  that cleared first let gates see "no position" and buy a $1,607 position against a $50 limit); an
  ``observer`` hook sees every intermediate state, so a gate reading snapshots mid-resync still sees
  every position that exists both before and after.
* Resync keeps local entry time, entry edge and entry cloid of positions that already exist (the exits
  depend on them).
* An empty response while the book holds positions is suspect (the exchange has answered with zero
  positions by mistake): it must arrive twice in a
  row before anything is removed; positions filled locally after the REST request are left alone, and a
  position closed locally at or after the request is not re-added from that (older) answer (it would be
  closed again, "resync", by the next sync: a second ``PositionClosed``).
* A REST row without a usable entry price (null or 0) would become entry 0, i.e. PnL = the whole notional
  on close: that coin is "unknown this round" (neither added nor removed), logged, and a resync is asked.
* Balance = L1 accountValue + dex accountValue (the dex's state alone has no balance); a sudden zero
  must be seen twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from decimal import Decimal

from hip3.messages import OpenOrder
from hip3.positions.records import BookPosition, BookResult, ExchangePosition, closed_record

__all__ = ["RestResync"]

log = logging.getLogger("hip3.positions")


class RestResync:
    """``apply_rest_positions`` / ``apply_rest_open_orders`` / ``set_synced`` / ``set_balance``."""

    assets: dict[str, int]
    synced: bool
    needs_resync: bool
    balance_usd: Decimal | None
    _pos: dict[str, BookPosition]
    _orders: dict[int, OpenOrder]
    _closed_ms: dict[str, int]
    _empty_streak: int
    _zero_balance_streak: int
    _bump: Callable[[], None]

    def apply_rest_positions(
        self, rows: Iterable[ExchangePosition], now_ms: int, *, requested_ms: int | None = None
    ) -> BookResult:
        """Resync from clearinghouseState(dex): add/update first, then remove absent, keeping local
        entry time/edge. An empty response contradicting the book is held back once.
        Positions filled locally at or after ``requested_ms`` are newer than the response: left alone;
        a coin closed locally at or after ``requested_ms`` is not re-added from it. A row without a usable
        entry price leaves its coin as it is (neither added nor removed) and asks for another resync; if
        the book was never synced it stays unsynced (a position it cannot value is not a flat market)."""
        res = BookResult()
        live: dict[str, ExchangePosition] = {}
        for r in rows:
            if r.szi == 0:
                continue
            if not r.entry_px.is_finite() or r.entry_px <= 0:
                log.warning("resync: %s szi %s has no usable entryPx (%s): left as it is this round, resync",
                            r.coin, r.szi, r.entry_px)
                res.unknown.append(r.coin)
                continue
            live[r.coin] = r
        if not live and not res.unknown and self._pos:
            self._empty_streak += 1
            if self._empty_streak < 2:
                log.warning(
                    "resync: empty position list while the book holds %s: suspect, retry", sorted(self._pos)
                )
                res.suspect = True
                return res
        else:
            self._empty_streak = 0

        def fresh(p: BookPosition) -> bool:
            return requested_ms is not None and p.last_fill_ms >= requested_ms

        for coin, r in live.items():  # phase 1: add / update
            is_long, size = r.szi > 0, abs(r.szi)
            p = self._pos.get(coin)
            if p is not None and fresh(p):
                continue
            closed_ms = self._closed_ms.get(coin)
            if p is None and requested_ms is not None and closed_ms is not None and closed_ms >= requested_ms:
                log.warning("resync: %s was closed locally at %s, after the request (%s): the answer is older, "
                            "not re-added", coin, closed_ms, requested_ms)
                res.stale_skipped.append(coin)
                continue
            if p is not None and p.is_long == is_long:
                if p.size != size or p.entry_px != r.entry_px:
                    p.size, p.entry_px, p.cost = size, r.entry_px, size * r.entry_px
                    res.changed = True
                    self._bump()
                continue
            if p is not None:  # the exchange holds the other side: the old position ended unseen
                res.closed.append(closed_record(p, "resync", now_ms))
            self._pos[coin] = BookPosition(
                coin=coin,
                asset=self.assets.get(coin, 0),
                is_long=is_long,
                size=size,
                entry_px=r.entry_px,
                cost=size * r.entry_px,
                opened_ms=now_ms,
            )
            res.changed = True
            self._bump()
        for coin in [c for c in self._pos if c not in live]:  # phase 2: remove absent
            p = self._pos[coin]
            if fresh(p) or coin in res.unknown:
                continue
            del self._pos[coin]
            log.warning("resync: %s no longer held at the exchange; removed", coin)
            res.closed.append(closed_record(p, "resync", now_ms))
            res.changed = True
            self._bump()
        # A stale or unusable answer: the next sync (requested after now) settles it.
        self.needs_resync = bool(res.unknown or res.stale_skipped)
        if not self.synced and not res.unknown:
            self.synced = True
            res.changed = True
            self._bump()
        return res

    def apply_rest_open_orders(self, orders: Iterable[OpenOrder]) -> bool:
        """Resync open orders (REST openOrders): add/update first, then remove absent."""
        new = {o.oid: o for o in orders}
        changed = False
        for oid, o in new.items():
            if self._orders.get(oid) != o:
                self._orders[oid] = o
                changed = True
                self._bump()
        for oid in [x for x in self._orders if x not in new]:
            del self._orders[oid]
            changed = True
            self._bump()
        return changed

    def set_synced(self, synced: bool) -> None:
        """False while a resync after a reconnect is pending (entries wait for it)."""
        if self.synced != synced:
            self.synced = synced
            self._bump()

    def set_balance(self, l1_account_value: Decimal, dex_account_value: Decimal) -> Decimal | None:
        """Balance = L1 + dex accountValue. A sudden zero must be seen twice; 0 means unknown."""
        total = l1_account_value + dex_account_value
        if total <= 0 and self.balance_usd is not None and self.balance_usd > 0:
            self._zero_balance_streak += 1
            if self._zero_balance_streak < 2:
                return self.balance_usd
        self._zero_balance_streak = 0
        self.balance_usd = total if total > 0 else None
        return self.balance_usd

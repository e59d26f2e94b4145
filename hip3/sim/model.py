"""The simulated HIP-3 market: a moving deployer oracle and market makers who follow it late.

This is the edge hip3 trades (the oracle moves first, market makers' quotes lag), reproduced
deterministically for a seed:

* **Oracle.** Each market's oracle is pushed every ``oracle_interval_ms`` (the deployer's ~3 s
  ``setOracle`` cadence; markets are staggered). Each push is a Gaussian random-walk step of
  ``MarketSpec.vol_bps`` (one sd), and with probability ``jump_prob`` an extra jump of a uniform
  ``jump_min_bps``..``jump_max_bps`` in a random direction. ``jump()`` forces one now (tests, control).
* **Makers.** They quote ``levels`` levels each side around a *reference* price, half the ``spread_bps``
  plus ``level_step_bps`` per level away from it, prices rounded outward to valid ticks, touch size
  worth ``touch_min_usd``..``touch_max_usd`` (deeper levels larger). The reference takes each oracle
  value only ``maker_lag_ms`` after it was pushed. So after an up-jump of J bps the stale best ask sits
  about ``J - spread/2`` bps below the new oracle until the makers catch up, and then the dislocation
  regresses. Consumed liquidity is re-posted every ``refresh_ms`` (with ``size_jitter``), at the
  makers' current reference, so the bbo also changes between oracle pushes.
* **Mark** (computed by the engine from the book): the median of oracle, best bid and best ask.

Expected dislocation rate: with the defaults, every oracle push opens a buy-side dislocation of at
least ``jump_min_bps - spread_bps/2`` with probability ``jump_prob / 2``; i.e. per market about
``jump_prob / 2 * 1000 / oracle_interval_ms`` episodes per second (tests/sim/test_model.py checks it).

The model is pure: it never reads a clock, ``step(now_ms)`` is driven by the caller (a server loop, or a
test with a virtual clock), and each market has its own ``random.Random`` seeded from (seed, index).
"""

from __future__ import annotations

import math
import random
from collections import deque

from hip3.sim.book import round_px_units
from hip3.sim.params import MarketSpec, ModelParams


class MarketModel:
    """Oracle and maker quotes of one market. Prices in ticks of 10^-(6-szDecimals), sizes in lots."""

    __slots__ = (
        "asks",
        "bids",
        "maker_ref",
        "next_oracle_ms",
        "next_refresh_ms",
        "oracle",
        "oracle_px",
        "pending",
        "rng",
        "spec",
        "sz_scale",
        "tick_scale",
    )

    def __init__(self, spec: MarketSpec, seed: int, index: int, p: ModelParams, now_ms: int) -> None:
        self.spec = spec
        self.rng = random.Random(seed * 1_000_003 + index * 7919 + 17)
        self.tick_scale: int = 10 ** (6 - spec.sz_decimals)
        self.sz_scale: int = 10**spec.sz_decimals
        self.oracle = spec.start_px
        self.oracle_px = round_px_units(self.oracle, spec.sz_decimals, up=False)
        self.maker_ref = self.oracle
        self.pending: deque[tuple[int, float]] = deque()
        self.next_oracle_ms = now_ms + int(self.rng.random() * p.oracle_interval_ms) + 1
        self.next_refresh_ms = now_ms + p.refresh_ms
        self.bids: list[tuple[int, int]] = []
        self.asks: list[tuple[int, int]] = []

    def push_oracle(self, px: float, now_ms: int, lag_ms: int) -> None:
        """A new oracle value: published now, seen by the makers ``lag_ms`` later."""
        self.oracle = px
        self.oracle_px = round_px_units(px, self.spec.sz_decimals, up=False)
        self.pending.append((now_ms + lag_ms, px))

    def requote(self, p: ModelParams) -> None:
        half = p.spread_bps / 2.0
        ref = self.maker_ref
        szd = self.spec.sz_decimals
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for k in range(p.levels):
            off = (half + k * p.level_step_bps) / 1e4
            bpx = round_px_units(ref * (1.0 - off), szd, up=False)
            apx = round_px_units(ref * (1.0 + off), szd, up=True)
            usd = self.rng.uniform(p.touch_min_usd, p.touch_max_usd) * (1.0 + 0.5 * k)
            usd *= 1.0 + p.size_jitter * (self.rng.random() - 0.5)
            if not bids or bpx < bids[-1][0]:
                bids.append((bpx, max(1, int(usd / (bpx / self.tick_scale) * self.sz_scale))))
            if not asks or apx > asks[-1][0]:
                asks.append((apx, max(1, int(usd / (apx / self.tick_scale) * self.sz_scale))))
        self.bids, self.asks = bids, asks


class Model:
    """All markets of the builder dex. ``step(now_ms)`` returns the indices whose oracle or quotes changed."""

    def __init__(self, specs: tuple[MarketSpec, ...], p: ModelParams, seed: int, now_ms: int) -> None:
        self.p = p
        self.markets = [MarketModel(s, seed, i, p, now_ms) for i, s in enumerate(specs)]
        for m in self.markets:
            m.requote(p)
        # Indices whose oracle changed / whose quotes changed since the caller last drained them.
        self.oracle_changed: set[int] = set()
        self.quotes_changed: set[int] = set(range(len(self.markets)))

    def step(self, now_ms: int) -> None:
        """Advance to ``now_ms``: oracle pushes, maker catch-ups and refreshes that are due."""
        p = self.p
        for i, m in enumerate(self.markets):
            if now_ms >= m.next_oracle_ms:
                while now_ms >= m.next_oracle_ms:
                    m.next_oracle_ms += p.oracle_interval_ms
                r = m.rng
                move = r.gauss(0.0, m.spec.vol_bps)
                if r.random() < p.jump_prob:
                    move += (1.0 if r.random() < 0.5 else -1.0) * r.uniform(p.jump_min_bps, p.jump_max_bps)
                m.push_oracle(m.oracle * math.exp(move / 1e4), now_ms, p.maker_lag_ms)
                self.oracle_changed.add(i)
            requote = False
            while m.pending and m.pending[0][0] <= now_ms:
                m.maker_ref = m.pending.popleft()[1]
                requote = True
            if now_ms >= m.next_refresh_ms:
                m.next_refresh_ms = now_ms + p.refresh_ms
                requote = True
            if requote:
                m.requote(p)
                self.quotes_changed.add(i)

    def jump(self, i: int, bps: float, now_ms: int) -> None:
        """Force an oracle jump of ``bps`` (signed) on market ``i`` now; the makers follow after the lag."""
        m = self.markets[i]
        m.push_oracle(m.oracle * (1.0 + bps / 1e4), now_ms, self.p.maker_lag_ms)
        self.oracle_changed.add(i)

    def set_oracle(self, i: int, px: float, now_ms: int, lag_ms: int | None = None) -> None:
        """Set market ``i``'s oracle to ``px`` now (makers follow after ``lag_ms``, default the model lag)."""
        m = self.markets[i]
        m.push_oracle(px, now_ms, self.p.maker_lag_ms if lag_ms is None else lag_ms)
        self.oracle_changed.add(i)

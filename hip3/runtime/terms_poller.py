"""The market-terms poll: reads fees and open-interest caps from the exchange and publishes them as state.

Runs inside the position tracker (which already owns REST and the ``positions`` publisher the detector
and the executor subscribe to) as its own small job: its own worker thread (``RestJob``), its own timer
and its own pipe, so a slow read never delays a position resync and the tracker's sync code is untouched.
The decisions (how answers become ``MarketTerms``, what a failure means) are ``hip3.account.market_terms``.

* Full read (userFees, perpDexs, metaAndAssetCtxs, perpDexLimits, perpsAtOpenInterestCap) at start and
  every ``refresh_interval_s``; the "at cap" list alone every ``at_cap_refresh_interval_s``.
* A failed read keeps the last good terms (published again with ``error``) and is retried after 1 s,
  doubling up to the read's interval; consumers stop entries once the last success is too old.
* Published on ``positions`` with state key ``terms`` (late joiners get it) on every read.
* Every fill is checked against the model (``fee_mismatch``): a divergence is logged at WARNING (at most
  once per market between two full reads) and counted, so the first live session shows whether the
  model matches what the exchange charged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from hip3 import clock
from hip3.account.market_terms import MarketTermsParams, RawTerms, TermsError, apply_at_cap, build_terms, fee_mismatch
from hip3.hyperliquid.rest import RestClient
from hip3.messages import MarketTerms, UserFill
from hip3.runtime.bus import Publisher
from hip3.runtime.rest_job import JobResult, RestJob

if TYPE_CHECKING:
    from hip3.runtime.actor import Actor

__all__ = ["TermsPoller", "fetch_raw_terms"]

_RETRY_BASE_MS = 1000
_TICK_MS = 250


def fetch_raw_terms(rest: RestClient, dex: str, account: str | None) -> RawTerms:
    """One full read (blocking: a worker thread, or an actor's setup)."""
    return RawTerms(
        perp_dexs=rest.perp_dexs(),
        meta_and_ctxs=rest.meta_and_asset_ctxs(dex),
        dex_limits=rest.perp_dex_limits(dex),
        at_cap=rest.perps_at_open_interest_cap(dex),
        user_fees=rest.user_fees(account) if account else None,
    )


class TermsPoller:
    def __init__(self, actor: Actor, publisher: Publisher, rest: RestClient, dex: str, account: str,
                 coins: Sequence[str], params: MarketTermsParams) -> None:
        self._actor = actor
        self._pub = publisher
        self._rest = rest
        self._dex = dex
        self._account = account
        self._coins = tuple(coins)
        self.params = params
        self.terms: MarketTerms | None = None
        self._job = RestJob(f"hip3:{actor.name}:terms")
        self._next_full_ms = 0
        self._next_caps_ms = 0
        self._failures = {"full": 0, "caps": 0}  # failed reads in a row, per kind
        self._mismatch_reported: set[str] = set()
        actor.add_reader(self._job.fd, self._on_results)
        actor.every(_TICK_MS, self._tick, first_in_ms=0)

    def busy(self) -> bool:
        """A read is in flight (a replay steps the actor alone until it is done)."""
        return self._job.in_flight

    def close(self) -> None:
        self._job.close()

    # ------------------------------------------------------------------ reads

    def _tick(self) -> None:
        now_ms = clock.time_ns() // 1_000_000
        if self._job.in_flight:
            return
        rest, dex, account = self._rest, self._dex, self._account
        if now_ms >= self._next_full_ms:
            self._job.submit("full", lambda: fetch_raw_terms(rest, dex, account))
        elif self.terms is not None and self.terms.fees_ms > 0 and now_ms >= self._next_caps_ms:
            self._job.submit("caps", lambda: rest.perps_at_open_interest_cap(dex))

    def _on_results(self) -> None:
        for res in self._job.take():
            self._apply(res, clock.time_ns() // 1_000_000)

    def _apply(self, res: JobResult, now_ms: int) -> None:
        p = self.params
        error = res.error
        if not error:
            try:
                if res.tag == "full":
                    self.terms = build_terms(res.value, self._dex, self._coins, now_ms)
                    self._mismatch_reported.clear()
                elif self.terms is not None:
                    self.terms = apply_at_cap(self.terms, res.value, self._dex, now_ms)
            except TermsError as e:
                error = str(e)
        failures = self._failures[res.tag]
        if error:
            self._failures[res.tag] = failures + 1
            interval_s = p.refresh_interval_s if res.tag == "full" else p.at_cap_refresh_interval_s
            delay_ms = min(int(interval_s * 1000), _RETRY_BASE_MS * 2 ** min(failures, 10))
            if res.tag == "full":
                self._next_full_ms = now_ms + delay_ms
            else:
                self._next_caps_ms = now_ms + delay_ms
            self._actor.count("terms_read_failed")
            if failures == 0:  # one WARNING per outage, not per retry
                self._actor.log.warning("market_terms_read_failed", read=res.tag, error=error[:300], retry_ms=delay_ms)
            last = self.terms or MarketTerms(fees_ms=0, caps_ms=0, user_cross_rate=0.0, user_add_rate=0.0,
                                             referral_discount=0.0, dex_oi_cap_usd=0.0, dex_oi_usd=0.0, markets=())
            # Without the read's kind: the text shows in READY details, which are logged when they change.
            self.terms = msgspec.structs.replace(last, error=f"read failed: {error[:200]}")
        else:
            self._failures[res.tag] = 0
            if res.tag == "full":
                self._next_full_ms = now_ms + int(p.refresh_interval_s * 1000)
            self._next_caps_ms = now_ms + int(p.at_cap_refresh_interval_s * 1000)
            self._actor.count(f"terms_read_{res.tag}")
            if failures or res.tag == "full":
                self._log_terms(recovered=failures > 0)
        assert self.terms is not None
        at_cap = sum(1 for m in self.terms.markets if m.at_oi_cap)
        self._actor.stats["markets_at_oi_cap"] = at_cap
        self._pub.publish(self.terms, state_key="terms")

    def _log_terms(self, *, recovered: bool) -> None:
        t = self.terms
        if t is None:
            return
        self._actor.log.info(
            "market_terms", recovered=recovered, user_cross_rate=t.user_cross_rate, referral=t.referral_discount,
            taker_fee_bps={m.coin: round(m.taker_fee_bps, 4) for m in t.markets},
            scale={m.coin: f"{m.deployer_fee_scale:g}/{m.scale_source}" for m in t.markets},
            growth_mode=[m.coin for m in t.markets if m.growth_mode],
            at_oi_cap=[m.coin for m in t.markets if m.at_oi_cap])

    # ------------------------------------------------------------------ the model against real fills

    def on_fill(self, fill: UserFill) -> None:
        """Compare a live fill's fee with the model (snapshot fills are history: skipped)."""
        t = self.terms
        if fill.is_snapshot or t is None or t.fees_ms <= 0 or fill.coin in self._mismatch_reported:
            return
        term = next((m for m in t.markets if m.coin == fill.coin), None)
        if term is None:
            return
        text = fee_mismatch(term, fill.px, fill.sz, fill.fee, fill.crossed, self.params.fee_mismatch_tolerance)
        if text is not None:
            self._mismatch_reported.add(fill.coin)
            self._actor.count("fee_model_mismatch")
            self._actor.log.warning("fee_model_mismatch", detail=text, tid=fill.tid)


"""Market terms for unit tests: a ``MarketTerms`` message and a ``TermsView`` that knows it."""

from __future__ import annotations

from collections.abc import Iterable

from hip3.account.market_terms import MarketTermsParams, TermsView
from hip3.messages import MarketTerm, MarketTerms

T0_MS = 1_700_000_000_000


def terms_msg(coins: Iterable[str], taker_bps: float = 2.0, *, at_cap: Iterable[str] = (), oi_cap_usd: float = 0.0,
              fees_ms: int = T0_MS, caps_ms: int | None = None, source: str = "exchange") -> MarketTerms:
    capped = set(at_cap)
    markets = tuple(MarketTerm(coin=c, taker_fee_bps=taker_bps, maker_fee_bps=taker_bps / 3, deployer_fee_scale=1.0,
                               scale_source="meta", growth_mode=False, fee_source=source, oi_cap_usd=oi_cap_usd,
                               at_oi_cap=c in capped) for c in coins)
    return MarketTerms(fees_ms=fees_ms, caps_ms=fees_ms if caps_ms is None else caps_ms, user_cross_rate=0.00045,
                       user_add_rate=0.00015, referral_discount=0.0, dex_oi_cap_usd=0.0, dex_oi_usd=0.0,
                       markets=markets)


def known_terms(coins: Iterable[str], taker_bps: float = 2.0, *, static: bool = True,
                params: MarketTermsParams | None = None, **kw: object) -> TermsView:
    """A view holding fresh terms for ``coins`` (``static``: their age never blocks; unit tests drive time
    by hand)."""
    coins = tuple(coins)
    view = TermsView(params or MarketTermsParams(), coins, static=static)
    view.update(terms_msg(coins, taker_bps, **kw))  # type: ignore[arg-type]
    return view

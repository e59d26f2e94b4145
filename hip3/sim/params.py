"""Simulator parameters: one msgspec Struct decoded from the bot config's free-form ``[sim]`` table.

Unknown keys are an error (a misspelt knob must not silently fall back to a default), both when decoding
a TOML file (``SimParams.from_toml``) and when the bot hands its ``sim`` dict over (``SimParams.from_dict``).
Times are milliseconds, rates are fractions unless named ``_bps``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from hip3.bounds import MAX_BPS, MAX_COUNT, MAX_FLOAT, MAX_USD
from hip3.hyperliquid.rules import REDUCE_ONLY_MIN_VALUE, ReduceOnlyMinValue

# Bounded above too (``hip3.bounds``): every number of the bot's config, ``[sim]`` included, is finite
# and in range, so a typo fails the start with the key named instead of a simulator that hangs or dies.
NonNeg = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Positive = Annotated[int, msgspec.Meta(gt=0, le=1_000_000_000)]
Prob = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Bps = Annotated[float, msgspec.Meta(ge=0, le=MAX_BPS)]


class SimParamsError(ValueError):
    """A simulator configuration that cannot be used, with the offending key in the message."""


class _P(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class MarketSpec(_P, frozen=True):
    """One HIP-3 market of the builder dex: full name ``dex:NAME``, size decimals, start price."""

    name: str
    sz_decimals: Annotated[int, msgspec.Meta(ge=0, le=5)]
    start_px: Annotated[float, msgspec.Meta(gt=0, le=MAX_FLOAT)]
    max_leverage: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    # Per-oracle-update volatility of the random walk, bps (one standard deviation).
    vol_bps: Bps = 3.0


# Meta universe order is deliberately NOT alphabetical: an asset id from a sorted list trades the wrong
# market, and this catches it.
DEFAULT_MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec("xyz:XYZ100", 4, 25400.0, 20),
    MarketSpec("xyz:TSLA", 3, 431.0, 10),
    MarketSpec("xyz:NVDA", 3, 188.2, 10),
    MarketSpec("xyz:GOLD", 4, 4012.5, 20),
    MarketSpec("xyz:AAPL", 3, 231.4, 10),
    MarketSpec("xyz:MSFT", 3, 512.3, 10),
    MarketSpec("xyz:GOOGL", 3, 251.7, 10),
    MarketSpec("xyz:AMZN", 3, 222.8, 10),
    MarketSpec("xyz:META", 3, 702.1, 10),
    MarketSpec("xyz:HOOD", 2, 118.6, 10),
    MarketSpec("xyz:PLTR", 2, 178.9, 10),
    MarketSpec("xyz:COIN", 3, 331.2, 10),
    MarketSpec("xyz:INTC", 2, 24.12, 10),
    MarketSpec("xyz:AMD", 3, 162.4, 10),
    MarketSpec("xyz:MSTR", 3, 338.5, 10),
    MarketSpec("xyz:NFLX", 4, 1203.0, 10),
    MarketSpec("xyz:ORCL", 3, 291.3, 10),
    MarketSpec("xyz:SILVER", 2, 48.35, 20, 4.0),
    MarketSpec("xyz:RIVN", 1, 13.42, 10, 5.0),
    MarketSpec("xyz:CL", 2, 61.87, 20, 4.0),
    MarketSpec("xyz:COPPER", 1, 4.9125, 20, 4.0),
    MarketSpec("xyz:NATGAS", 1, 3.0215, 10, 6.0),
    MarketSpec("xyz:PLATINUM", 3, 1552.0, 20),
    MarketSpec("xyz:EUR", 0, 1.1673, 20, 1.5),
    MarketSpec("xyz:BABA", 2, 171.8, 10),
)

# Validator (first) dex: a small universe so that meta/clearinghouseState without dex look real.
DEFAULT_VALIDATOR_MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec("BTC", 5, 111000.0, 40),
    MarketSpec("ETH", 4, 4300.0, 25),
)


class ModelParams(_P, frozen=True):
    """The market model (see hip3.sim.model for what each knob does)."""

    tick_ms: Positive = 50
    oracle_interval_ms: Positive = 3000
    jump_prob: Prob = 0.02
    jump_min_bps: Bps = 30.0
    jump_max_bps: Bps = 120.0
    maker_lag_ms: NonNeg = 800
    spread_bps: Annotated[float, msgspec.Meta(gt=0, le=MAX_BPS)] = 6.0
    levels: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    level_step_bps: Annotated[float, msgspec.Meta(gt=0, le=MAX_BPS)] = 4.0
    touch_min_usd: Annotated[float, msgspec.Meta(gt=0, le=MAX_USD)] = 500.0
    touch_max_usd: Annotated[float, msgspec.Meta(gt=0, le=MAX_USD)] = 20000.0
    # Makers re-post consumed liquidity (at their current, possibly stale, reference) this often.
    refresh_ms: Positive = 1000
    # Size jitter on every refresh, so the bbo changes between oracle updates.
    size_jitter: Prob = 0.2


class FeeParams(_P, frozen=True):
    """The fee inputs the simulator charges from and serves (``userFees``, ``meta``, ``perpDexs``).

    A fill costs ``hip3.hyperliquid.fees.hip3_fee_rates`` of these (the exchange's formula): tier 0, scale
    1.0 and no growth mode by default, i.e. taker 0.090 % and maker 0.030 %.
    """

    user_cross_rate: Annotated[float, msgspec.Meta(ge=0.0, le=0.01)] = 0.00045
    user_add_rate: Annotated[float, msgspec.Meta(ge=-0.01, le=0.01)] = 0.00015
    referral_discount: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0
    # The dex-level scale (perpDexs ``deployerFeeScale``) and per-market ones (meta ``deployerFeeScale``).
    dex_deployer_fee_scale: Annotated[float, msgspec.Meta(ge=0.0, lt=10.0)] = 1.0
    deployer_fee_scale: dict[str, Annotated[float, msgspec.Meta(ge=0.0, lt=10.0)]] = {}
    # Markets in growth mode (meta ``growthMode: "enabled"``).
    growth_mode: tuple[str, ...] = ()
    # Whether meta reports the per-market scale (False: only perpDexs does, as older answers did).
    meta_reports_scale: bool = True
    # Whether perpDexs reports the dex-level scale.
    perp_dexs_reports_scale: bool = True


class OiParams(_P, frozen=True):
    """Open-interest caps (notional, USD) the simulator enforces and reports like the exchange
    (``perpDexLimits``, ``perpsAtOpenInterestCap``, ``perpDexs.assetToStreamingOiCap``, the refusal texts).

    Open interest = other traders' (``other_oi_usd`` at the start price, in base units) + the sum of every
    account's absolute position, valued at the mark.
    """

    cap_usd: Annotated[float, msgspec.Meta(gt=0.0)] = 50_000_000.0  # every market's cap unless overridden
    caps_usd: dict[str, Annotated[float, msgspec.Meta(gt=0.0)]] = {}
    total_cap_usd: Annotated[float, msgspec.Meta(gt=0.0)] = 1_000_000_000.0
    other_oi_usd: dict[str, Annotated[float, msgspec.Meta(ge=0.0)]] = {}
    # Markets whose opening orders are refused "Order would increase open interest too quickly".
    increase_too_quickly: tuple[str, ...] = ()


class FaultParams(_P, frozen=True):
    """Initial fault-injection state (all off). The same switches exist at run time."""

    stalled_channels: tuple[str, ...] = ()
    post_delay_ms: NonNeg = 0
    reject_posts: bool = False
    reject_text: str = "Simulated rejection"
    rate_limit_actions: bool = False
    rate_limit_http: bool = False
    malformed_every: NonNeg = 0
    user_subscribe_delay_ms: NonNeg = 0


class SimParams(_P, frozen=True):
    """Everything the simulator can be told. Decode with ``from_dict`` / ``from_toml``."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    dex: str = "xyz"
    # Signature source the sim accepts: False = testnet "b" (what the SDK signs for any base URL that is not
    # exactly https://api.hyperliquid.xyz, hence for the sim), True = mainnet "a".
    is_mainnet: bool = False
    markets: tuple[MarketSpec, ...] = DEFAULT_MARKETS
    validator_markets: tuple[MarketSpec, ...] = DEFAULT_VALIDATOR_MARKETS
    model: ModelParams = ModelParams()
    faults: FaultParams = FaultParams()
    fees: FeeParams = FeeParams()
    oi: OiParams = OiParams()
    min_notional_usd: Annotated[float, msgspec.Meta(ge=0, le=MAX_USD)] = 10.0
    # [UNVERIFIED] band behind "Order price too far from oracle": |px/oracle - 1| must be <= this.
    oracle_band: Annotated[float, msgspec.Meta(gt=0, le=1.0)] = 0.95
    default_leverage: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    # Status for an ALO order that rests: "resting" ({"resting":{"oid"}}, docs) or "success" (bare, [OBS]).
    alo_status: Literal["resting", "success"] = "resting"
    # Minimum spacing of l2Book pushes per market (the exchange: about 500 ms).
    l2_min_interval_ms: NonNeg = 500
    # Close a WebSocket whose unsent output exceeds this (a slow client), bytes.
    max_ws_buffer: Positive = 16 * 1024 * 1024
    nonce_window: Positive = 100
    # The address request budget (hip3.sim.limits): requests every address starts with before it has
    # traded (the exchange: 10,000; tests set a few to exhaust it quickly), plus one per USDC traded.
    request_budget_initial: Annotated[int, msgspec.Meta(ge=0, le=10**12)] = 10_000
    # The dead man's switch is refused below this lifetime volume (the exchange: $1,000,000, so a new
    # account cannot arm it; 0 lets a paper session arm it) and after this many triggers in a UTC day.
    schedule_cancel_min_volume_usd: Annotated[float, msgspec.Meta(ge=0, le=MAX_USD)] = 1_000_000.0
    schedule_cancel_daily_limit: Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)] = 10
    # The simulated exchange's clock = the host's + this (ms): every timestamp it emits and every time
    # check it makes (nonce window, expiresAfter, scheduleCancel) use it. Tests of a skewed host.
    clock_offset_ms: Annotated[int, msgspec.Meta(ge=-86_400_000, le=86_400_000)] = 0
    # Where ``--fund`` and the ``fund`` command credit USDC: the builder dex ("dex", so a paper session
    # trades at once) or the validator perp dex ("perp": where a real deposit lands; the builder dex then
    # refuses orders with "Insufficient margin to place order." until a sendAsset moves USDC there).
    funds_on: Literal["dex", "perp"] = "dex"
    # A reduce-only order below ``min_notional_usd``: refused ("enforced"), accepted when it closes the
    # whole position ("exempt_full_close") or always accepted ("exempt"). Default: hip3's [UNVERIFIED]
    # reading of the exchange (``hip3.hyperliquid.rules``).
    reduce_only_min_value: ReduceOnlyMinValue = REDUCE_ONLY_MIN_VALUE

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimParams:
        """Validate the bot's ``sim`` table; unknown or mistyped keys raise SimParamsError naming the key."""
        try:
            p = msgspec.convert(d, cls)
        except msgspec.ValidationError as e:
            raise SimParamsError(f"sim config error: {e}") from None
        p.check()
        return p

    @classmethod
    def from_toml(cls, path: str | Path) -> SimParams:
        """Read the ``[sim]`` table of a TOML file (the whole file if it has no ``sim`` table)."""
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        table = doc.get("sim", doc)
        if not isinstance(table, dict):
            raise SimParamsError(f"sim config error in {path}: [sim] must be a table")
        return cls.from_dict(table)

    def check(self) -> None:
        """Cross-field rules msgspec cannot express."""
        names = [m.name for m in self.markets]
        if len({n.lower() for n in names}) != len(names):
            raise SimParamsError("sim config error: duplicate market names in `markets`")
        for n in names:
            if not n.startswith(self.dex + ":"):
                raise SimParamsError(f"sim config error: `markets`: {n!r} must be named {self.dex}:NAME")
        if not self.markets:
            raise SimParamsError("sim config error: `markets` is empty")
        if self.model.jump_max_bps < self.model.jump_min_bps:
            raise SimParamsError("sim config error: must be >= model.jump_min_bps - at `$.model.jump_max_bps`")
        if self.model.touch_max_usd < self.model.touch_min_usd:
            raise SimParamsError("sim config error: must be >= model.touch_min_usd - at `$.model.touch_max_usd`")
        known = set(names)
        for key, coins in (("fees.deployer_fee_scale", self.fees.deployer_fee_scale),
                           ("fees.growth_mode", self.fees.growth_mode), ("oi.caps_usd", self.oi.caps_usd),
                           ("oi.other_oi_usd", self.oi.other_oi_usd),
                           ("oi.increase_too_quickly", self.oi.increase_too_quickly)):
            unknown = [c for c in coins if c not in known]
            if unknown:
                raise SimParamsError(f"sim config error: unknown markets {unknown} - at `$.{key}`")

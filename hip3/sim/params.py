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

from hip3.hyperliquid.rules import REDUCE_ONLY_MIN_VALUE, ReduceOnlyMinValue

NonNeg = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(gt=0)]
Prob = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class SimParamsError(ValueError):
    """A simulator configuration that cannot be used, with the offending key in the message."""


class _P(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class MarketSpec(_P, frozen=True):
    """One HIP-3 market of the builder dex: full name ``dex:NAME``, size decimals, start price."""

    name: str
    sz_decimals: Annotated[int, msgspec.Meta(ge=0, le=5)]
    start_px: Annotated[float, msgspec.Meta(gt=0)]
    max_leverage: Annotated[int, msgspec.Meta(ge=1)] = 10
    # Per-oracle-update volatility of the random walk, bps (one standard deviation).
    vol_bps: Annotated[float, msgspec.Meta(ge=0)] = 3.0


# Meta universe order is deliberately NOT alphabetical (lesson B13: never sort the universe).
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
    jump_min_bps: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    jump_max_bps: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    maker_lag_ms: NonNeg = 800
    spread_bps: Annotated[float, msgspec.Meta(gt=0)] = 6.0
    levels: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    level_step_bps: Annotated[float, msgspec.Meta(gt=0)] = 4.0
    touch_min_usd: Annotated[float, msgspec.Meta(gt=0)] = 500.0
    touch_max_usd: Annotated[float, msgspec.Meta(gt=0)] = 20000.0
    # Makers re-post consumed liquidity (at their current, possibly stale, reference) this often.
    refresh_ms: Positive = 1000
    # Size jitter on every refresh, so the bbo changes between oracle updates.
    size_jitter: Prob = 0.2


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
    port: NonNeg = 0
    dex: str = "xyz"
    # Signature source the sim accepts: False = testnet "b" (what the SDK signs for any base URL that is not
    # exactly https://api.hyperliquid.xyz, hence for the sim), True = mainnet "a".
    is_mainnet: bool = False
    markets: tuple[MarketSpec, ...] = DEFAULT_MARKETS
    validator_markets: tuple[MarketSpec, ...] = DEFAULT_VALIDATOR_MARKETS
    model: ModelParams = ModelParams()
    faults: FaultParams = FaultParams()
    taker_fee_rate: Annotated[float, msgspec.Meta(ge=0)] = 0.0009
    maker_fee_rate: float = 0.0003
    min_notional_usd: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    # [UNVERIFIED] band behind "Order price too far from oracle": |px/oracle - 1| must be <= this.
    oracle_band: Annotated[float, msgspec.Meta(gt=0)] = 0.95
    default_leverage: Annotated[int, msgspec.Meta(ge=1)] = 10
    # Status for an ALO order that rests: "resting" ({"resting":{"oid"}}, docs) or "success" (bare, [OBS]).
    alo_status: Literal["resting", "success"] = "resting"
    # Minimum spacing of l2Book pushes per market (the exchange: about 500 ms).
    l2_min_interval_ms: NonNeg = 500
    # Close a WebSocket whose unsent output exceeds this (a slow client), bytes.
    max_ws_buffer: Positive = 16 * 1024 * 1024
    nonce_window: Positive = 100
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
            raise SimParamsError("sim config error: `model.jump_max_bps` < `model.jump_min_bps`")
        if self.model.touch_max_usd < self.model.touch_min_usd:
            raise SimParamsError("sim config error: `model.touch_max_usd` < `model.touch_min_usd`")

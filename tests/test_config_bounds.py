"""Every numeric key of the config, tried at 0, a negative, a huge, an infinite and a NaN value.

Each value is either refused at load with one ``ConfigError`` line naming the key and the file, or the
(key, value kind) pair is listed in ``ALLOWED`` below with the reason it is harmless. The keys are found
by walking the config Structs (``Config`` and the simulator's ``SimParams``), so a key added later is
tried too, and the test says what to do about it. A value that switches a safety mechanism off (an
infinite cap, a timeout that never fires, a flatten priced at zero) must never be accepted.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Iterator
from types import NoneType, UnionType
from typing import Any

import msgspec
import pytest

from hip3.config import Config, ConfigError, parse_config
from hip3.sim.params import SimParams
from tests.fuzz.test_config import to_toml

SOURCE = "/etc/hip3/bounds-check.toml"
BASE: dict[str, Any] = {"mode": "paper", "run_dir": "/tmp/h3-config-bounds", "exchange": {"network": "sim"},
                        "markets": [{"coin": "xyz:GOLD"}], "logging": {"stderr": False}}
KINDS = ("zero", "negative", "huge", "inf", "-inf", "nan")

# (key, kind) -> why that value is harmless. Keys are dotted; ``[]`` stands for an element of a list.
# Review every addition: a value that turns a limit, a timeout or a gate off does not belong here.
_STRATEGY = "an entry filter or threshold of the strategy; 0 lets more signals through, and every entry still " \
            "passes the executor's caps, the hard stop and the loss limits"
_EXIT_SOONER = "an exit parameter; 0 only makes the exit fire sooner (no minimum hold, no extra margin)"
_STRICT = "the strictest setting: the first such event latches the hard stop"
_SIM = "simulator only (paper mode): a valid market model or fault switch (0 = off), never a real exchange"
ALLOWED: dict[tuple[str, str], str] = {
    ("bus.linger_ms", "zero"): "a closing socket drops what it has not sent; only shutdown-time messages "
                               "(READY false, last heartbeat) can be lost, nothing waits for them",
    ("supervisor.restart_jitter", "zero"): "restarts without jitter: the same backoff, only not spread",
    ("supervisor.max_restarts", "zero"): "the first crash of an actor latches the hard stop; the actors the "
                                         "flatten needs are restarted regardless",
    ("metrics.port", "zero"): "documented: any free port, shown by `status`",
    ("logging.max_file_mb", "zero"): "documented 0 = the log files never rotate (the operator's rotation, e.g. "
                                     "logrotate with copytruncate, or none); no trading limit depends on it",
    ("oracle.min_move_bps", "zero"): _STRATEGY,
    ("gates.max_bbo_age_ms", "zero"): "documented 0 = off: the IOC's limit still bounds the fill, and the "
                                      "oracle-age gate (never off) and the feed's stall detection still block "
                                      "entries on a dead feed",
    ("gates.max_mark_mid_divergence_bps", "zero"): "documented 0 = off (the original ran without it); the "
                                                   "IOC's limit and the oracle-age gate still apply",
    ("gates.spread_shock_size_factor", "zero"): "a spread shock shrinks the entry to zero: no entry (stricter)",
    ("gates.max_open_interest_usd", "zero"): "documented 0 = no cap of hip3's own; the exchange enforces its "
                                             "open-interest caps itself",
    ("detector.slippage_bps", "zero"): "a cost estimate in the entry threshold, not a limit: " + _STRATEGY,
    ("detector.min_edge_bps", "zero"): _STRATEGY,
    ("detector.spread_threshold_multiplier", "zero"): _STRATEGY,
    ("detector.max_entry_spread_bps", "zero"): "documented 0 = no spread filter: " + _STRATEGY,
    ("detector.min_oracle_change_bps", "zero"): _STRATEGY,
    ("detector.min_consecutive_oracle_moves", "zero"): _STRATEGY,
    ("detector.min_quote_lag_ms", "zero"): "documented 0 = no minimum: " + _STRATEGY,
    ("detector.max_quote_lag_ms", "zero"): "documented 0 = no maximum: " + _STRATEGY,
    ("detector.min_edge_velocity_bps", "zero"): _STRATEGY,
    ("detector.min_edge_above_baseline_bps", "zero"): _STRATEGY,
    ("detector.min_confidence_entry", "zero"): _STRATEGY,
    ("detector.min_book_notional_usd", "zero"): _STRATEGY,
    ("detector.persist_dedup_window_ms", "zero"): "no signal de-duplication; the executor still refuses a second "
                                                  "entry in a market with a position or a pending order",
    ("exits.mark_regression.exit_threshold_bps", "zero"): _EXIT_SOONER,
    ("exits.mark_regression.min_holding_time_ms", "zero"): _EXIT_SOONER,
    ("exits.mark_regression.quick_profit_bps", "zero"): "documented 0 = no quick profit take; the other exits "
                                                        "and the time stop still apply",
    ("exits.mark_regression.quick_profit_min_holding_ms", "zero"): _EXIT_SOONER,
    ("exits.mark_regression.edge_evap_min_holding_ms", "zero"): _EXIT_SOONER,
    ("exits.mark_regression.edge_evap_threshold_bps", "zero"): "the exit level sits at the oracle: " + _EXIT_SOONER,
    ("exits.mark_regression.edge_evap_threshold_bps", "negative"): "the exit level sits beyond the oracle on the "
                                                                   "entry's side: the exit fires sooner still",
    ("exits.mark_regression.min_loss_exit_bps", "zero"): "documented 0 = no small-loss hold: " + _EXIT_SOONER,
    ("exits.mark_regression.entry_edge_scale_factor", "zero"): "the threshold is not raised by the entry edge: "
                                                               + _EXIT_SOONER,
    ("exits.mark_regression.decay_start_ms", "zero"): "the threshold decays from the start: " + _EXIT_SOONER,
    ("exits.mark_regression.min_decay_factor", "zero"): "the decayed threshold may reach 0: " + _EXIT_SOONER,
    ("exits.mark_regression.decay_horizon_ms", "zero"): "documented 0 = the configured time stop",
    ("exits.oracle_exit.min_holding_time_ms", "zero"): _EXIT_SOONER,
    ("exits.oracle_exit.high_edge_bps", "zero"): "every entry counts as high edge for the dynamic thresholds, "
                                                 "which only applies when they are on; the time stop still applies",
    ("exits.trailing.activation_bps", "zero"): "the trail is active from the entry: " + _EXIT_SOONER,
    ("exits.trailing.runner_activation_bps", "zero"): "the trail is active from the entry: " + _EXIT_SOONER,
    ("executor.min_shrunk_notional_usd", "zero"): "a shrunk order must still reach exchange_min_notional_usd",
    ("executor.exchange_min_notional_usd", "zero"): "an order under the exchange's minimum is refused by the "
                                                    "exchange itself (benign minTradeNtlRejected); nothing unsafe "
                                                    "leaves, it only wastes a request",
    ("executor.max_requeues", "zero"): "a flatten is given up at its first failed send, counted as a flatten "
                                       "failure (towards the hard stop): stricter",
    ("executor.sign_nonce_pool", "zero"): "documented 0 = sign with RFC 6979 nonces only (slower, as safe)",
    ("risk.max_consecutive_failures", "zero"): _STRICT,
    ("risk.max_flatten_failed", "zero"): _STRICT,
    ("risk.max_rejections_per_bucket", "zero"): _STRICT,
    ("risk.max_slippage_bps", "zero"): "every adverse entry counts towards the slippage trigger: stricter",
    ("soft_gates.burst.bypass_edge_bps", "zero"): "documented 0 = no bypass of the burst gate: stricter",
    ("soft_gates.market_health.enable_at_score", "zero"): "a disabled market is re-enabled by its next close "
                                                          "(it is re-probed after reprobe_after_ms anyway)",
    ("soft_gates.market_health.win_rate_weight", "zero"): "the score is the PnL quality alone; the gate still "
                                                          "disables markets below disable_below_score",
    ("soft_gates.market_health.pnl_weight", "zero"): "the score is the win rate alone; the gate still disables "
                                                     "markets below disable_below_score",
    ("recorder.commit_interval_ms", "zero"): "documented: commit after every drained batch (more durable)",
    ("sim.port", "zero"): "documented: any free port (the supervisor tells the actors which)",
    ("sim.markets[].sz_decimals", "zero"): _SIM,
    ("sim.markets[].vol_bps", "zero"): _SIM,
    ("sim.validator_markets[].sz_decimals", "zero"): _SIM,
    ("sim.validator_markets[].vol_bps", "zero"): _SIM,
    ("sim.model.jump_prob", "zero"): _SIM,
    ("sim.model.jump_min_bps", "zero"): _SIM,
    ("sim.model.maker_lag_ms", "zero"): _SIM,
    ("sim.model.size_jitter", "zero"): _SIM,
    ("sim.faults.post_delay_ms", "zero"): _SIM,
    ("sim.faults.malformed_every", "zero"): _SIM,
    ("sim.faults.user_subscribe_delay_ms", "zero"): _SIM,
    ("sim.min_notional_usd", "zero"): _SIM,
    ("feed.record_rotate_mb", "zero"): "documented 0 = no size rotation (a recording, never a trading decision)",
    ("feed.record_rotate_minutes", "zero"): "documented 0 = no time rotation (a recording, never a trading decision)",
    ("collateral.transfer_usd", "zero"): "documented 0 = off: fund-dex moves nothing unless an amount is given",
    ("sim.clock_offset_ms", "zero"): "the simulated exchange's clock equals the host's (the default); " + _SIM,
    ("sim.clock_offset_ms", "negative"): "the simulated exchange's clock behind the host's (tests of a host "
                                         "ahead); " + _SIM,
    ("sim.request_budget_initial", "zero"): "no initial request buffer (the budget is earned by volume alone); " + _SIM,
    ("sim.schedule_cancel_min_volume_usd", "zero"): "the dead man's switch accepted from the first trade; " + _SIM,
    ("sim.schedule_cancel_daily_limit", "zero"): "every scheduleCancel refused as over the day's limit; " + _SIM,
    ("market_terms.cap_refusal_block_ms", "zero"): "0 = rely on the exchange's at-cap list alone; its cap "
                                                   "refusals are benign and never count toward the hard stop",
    ("market_terms.fee_mismatch_tolerance", "zero"): "warn on any difference between a fill's fee and the model: "
                                                     "more warnings, no decision changes",
    ("sim.fees.user_cross_rate", "zero"): _SIM,
    ("sim.fees.user_add_rate", "zero"): _SIM,
    ("sim.fees.referral_discount", "zero"): _SIM,
    ("sim.fees.dex_deployer_fee_scale", "zero"): _SIM,
    ("sim.oi.cap_usd", "huge"): "no open-interest cap in practice; " + _SIM,
    ("sim.oi.total_cap_usd", "huge"): "no dex-total open-interest cap in practice; " + _SIM,
    ("sim.l2_min_interval_ms", "zero"): _SIM,
}


def _base(tp: Any) -> Any:
    """The number or Struct type under ``Annotated[...]`` and ``X | None``."""
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, UnionType):
        args = [a for a in typing.get_args(tp) if a is not NoneType]
        if len(args) == 1:
            return _base(args[0])
    return tp


def _walk(cls: type[msgspec.Struct], prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], type]]:
    for f in msgspec.structs.fields(cls):
        tp, path = _base(f.type), (*prefix, f.encode_name)
        if cls is Config and f.name == "sim":  # a free-form table, validated as SimParams
            yield from _walk(SimParams, path)
        elif isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            yield from _walk(tp, path)
        elif typing.get_origin(tp) is tuple:
            item = _base(typing.get_args(tp)[0])
            if isinstance(item, type) and issubclass(item, msgspec.Struct):
                yield from _walk(item, (*path, "[]"))
            elif item in (int, float):
                yield (*path, "[]"), item
        elif tp in (int, float) and tp is not bool:
            yield path, tp


NUMERIC_KEYS = list(_walk(Config))


def _name(path: tuple[str, ...], index: str = "[]") -> str:
    return ".".join(path).replace(".[]", index)


def _value(kind: str, tp: type) -> Any:
    return {"zero": tp(0), "negative": tp(-1), "huge": 10**18 if tp is int else 1e18, "inf": math.inf,
            "-inf": -math.inf, "nan": math.nan}[kind]


def _template(path: tuple[str, ...]) -> Any:
    """A valid element for the list at ``path``: the base config's, or the field's default first one."""
    if path == ("markets",):
        return dict(BASE["markets"][0])
    cls: Any = Config
    for part in path:
        if cls is Config and part == "sim":
            cls = SimParams
            continue
        field = next(f for f in msgspec.structs.fields(cls) if f.encode_name == part)
        if part == path[-1]:
            return msgspec.to_builtins(field.default[0])
        cls = _base(field.type)
    raise AssertionError(path)


def _doc(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(BASE))
    node: Any = doc
    for i, part in enumerate(path[:-1]):
        if path[i + 1] == "[]" and i + 2 == len(path):  # a list of numbers
            node[part] = [value]
            return doc
        if part == "[]":
            continue
        if i + 1 < len(path) and path[i + 1] == "[]":  # a list of tables: one element
            element = _template(path[: i + 1])
            node[part] = [element]
            node = element
        else:
            node = node.setdefault(part, {})
    node[path[-1]] = value
    return doc


def test_the_walk_finds_every_kind_of_numeric_key() -> None:
    names = {_name(p) for p, _ in NUMERIC_KEYS}
    # one of each shape: top-level section, nested section, list of tables, list of numbers, [sim]
    for expected in ("supervisor.heartbeat_timeout_ms", "exits.time_stop.slippage_bps", "markets[].threshold_bps",
                     "detector.observe_followups_ms[]", "sim.model.jump_prob", "sim.markets[].start_px",
                     "risk.daily_loss_cap_usd"):
        assert expected in names
    assert len(names) == len(NUMERIC_KEYS) > 150


@pytest.mark.parametrize(("path", "tp"), NUMERIC_KEYS, ids=[_name(p) for p, _ in NUMERIC_KEYS])
def test_every_numeric_key_refuses_or_allows_on_purpose(path: tuple[str, ...], tp: type) -> None:
    key, shown = _name(path), _name(path, "[0]")
    problems = []
    for kind in KINDS:
        value = _value(kind, tp)
        try:
            parse_config(to_toml(_doc(path, value)), SOURCE)
        except ConfigError as e:
            text = str(e)
            if "\n" in text or SOURCE not in text or shown not in text:
                problems.append(f"{kind}: refused, but the line must name `{shown}` and {SOURCE}: {text}")
            elif (key, kind) in ALLOWED:
                problems.append(f"{kind}: refused now: remove ({key!r}, {kind!r}) from ALLOWED")
            continue
        if (key, kind) not in ALLOWED:
            problems.append(
                f"{kind}: `{key} = {value!r}` was accepted. Constrain the field (a bounded type from "
                f"hip3.bounds, or msgspec.Meta with ge/gt AND le/lt), or, if that value is harmless, add "
                f"({key!r}, {kind!r}) to ALLOWED in tests/test_config_bounds.py with the reason")
    assert not problems, "\n".join(problems)


def test_allowed_entries_name_real_keys_with_a_reason() -> None:
    names = {_name(p) for p, _ in NUMERIC_KEYS}
    for (key, kind), why in ALLOWED.items():
        assert key in names, f"ALLOWED names {key!r}, which is not a numeric config key any more"
        assert kind in KINDS and len(why) > 20, (key, kind)


MIN = 'mode = "paper"\n[[markets]]\ncoin = "xyz:GOLD"\n'


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        # A flatten (hard stop or any exit) priced at or below zero could never leave.
        *[(f"[{sec}]\nslippage_bps = {v}\n", f"{sec}.slippage_bps", "< 10000")
          for sec in ("exits.mark_regression", "exits.oracle_exit", "exits.time_stop") for v in ("10000", "inf")],
        ("[risk]\nflatten_slippage_bps = 10000\n", "risk.flatten_slippage_bps", "< 10000"),
        ("[risk]\nflatten_slippage_bps = 25000.0\n", "risk.flatten_slippage_bps", "< 10000"),
        ("[risk]\nflatten_slippage_bps = inf\n", "risk.flatten_slippage_bps", "< 10000"),
        ("[risk]\nflatten_slippage_bps = 0\n", "risk.flatten_slippage_bps", ">= 1.0"),
        # Caps and loss limits that are no limit.
        ("[executor]\nmax_total_notional_usd = inf\n", "executor.max_total_notional_usd", "<= 10000000"),
        ("[executor]\nmax_notional_per_market_usd = 1e12\n", "executor.max_notional_per_market_usd", "<= 10000000"),
        ("[detector]\nmax_notional_usd = inf\n", "detector.max_notional_usd", "<= 10000000"),
        ("[risk]\nmax_loss_usd = inf\n", "risk.max_loss_usd", "<= 10000000"),
        ("[risk]\ndaily_loss_cap_usd = 1e9\n", "risk.daily_loss_cap_usd", "<= 10000000"),
        ("[risk]\nmax_consecutive_failures = 100000\n", "risk.max_consecutive_failures", "<= 1000"),
        # A restart limit that can never trip: 100 restarts with up to 1 s of backoff take > 60 s.
        ("[supervisor]\nmax_restarts = 100\nrestart_backoff_max_ms = 1000\nrestart_period_s = 60\n",
         "supervisor.restart_period_s", "too short for the restart limit to ever trip"),
        ("[supervisor]\nmax_restarts = 5\nrestart_period_s = 1.0\n", "supervisor.restart_period_s", "too short"),
        # A heartbeat timeout not above the interval (nor with room for one late heartbeat).
        ("[supervisor]\nheartbeat_interval_ms = 500\nheartbeat_timeout_ms = 500\n",
         "supervisor.heartbeat_timeout_ms", "at least twice heartbeat_interval_ms"),
        ("[supervisor]\nheartbeat_interval_ms = 500\nheartbeat_timeout_ms = 400\n",
         "supervisor.heartbeat_timeout_ms", "at least twice"),
        ("[supervisor]\nheartbeat_timeout_ms = 86400000\n", "supervisor.heartbeat_timeout_ms", "<= 60000"),
        # Other switches that turned a safety mechanism off without a word.
        ("[exits.time_stop]\nthreshold_ms = 86400000\n", "exits.time_stop.threshold_ms", "<= 3600000"),
        ("[executor]\npost_timeout_ms = 3600000\nexpires_after_ms = 3600000\n", "executor.post_timeout_ms",
         "<= 60000"),
        ("[executor]\nsent_journal_retention_ms = 1000\n", "executor.sent_journal_retention_ms", ">= 60000"),
        ("[detector]\nentry_ttl_ms = 60000\n[executor]\nsent_journal_retention_ms = 100000\n",
         "executor.sent_journal_retention_ms", "at least twice the longest intent TTL"),
        ("[risk]\nrejection_bucket_ms = 1\n", "risk.rejection_bucket_ms", ">= 60000"),
        ("[soft_gates.market_health]\ndisable_below_score = 0.0\n", "soft_gates.market_health.disable_below_score",
         "> 0.0"),
        ("[feed]\nping_after_idle_ms = 60000\n", "feed.ping_after_idle_ms", "<= 59999"),
        ("[executor]\nschedule_cancel_after_ms = 86400000\n", "executor.schedule_cancel_after_ms", "<= 600000"),
    ],
)
def test_values_that_switch_safety_off_are_refused_by_name(text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(MIN + text, SOURCE)
    msg = str(e.value)
    assert "\n" not in msg and SOURCE in msg and f"`{key}`" in msg and expected in msg, msg


def test_a_non_finite_number_is_refused_even_without_bounds() -> None:
    """The walk after decoding: a float a Struct forgot to bound is still refused by name."""
    from hip3.config_safety import non_finite

    class Inner(msgspec.Struct, frozen=True):
        x: float = 1.0
        xs: tuple[float, ...] = ()

    class Outer(msgspec.Struct, frozen=True):
        inner: Inner = Inner()
        table: dict[str, object] = {}

    value = Outer(Inner(x=math.inf, xs=(1.0, math.nan)), {"a": {"b": -math.inf}, "c": 2.0})
    assert list(non_finite(value)) == ["inner.x", "inner.xs[1]", "table.a.b"]
    assert list(non_finite(Outer())) == []

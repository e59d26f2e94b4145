"""Entry-throttling soft gates in isolation (windows, resets, re-probe) and the params' TOML layout and validation."""

from __future__ import annotations

import pytest

from hip3.config import ConfigError, parse_config
from hip3.execution.params import (
    BurstParams,
    CorrelationCooldownParams,
    ExecutorParams,
    HourlyDrawdownParams,
    MarketHealthParams,
    SoftGateParams,
    TiltGuardParams,
)
from hip3.execution.soft_gates import SoftGates
from tests.execution.helpers import GOLD, SILVER, closed


def test_hourly_drawdown_window_restarts() -> None:
    g = SoftGates(SoftGateParams(hourly_drawdown=HourlyDrawdownParams(enabled=True, max_loss_usd=10.0)))
    g.on_position_closed(closed(pnl="-6"), 0)
    assert g.check(GOLD, 0, 1) is None
    g.on_position_closed(closed(pnl="-4"), 2)
    assert (g.check(GOLD, 0, 3) or "").startswith("MaxDrawdown")
    assert g.check(GOLD, 0, 3_600_000) is None  # window elapsed


def test_correlation_cooldown() -> None:
    g = SoftGates(SoftGateParams(correlation_cooldown=CorrelationCooldownParams(enabled=True, max_closes=2)))
    g.on_position_closed(closed(GOLD, pnl="1"), 0)
    g.on_position_closed(closed(SILVER, pnl="1"), 31_000)  # outside the 30 s window
    assert g.check(GOLD, 0, 31_001) is None
    g.on_position_closed(closed(GOLD, pnl="1"), 32_000)
    assert (g.check(SILVER, 0, 32_001) or "").startswith("CorrelationCooldown")
    assert g.check(SILVER, 0, 92_000) is None


def test_burst_check_is_read_only_and_bypass() -> None:
    g = SoftGates(SoftGateParams(burst=BurstParams(enabled=True, max_signals=2, window_ms=1000, cooldown_ms=5000,
                                                   bypass_edge_bps=100.0)))
    for _ in range(10):
        assert g.check(GOLD, 10, 0) is None  # checking never records
    g.record_executed(GOLD, 0)
    assert g.check(GOLD, 10, 1) is None
    g.record_executed(GOLD, 1)
    assert (g.check(GOLD, 10, 2) or "").startswith("BurstSignal")
    assert g.check(GOLD, 150, 2) is None  # high-edge bypass
    assert g.check(SILVER, 10, 2) is None  # per market
    assert g.check(GOLD, 10, 5001) is None


def test_tilt_guard_reset_by_win() -> None:
    g = SoftGates(SoftGateParams(tilt_guard=TiltGuardParams(enabled=True, max_consecutive_losses=2)))
    g.on_position_closed(closed(pnl="-1"), 0)
    g.on_position_closed(closed(pnl="0"), 1)  # non-losing close resets
    g.on_position_closed(closed(pnl="-1"), 2)
    assert g.check(GOLD, 0, 3) is None
    g.on_position_closed(closed(pnl="0.5", fees="1"), 4)  # net loss
    assert (g.check(GOLD, 0, 5) or "").startswith("TiltGuard")


def test_market_health_disable_reenable_and_reprobe() -> None:
    mh = MarketHealthParams(enabled=True, min_samples=2, window_trades=4, reprobe_after_ms=10_000)
    g = SoftGates(SoftGateParams(market_health=mh))
    g.on_position_closed(closed(pnl="-2"), 0)
    assert g.check(GOLD, 0, 1) is None  # < min samples
    g.on_position_closed(closed(pnl="-2"), 1)
    assert (g.check(GOLD, 0, 2) or "").startswith("MarketHealth")
    assert g.check(SILVER, 0, 2) is None
    assert g.check(GOLD, 0, 10_001) is None  # re-probe: a disabled market can trade again
    assert g.health_score(GOLD) == 1.0


def test_params_defaults_are_seed_defaults() -> None:
    p = ExecutorParams()
    assert (p.max_notional_per_market_usd, p.max_total_notional_usd, p.max_concurrent_positions) == (50, 100, 5)
    assert (p.batch_interval_ms, p.inflight_limit, p.post_timeout_ms, p.action_budget_orders) == (20, 10, 5000, 100)
    assert (p.cancel_queue_capacity, p.reduce_only_queue_capacity, p.new_queue_capacity) == (200, 500, 1000)
    s = SoftGateParams()
    assert not any(getattr(s, f).enabled for f in s.__struct_fields__)


def test_toml_layout_and_errors() -> None:
    base = 'mode="paper"\n[[markets]]\ncoin="xyz:A"\n'
    cfg = parse_config(base + '[executor]\nmax_notional_per_market_usd=20.0\n[risk]\nmax_loss_usd=20.0\n'
                       '[soft_gates.tilt_guard]\nenabled=true\n')
    assert cfg.executor.max_notional_per_market_usd == 20.0 and cfg.risk.max_loss_usd == 20.0
    assert cfg.soft_gates.tilt_guard.enabled
    for bad in ('[executor]\nmax_batch_size=51\n', '[executor]\nbogus=1\n', '[soft_gates.burst]\nwindow_ms=0\n',
                '[executor]\ninflight_high_watermark=80\n', '[executor]\nexpires_after_ms=9000\n'):
        with pytest.raises(ConfigError):
            parse_config(base + bad)

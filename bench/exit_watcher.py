"""Exit-watcher hot path: ns per market update without and with a position, and allocation growth.

Drives ``hip3.strategy.exit_watcher_core.ExitWatcherCore`` in-process with pre-decoded ``Bbo`` and
``AssetCtx`` messages (decode excluded). Timing: batches of updates timed with ``perf_counter_ns``;
the figure is the median of the batch means. Allocation: tracemalloc blocks after 100,000 steady-state
updates (positions held, no exit firing) minus before (after a warm-up).

Run: ``python -m bench.exit_watcher``. The last line is one JSON object.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
import tracemalloc
from decimal import Decimal

from hip3.messages import AssetCtx, Bbo, Position, PositionSnapshot
from hip3.strategy.exit_watcher_core import ExitWatcherCore
from hip3.strategy.params import ExitParams, MarkRegressionParams, OracleTrackerParams, TrailingParams

N_MARKETS = 20
BATCH = 2000
BATCHES = 50


def _msgs(coins: list[str], n: int) -> list[Bbo | AssetCtx]:
    """A stream that never triggers an exit for a long entered at 100 with the oracle at 101."""
    out: list[Bbo | AssetCtx] = []
    for i in range(n):
        c = coins[i % len(coins)]
        if i % 10 == 9:  # about one ctx per ten bbos, oracle wiggling below min_move
            out.append(AssetCtx(coin=c, oracle_px=101.0 + (i % 3) * 0.001, mark_px=100.0, mid_px=100.0,
                                funding=0.0, open_interest=1000.0, recv_ns=i))
        else:
            bid = 99.90 + (i % 7) * 0.001
            out.append(Bbo(coin=c, bid_px=bid, bid_sz=5.0, ask_px=bid + 0.02, ask_sz=5.0,
                           exch_ms=i, recv_ns=i))
    return out


def _core(with_positions: bool, coins: list[str], now_ns: int, now_ms: int) -> ExitWatcherCore:
    params = ExitParams(
        mark_regression=MarkRegressionParams(quick_profit_bps=50.0, edge_evaporation=True, time_decay=True,
                                             min_loss_exit_bps=15.0, entry_edge_scaling=True),
        trailing=TrailingParams(enabled=True),
    )
    core = ExitWatcherCore(params, OracleTrackerParams(), dict.fromkeys(coins, 2), id_prefix="bench")
    core.add_markets(coins)
    for c in coins:
        core.on_ctx(AssetCtx(coin=c, oracle_px=101.0, mark_px=100.0, mid_px=100.0, funding=0.0,
                             open_interest=1000.0, recv_ns=0), now_ns)
    if with_positions:
        positions = tuple(
            Position(coin=c, asset=110000 + i, is_long=True, size=Decimal("1.5"), entry_px=Decimal("100"),
                     opened_ms=now_ms, entry_edge_bps=20.0)
            for i, c in enumerate(coins)
        )
        core.on_position_snapshot(
            PositionSnapshot(version=1, synced=True, positions=positions, open_orders=(),
                             realized_pnl_usd=Decimal(0), fees_usd=Decimal(0)),
            now_ns, now_ms,
        )
    return core


def _time(core: ExitWatcherCore, msgs: list[Bbo | AssetCtx], now_ns: int) -> list[float]:
    on_bbo, on_ctx = core.on_bbo, core.on_ctx
    means: list[float] = []
    fired = 0
    for _ in range(BATCHES):
        t0 = time.perf_counter_ns()
        for m in msgs:
            r = on_bbo(m, now_ns) if type(m) is Bbo else on_ctx(m, now_ns)  # type: ignore[arg-type]
            if r is not None:
                fired += 1
        means.append((time.perf_counter_ns() - t0) / len(msgs))
    if fired:
        raise SystemExit(f"benchmark stream fired {fired} exits; fix the stream")
    return means


def _baseline(msgs: list[Bbo | AssetCtx]) -> list[float]:
    """Loop + dispatch + one dict lookup: the floor the no-position path is compared with."""
    d: dict[str, int] = {}
    means: list[float] = []
    for _ in range(BATCHES):
        t0 = time.perf_counter_ns()
        for m in msgs:
            r = d.get(m.coin) if type(m) is Bbo else d.get(m.coin)  # noqa: RUF034 (same dispatch)
            if r is not None:
                pass
        means.append((time.perf_counter_ns() - t0) / len(msgs))
    return means


def main() -> None:
    coins = [f"xyz:M{i}" for i in range(N_MARKETS)]
    now_ms = 1_700_000_000_000
    now_ns = 10_000_000_000
    msgs = _msgs(coins, BATCH)
    bbos = [m for m in msgs if type(m) is Bbo]
    ctxs = [m for m in msgs if type(m) is AssetCtx]
    gc.disable()
    try:
        base = statistics.median(_baseline(msgs))
        no_pos = _core(False, coins, now_ns, now_ms)
        with_pos = _core(True, coins, now_ns, now_ms)
        t_now = now_ns + 2_000_000_000  # 2 s held: past min hold, inside decay; nothing fires
        res = {
            "no_position": statistics.median(_time(no_pos, msgs, t_now)),
            "no_position_bbo": statistics.median(_time(no_pos, bbos, t_now)),
            "no_position_ctx": statistics.median(_time(no_pos, ctxs, t_now)),
            "with_position": statistics.median(_time(with_pos, msgs, t_now)),
            "with_position_bbo": statistics.median(_time(with_pos, bbos, t_now)),
            "with_position_ctx": statistics.median(_time(with_pos, ctxs, t_now)),
        }
        # Allocation growth: warm up, then 100,000 steady-state updates with positions held.
        stream = msgs * (100_000 // len(msgs))
        _time(with_pos, msgs, t_now)
        tracemalloc.start()
        for m in stream[:1000]:
            with_pos.on_bbo(m, t_now) if type(m) is Bbo else with_pos.on_ctx(m, t_now)  # type: ignore[arg-type]
        snap0 = tracemalloc.take_snapshot()
        for m in stream:
            with_pos.on_bbo(m, t_now) if type(m) is Bbo else with_pos.on_ctx(m, t_now)  # type: ignore[arg-type]
        snap1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        # Blocks still alive that were allocated by the code under test (not by tracemalloc's own
        # bookkeeping or this driver's locals).
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
        diff = snap1.filter_traces(ignore).compare_to(snap0.filter_traces(ignore), "filename")
        growth = sum(d.count_diff for d in diff)
        raw = sum(d.count_diff for d in snap1.compare_to(snap0, "filename"))
    finally:
        gc.enable()
    print(f"markets={N_MARKETS} batch={BATCH} batches={BATCHES} (median of batch means, ns/update)")
    print(f"  baseline loop + dict lookup       {base:8.0f}")
    for k, v in res.items():
        print(f"  {k:<32} {v:8.0f}   ({v / base:.1f}x baseline)")
    print(f"  alloc growth over {len(stream)} updates: {growth} blocks (raw incl. driver/tracemalloc: {raw})")
    print(json.dumps({
        "no_position_median_ns": round(res["no_position"]),
        "with_position_median_ns": round(res["with_position"]),
        "alloc_growth_blocks": growth,
        "no_position_bbo_ns": round(res["no_position_bbo"]),
        "no_position_ctx_ns": round(res["no_position_ctx"]),
        "with_position_bbo_ns": round(res["with_position_bbo"]),
        "with_position_ctx_ns": round(res["with_position_ctx"]),
        "baseline_loop_ns": round(base),
    }))


if __name__ == "__main__":
    main()

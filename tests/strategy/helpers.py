"""Message builders for the strategy tests (injected clock: every time is an argument)."""

from __future__ import annotations

from decimal import Decimal

from hip3.messages import AssetCtx, Bbo, Position, PositionSnapshot

MS = 1_000_000
T0_NS = 1_000_000_000_000  # an arbitrary monotonic origin
T0_MS = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC


def bbo(coin: str, bid: float, ask: float, *, bid_sz: float = 10.0, ask_sz: float = 10.0,
        exch_ms: int = 1, recv_ns: int = T0_NS) -> Bbo:
    return Bbo(coin=coin, bid_px=bid, bid_sz=bid_sz, ask_px=ask, ask_sz=ask_sz, exch_ms=exch_ms, recv_ns=recv_ns)


def ctx(coin: str, oracle: float, *, mark: float | None = None, oi: float = 0.0, recv_ns: int = T0_NS) -> AssetCtx:
    return AssetCtx(coin=coin, oracle_px=oracle, mark_px=oracle if mark is None else mark, mid_px=oracle,
                    funding=0.0, open_interest=oi, recv_ns=recv_ns)


def position(coin: str, *, is_long: bool = True, size: str = "2", entry: str = "100", opened_ms: int = T0_MS,
             edge: float = 0.0, asset: int = 110001) -> Position:
    return Position(coin=coin, asset=asset, is_long=is_long, size=Decimal(size), entry_px=Decimal(entry),
                    opened_ms=opened_ms, entry_edge_bps=edge)


def snapshot(*positions: Position, synced: bool = True, pending: tuple[str, ...] = (),
             version: int = 1) -> PositionSnapshot:
    return PositionSnapshot(version=version, synced=synced, positions=positions, open_orders=(),
                            realized_pnl_usd=Decimal(0), fees_usd=Decimal(0), pending_flatten=pending)

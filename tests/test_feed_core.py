"""FeedCore dispatch: every frame published, the markets with a position first within a burst."""

from __future__ import annotations

from hip3.hyperliquid.feed import FeedCore
from hip3.messages import AssetCtx, Bbo, Msg

A, B, C = "xyz:A", "xyz:B", "xyz:C"


def bbo(coin: str, px: float) -> Bbo:
    return Bbo(coin=coin, bid_px=px, bid_sz=1.0, ask_px=px + 1, ask_sz=1.0, exch_ms=1, recv_ns=1)


def ctx(coin: str, px: float) -> AssetCtx:
    return AssetCtx(coin=coin, mark_px=px, oracle_px=px, mid_px=px, funding=0.0, open_interest=0.0, recv_ns=1)


def core() -> tuple[FeedCore, list[tuple[Msg, str]]]:
    out: list[tuple[Msg, str]] = []
    fc = FeedCore([A, B, C], "", trading=False, stall_timeout_ms=1000,
                  publish_md=lambda m, k: out.append((m, k)), publish_user=lambda m: None)
    return fc, out


def test_no_hot_market_keeps_arrival_order() -> None:
    fc, out = core()
    burst = [bbo(A, 1), bbo(B, 2), ctx(C, 3), bbo(C, 4)]
    fc.on_frames([(m, 1) for m in burst])
    assert [m for m, _ in out] == burst
    assert [k for _, k in out] == ["bbo:" + A, "bbo:" + B, "ctx:" + C, "bbo:" + C]


def test_hot_markets_first_order_within_each_market_kept() -> None:
    fc, out = core()
    fc.set_hot([C])
    burst = [bbo(A, 1), ctx(C, 2), bbo(B, 3), bbo(C, 4), bbo(A, 5), ctx(C, 6)]
    fc.on_frames([(m, 7) for m in burst])
    published = [m for m, _ in out]
    assert published == [burst[1], burst[3], burst[5], burst[0], burst[2], burst[4]]
    assert sorted(map(id, published)) == sorted(map(id, burst))  # nothing lost, nothing twice
    assert fc.n_bbo == 4 and fc.n_ctx == 2


def test_hot_set_follows_positions_and_empties() -> None:
    fc, out = core()
    fc.set_hot([A, B])
    fc.on_frames([(bbo(C, 1), 1), (bbo(B, 2), 1), (bbo(A, 3), 1)])
    assert [m.coin for m, _ in out] == [B, A, C]  # type: ignore[attr-defined]
    out.clear()
    fc.set_hot([])
    fc.on_frames([(bbo(C, 1), 1), (bbo(B, 2), 1)])
    assert [m.coin for m, _ in out] == [C, B]  # type: ignore[attr-defined]


def test_unknown_coin_in_a_hot_burst_is_still_counted() -> None:
    fc, out = core()
    fc.set_hot([A])
    fc.on_frames([(bbo("xyz:ZZZ", 1), 1), (bbo(A, 2), 1)])
    assert [m.coin for m, _ in out] == [A]  # type: ignore[attr-defined]
    assert fc.counts["unknown_coin"] == 1

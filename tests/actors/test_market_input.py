"""Bad market input end to end without sockets (decoder -> FeedCore -> DetectorCore), the WebSocket frame
reader, and the detector's entry readiness."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hip3.config import MarketConfig
from hip3.hyperliquid.feed import FeedCore
from hip3.hyperliquid.frame_decoder import FrameDecoder
from hip3.hyperliquid.ws_framing import FrameReader, FramingError, text_frame
from hip3.messages import AssetCtx, Bbo, FeedState, Msg, PositionSnapshot
from hip3.strategy.detector_core import DetectorCore
from hip3.strategy.entry_readiness import EntryReadiness
from hip3.strategy.params import DetectorParams, GateParams, OracleTrackerParams

COIN = "xyz:GOLD"


def _bbo(bid: str | None, ask: str | None, coin: str = COIN) -> bytes:
    side = lambda px: "null" if px is None else f'{{"px":"{px}","sz":"5","n":1}}'  # noqa: E731
    return f'{{"channel":"bbo","data":{{"coin":"{coin}","time":1,"bbo":[{side(bid)},{side(ask)}]}}}}'.encode()


CTX = b'{"channel":"activeAssetCtx","data":{"coin":"xyz:GOLD","ctx":{"oraclePx":"100","markPx":"100"}}}'


@pytest.mark.parametrize(("frame", "bad"), [
    (_bbo("99", None), False),  # missing side: published as 0.0, not evaluable
    (_bbo(None, None), False),
    (_bbo("101", "99"), False),  # crossed
    (_bbo("0", "99"), True),  # zero price: refused by the decoder
    (_bbo("-1", "99"), True),
    (_bbo("NaN", "99"), True),
    (_bbo("1e999", "99"), True),
    (_bbo("99", "99.5", coin="xyz:NOPE"), False),  # unknown coin: dropped by the feed
])
def test_bad_books_are_counted_and_the_market_not_evaluated(frame: bytes, bad: bool) -> None:
    dec = FrameDecoder()
    out: list[Msg] = []
    feed = FeedCore([COIN], "", trading=False, stall_timeout_ms=1000,
                    publish_md=lambda m, _k: out.append(m), publish_user=out.append)
    core = DetectorCore(OracleTrackerParams(), GateParams(), DetectorParams(), [MarketConfig(coin=COIN)],
                        trading=False, sz_decimals={COIN: 2}, assets={COIN: 110003})
    msgs = [dec.decode_market(f, 1_000) for f in (CTX, frame)]
    feed.on_frames([(m, 1_000) for m in msgs if m is not None])
    assert (sum(dec.counters.values()) == 1) is bad
    for m in out:
        if isinstance(m, Bbo):
            assert not core.on_bbo(m, 2_000)
        elif isinstance(m, AssetCtx):
            assert core.on_ctx(m, 2_000)
    assert core.evaluate(2_000, 0) == []
    stats = core.stats()
    # Not evaluated: stopped at a BBO gate, and no detector filter ran for it.
    assert stats["gate_no_bbo"] + stats["gate_bbo_invalid"] == 1, stats
    assert not any(v for k, v in stats.items() if k.startswith("skip_")), stats
    if b"NOPE" in frame:
        assert feed.counts["unknown_coin"] == 1
    elif not bad:
        assert sum(v for k, v in stats.items() if k.startswith("bad_bbo_")) == 1


def test_frame_reader_cuts_chunks_and_fragments() -> None:
    def server(op: int, payload: bytes, fin: bool = True) -> bytes:
        n = len(payload)
        b0 = (0x80 if fin else 0) | op
        head = bytes((b0, n)) if n < 126 else bytes((b0, 126)) + n.to_bytes(2, "big")
        return head + payload

    stream = (server(1, b"a" * 10) + server(1, b"b" * 300) + server(1, b"c", fin=False) + server(9, b"p")
              + server(0, b"d"))
    r = FrameReader()
    got = []
    for i in range(0, len(stream), 7):  # arbitrary chunk boundaries
        got.extend(r.feed(stream[i:i + 7]))
    assert got == [(1, b"a" * 10), (1, b"b" * 300), (9, b"p"), (1, b"cd")]
    with pytest.raises(FramingError):
        FrameReader().feed(text_frame(b"masked"))  # a server never masks


def _fs(conn: int, state: str = "connected", ready: bool = True) -> FeedState:
    return FeedState(state=state, conn_id=conn, market_data_ready=ready, user_ready=ready, since_ns=0)


def _snap(synced: bool, version: int = 1) -> PositionSnapshot:
    return PositionSnapshot(version=version, synced=synced, positions=(), open_orders=(),
                            realized_pnl_usd=Decimal(0), fees_usd=Decimal(0))


def test_entry_readiness_blocks_until_feed_positions_and_resync_after_reconnect() -> None:
    r = EntryReadiness(trading=True)
    assert r.blocked_reason(False) == "no feed state yet"
    r.on_feed_state(_fs(1))
    assert r.blocked_reason(False) == "no position snapshot yet"
    r.on_positions(_snap(True))
    assert r.blocked_reason(False) == ""
    assert r.blocked_reason(True) == "hard stop latched"
    r.on_feed_state(_fs(1, "disconnected", False))
    assert r.blocked_reason(False) == "market data not ready"
    r.on_feed_state(_fs(2))
    r.on_positions(_snap(True, 2))  # a periodic snapshot from before the tracker noticed: not a resync
    assert "resync" in r.blocked_reason(False)
    r.on_positions(_snap(False, 3))
    assert r.blocked_reason(False) == "positions not synced"
    r.on_positions(_snap(True, 4))
    assert r.blocked_reason(False) == ""
    assert EntryReadiness(trading=False).blocked_reason(False) == "observe mode"

"""Bus messages: every type round-trips, tags are unique, seq/src are stamped, bad input is refused."""

from __future__ import annotations

import typing
from decimal import Decimal

import msgspec
import pytest

from hip3 import messages as m


def _samples() -> list[m.Msg]:
    d = Decimal
    pos = m.Position(coin="xyz:GOLD", asset=110001, is_long=True, size=d("0.5"), entry_px=d("2650.1"), opened_ms=1)
    oo = m.OpenOrder(coin="xyz:GOLD", asset=110001, oid=7, cloid=None, is_buy=False, limit_px=d("2700"),
                     sz=d("0.1"), reduce_only=False)
    return [
        m.Bbo(coin="xyz:GOLD", bid_px=1.0, bid_sz=2.0, ask_px=1.1, ask_sz=3.0, exch_ms=5, recv_ns=6),
        m.AssetCtx(coin="xyz:GOLD", oracle_px=1.0, mark_px=1.0, mid_px=0.0, funding=0.0, open_interest=3.0, recv_ns=1),
        m.FeedState(state="connected", conn_id=2, market_data_ready=True, user_ready=False, since_ns=9),
        m.OrderUpdate(coin="xyz:GOLD", oid=1, cloid="0x" + "ab" * 16, is_buy=True, limit_px=d("1.5"), sz=d("0"),
                      orig_sz=d("2"), status="filled", status_ms=3, recv_ns=4),
        m.UserFill(coin="xyz:GOLD", px=d("1.5"), sz=d("2"), is_buy=True, time_ms=1, oid=1, tid=2, cloid=None,
                   fee=d("0.01"), closed_pnl=d("0"), crossed=True, is_snapshot=False, recv_ns=5),
        m.EntryIntent(intent_id="i1", coin="xyz:GOLD", asset=110001, is_buy=True, px=d("2650.5"), sz=d("0.01"),
                      reduce_only=False, valid_until_ns=10, origin_recv_ns=1, created_ns=2, edge_bps=20.5,
                      signal_id="s1"),
        m.FlattenIntent(intent_id="f1", coin="xyz:GOLD", asset=110001, is_buy=False, px=d("2600"), sz=d("0.01"),
                        reduce_only=True, valid_until_ns=10, origin_recv_ns=1, created_ns=2, reason="time_stop"),
        m.OrderSubmitted(cloid="c", intent_id="i", coin="xyz:GOLD", asset=110001, is_buy=True, px=d("1"),
                         sz=d("1"), reduce_only=False, tif="Ioc", kind="entry", reason="", nonce=1, post_id=2,
                         origin_recv_ns=3, sent_ns=4),
        m.OrderAcked(cloid="c", oid=1, coin="xyz:GOLD", recv_ns=1),
        m.OrderFilled(cloid="c", oid=1, coin="xyz:GOLD", is_buy=True, total_sz=d("1"), avg_px=d("2"),
                      reduce_only=False, recv_ns=1),
        m.OrderRejected(cloid="c", coin="xyz:GOLD", reason="x", benign=True, reduce_only=False, recv_ns=1),
        m.OrderCancelled(cloid="c", oid=1, coin="xyz:GOLD", reason="x", recv_ns=1),
        m.Fill(coin="xyz:GOLD", cloid=None, oid=1, tid=0, is_buy=True, px=d("1"), sz=d("1"), fee=d("0"),
               source="post", time_ms=1, recv_ns=1),
        m.PositionSnapshot(version=1, synced=True, positions=(pos,), open_orders=(oo,),
                           realized_pnl_usd=d("-1.25"), fees_usd=d("0.5"),
                           collateral=m.DexCollateral(dex="xyz", account_value=d("100.5"), withdrawable=d("90"),
                                                      margin_used=d("10.5"), perp_withdrawable=d("-1"), time_ms=7)),
        m.PositionClosed(coin="xyz:GOLD", is_long=True, size=d("1"), entry_px=d("1"), exit_px=d("2"),
                         pnl_usd=d("1"), fees_usd=d("0"), hold_ms=5, exit_reason="time_stop", closed_ms=1),
        m.MarketTerms(fees_ms=1, caps_ms=2, user_cross_rate=0.00045, user_add_rate=0.00015, referral_discount=0.0,
                      dex_oi_cap_usd=1e9, dex_oi_usd=5.0, markets=(m.MarketTerm(
                          coin="xyz:GOLD", taker_fee_bps=9.0, maker_fee_bps=3.0, deployer_fee_scale=1.0,
                          scale_source="meta", growth_mode=False, fee_source="exchange", oi_cap_usd=1e6,
                          oi_usd=5.0, at_oi_cap=True),)),
        m.Signal(signal_id="s", coin="xyz:GOLD", is_buy=True, raw_edge_bps=1, net_edge_bps=1, threshold_bps=1,
                 oracle_px=1, best_px=1, book_sz=1, suggested_sz=1, confidence=0.5, recv_ns=1, time_ms=1),
        m.SignalFollowup(signal_id="s", coin="xyz:GOLD", offset_ms=1000, oracle_px=1, best_px=1, edge_bps=1,
                         edge_change_bps=0, time_ms=1),
        m.HardStopState(latched=True, reason="r", epoch=3, since_ms=4),
        m.HardStopRequest(reason="r", source="executor"),
        m.HardStopAck(actor="feed", epoch=3),
        m.HardStopProgress(epoch=3, positions=0, open_orders=0, attempts=1, done=True, alert=False),
        m.Heartbeat(actor="feed", pid=1, ready=True, hardstop_epoch=0, stats={"x": 1}),
        m.Ready(actor="feed", pid=1, ready=True, detail="ok"),
        m.Shutdown(reason="bye"),
        m.Alert(level="critical", actor="executor", text="flatten incomplete"),
        m.RequestBudgetReading(cum_vlm_usd=d("2854574.593578"), n_requests_used=2890, n_requests_cap=2864574,
                               n_requests_surplus=0, requested_ms=1),
        m.ExchangeClock(offset_mono_ms=-5, skew_ms=10_012, samples=3, last_sample_age_ms=40),
        m.MarketView(actor="detector", markets=(m.MarketLine(
            coin="xyz:GOLD", mid_px=2001.5, oracle_px=2000.0, mark_px=2001.0, dislocation_bps=7.5, edge_bps=-2.0,
            gate="pass", bbo_age_ms=12, ctx_age_ms=-1),)),
    ]


def test_every_union_member_has_a_sample_and_round_trips() -> None:
    samples = _samples()
    union_types = set(typing.get_args(m.Message))
    assert {type(s) for s in samples} == union_types
    for s in samples:
        assert m.decode(m.encode(s)) == s


def test_tags_are_unique() -> None:
    tags = [t.__struct_config__.tag for t in typing.get_args(m.Message)]
    assert len(tags) == len(set(tags))


def test_messages_are_frozen() -> None:
    msg = m.Shutdown(reason="x")
    with pytest.raises(AttributeError):
        msg.reason = "y"  # type: ignore[misc]


def test_decimals_travel_as_exact_strings() -> None:
    intent = _samples()[5]
    raw = msgspec.msgpack.decode(m.encode(intent))
    assert raw["px"] == "2650.5" and raw["sz"] == "0.01"


def test_newer_sender_with_appended_field_still_decodes() -> None:
    # A newer version appends a field; an older reader ignores it.
    raw = msgspec.msgpack.decode(m.encode(m.Shutdown(reason="x")))
    raw["new_field"] = 42
    assert m.decode(msgspec.msgpack.encode(raw)) == m.Shutdown(reason="x")


@pytest.mark.parametrize("frame", [b"", b"\x00", b"\xc1", msgspec.msgpack.encode({"t": "nope"}),
                                   msgspec.msgpack.encode({"t": "bbo", "coin": 1}), b"\xff" * 100])
def test_malformed_frames_raise_decode_errors_only(frame: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        m.decode(frame)

"""Wire formatting: golden vectors (the SDK's number strings, the tick and lot rules), refusal to round,
rounding direction."""

from __future__ import annotations

from decimal import Decimal as D

import msgpack
import pytest
from hyperliquid.utils.signing import float_to_wire
from hypothesis import given, settings
from hypothesis import strategies as st

from hip3.hyperliquid import wire
from hip3.hyperliquid.wire import (
    decimal_to_wire,
    floor_size,
    is_valid_price,
    is_valid_size,
    order_wire,
    price_tick,
    round_price,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("100", "100"),
        ("0.0147", "0.0147"),
        ("1670.1", "1670.1"),
        ("103", "103"),
        ("1e-8", "0.00000001"),
        ("12345.0", "12345"),
        ("0.3", "0.3"),
        ("-0", "0"),
        ("-0.000", "0"),
        ("105.00", "105"),
        ("1E+3", "1000"),
        ("-1.50", "-1.5"),
        ("0.00100000", "0.001"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
    ],
)
def test_decimal_to_wire_golden(value: str, text: str) -> None:
    assert decimal_to_wire(D(value)) == text


@pytest.mark.parametrize("value", ["1e-9", "0.123456789", "NaN", "Infinity", "-Infinity", "sNaN"])
def test_decimal_to_wire_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        decimal_to_wire(D(value))


def test_decimal_to_wire_refuses_float() -> None:
    with pytest.raises(ValueError):
        decimal_to_wire(0.1)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.integers(-(10**12), 10**12), st.integers(0, 8))
def test_decimal_to_wire_matches_sdk_float_to_wire(units: int, places: int) -> None:
    x = D(units).scaleb(-places)
    if abs(x) < 10**6:  # floats represent these exactly enough for the SDK's check
        assert decimal_to_wire(x) == float_to_wire(float(x))
    assert D(decimal_to_wire(x)) == x


@pytest.mark.parametrize(
    ("px", "sz_dec", "ok"),
    [
        ("1234.5", 0, True),
        ("1234.56", 0, False),
        ("0.001234", 0, True),
        ("0.0012345", 0, False),
        ("0.01234", 1, True),
        ("0.012345", 1, False),
        ("123456", 0, True),
        ("123456", 5, True),
        ("12345.6", 0, False),
        ("112.95", 2, True),
        ("112.95", 5, False),  # 6-5 = 1 decimal
        ("105.00", 2, True),
        ("0", 0, False),
        ("-1", 0, False),
        ("NaN", 0, False),
    ],
)
def test_is_valid_price(px: str, sz_dec: int, ok: bool) -> None:
    assert is_valid_price(D(px), sz_dec) is ok


@pytest.mark.parametrize(
    ("sz", "sz_dec", "ok"),
    [("1.001", 3, True), ("1.0001", 3, False), ("2.7", 1, True), ("0", 2, False), ("5", 0, True), ("1.0", 0, True)],
)
def test_is_valid_size(sz: str, sz_dec: int, ok: bool) -> None:
    assert is_valid_size(D(sz), sz_dec) is ok


def test_round_price_examples() -> None:
    assert round_price(D("1234.56"), 0, True) == D("1234.6")
    assert round_price(D("1234.56"), 0, False) == D("1234.5")
    assert round_price(D("99999.5"), 0, True) == D("100000")
    assert round_price(D("9999.95"), 0, True) == D("10000")
    assert round_price(D("0.0012345"), 0, True) == D("0.001235")
    assert round_price(D("112.951"), 2, False) == D("112.95")
    assert round_price(D("112.95"), 2, True) == D("112.95")
    with pytest.raises(ValueError):
        round_price(D("0.0000001"), 6, False)  # no valid sell price at or below
    assert round_price(D("0.0000001"), 6, True) == D("1")
    with pytest.raises(ValueError):
        round_price(D("-1"), 2, True)


prices = st.builds(lambda digits, exp: D(digits).scaleb(exp), st.integers(1, 10**9), st.integers(-12, 3))


@settings(max_examples=500)
@given(prices, st.integers(0, 6), st.booleans())
def test_round_price_properties(px: D, sz_dec: int, is_buy: bool) -> None:
    try:
        out = round_price(px, sz_dec, is_buy)
    except ValueError:
        assert not is_buy  # only a sell can have no valid price on its side
        return
    assert is_valid_price(out, sz_dec)
    decimal_to_wire(out)  # always writable
    if is_buy:
        assert out >= px
    else:
        assert out <= px
    if out != px:
        # Minimal move: nothing valid strictly between px and out on the tick grid nearest to px.
        tick = price_tick(px, sz_dec)
        between = out - tick if is_buy else out + tick
        if (is_buy and between > px) or (not is_buy and between < px):
            assert not is_valid_price(between, sz_dec)
        assert abs(out - px) <= tick


@settings(max_examples=300)
@given(st.integers(0, 10**12), st.integers(0, 12), st.integers(0, 6))
def test_floor_size(units: int, places: int, sz_dec: int) -> None:
    sz = D(units).scaleb(-places)
    out = floor_size(sz, sz_dec)
    assert out <= sz
    assert sz - out < D(1).scaleb(-sz_dec)
    assert out == 0 or is_valid_size(out, sz_dec)


def test_floor_size_examples() -> None:
    assert floor_size(D("0.1928733304402333767298326824"), 3) == D("0.192")
    assert floor_size(D("0.0009"), 3) == 0
    assert decimal_to_wire(floor_size(D("2.70"), 2)) == "2.7"


def test_order_wire_key_order_and_bytes() -> None:
    w = order_wire(110026, True, D("112.95"), D("2.7"), False, "Ioc", "0xd2ed5e997c5a4cb9946d84c35f0b737c")
    assert list(w) == ["a", "b", "p", "s", "r", "t", "c"]
    assert w == {
        "a": 110026,
        "b": True,
        "p": "112.95",
        "s": "2.7",
        "r": False,
        "t": {"limit": {"tif": "Ioc"}},
        "c": "0xd2ed5e997c5a4cb9946d84c35f0b737c",
    }
    packed = msgpack.packb(w)
    assert bytes.fromhex("ce0001adca") in packed  # 110026 as uint32
    assert b"\xd9\x22" in packed  # 34-char cloid as str8
    w2 = order_wire(1, False, D("100.0"), D("1.50"), True)
    assert list(w2) == ["a", "b", "p", "s", "r", "t"] and w2["p"] == "100" and w2["s"] == "1.5"
    act = wire.order_action([w, w2])
    assert list(act) == ["type", "orders", "grouping"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"px": D("0")},
        {"sz": D("0")},
        {"sz": D("-1")},
        {"px": D("1e-9")},
        {"tif": "ioc"},
        {"cloid": "0xABCDEF00000000000000000000000000"},
        {"cloid": "0x1234"},
        {"asset": -1},
        {"asset": True},
    ],
)
def test_order_wire_refuses(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"asset": 1, "is_buy": True, "px": D("1"), "sz": D("1"), "reduce_only": False}
    args.update(kwargs)
    with pytest.raises(ValueError):
        order_wire(**args)  # type: ignore[arg-type]


def test_other_actions() -> None:
    assert wire.cancel_action([(110026, 302228651101)]) == {
        "type": "cancel",
        "cancels": [{"a": 110026, "o": 302228651101}],
    }
    c = wire.cancel_by_cloid_action([(110026, "0x0000000000000000000000000000002a")])
    assert c == {"type": "cancelByCloid", "cancels": [{"asset": 110026, "cloid": "0x0000000000000000000000000000002a"}]}
    assert wire.schedule_cancel_action(None) == {"type": "scheduleCancel"}
    assert list(wire.schedule_cancel_action(1769594125000)) == ["type", "time"]
    assert wire.noop_action() == {"type": "noop"}
    assert list(wire.update_leverage_action(110026, 3)) == ["type", "asset", "isCross", "leverage"]
    for bad in (lambda: wire.cancel_action([]), lambda: wire.order_action([]), lambda: wire.schedule_cancel_action(0)):
        with pytest.raises(ValueError):
            bad()


def test_cloids() -> None:
    seen = {wire.new_cloid() for _ in range(2000)}
    assert len(seen) == 2000
    assert all(wire.is_valid_cloid(c) for c in seen)
    assert not wire.is_valid_cloid("0x" + "A" * 32)
    assert not wire.is_valid_cloid("0x" + "a" * 31)
    assert not wire.is_valid_cloid(None)
    assert not wire.is_valid_cloid("0x" + "a" * 32 + "\n")

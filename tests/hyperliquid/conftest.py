"""Shared strategies for the protocol-library tests (test-only keys; never real ones)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

# The official SDK test key (its signing test vectors). Public, worthless; never use it for anything real.
SDK_TEST_KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
SDK_TEST_ADDRESS = "0x14791697260e4c9a71f18484c9f997b308e59325"

hex_addr = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
cloids = st.binary(min_size=16, max_size=16).map(lambda b: "0x" + b.hex())
assets = st.one_of(st.integers(0, 300), st.integers(110000, 119999), st.integers(10000, 10500))


@st.composite
def decimals_wire(draw: st.DrawFn) -> Decimal:
    digits = draw(st.integers(1, 10**9))
    exp = draw(st.integers(-8, 3))
    return Decimal(digits).scaleb(exp)

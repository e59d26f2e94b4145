"""Signing: official vector, eth-account generic path, and the official SDK as oracle (the wire
variables that made the exchange refuse every order: r/s without 0x, v as a string, source)."""

from __future__ import annotations

import msgpack
import msgspec
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hyperliquid.utils import signing as sdk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hip3.hyperliquid import wire
from hip3.hyperliquid.signing import (
    Signer,
    action_hash,
    address_from_private_key,
    l1_digest,
    recover_l1_signer,
    sign_l1_action,
)

from .conftest import SDK_TEST_ADDRESS, SDK_TEST_KEY, assets, cloids, decimals_wire, hex_addr

VECTOR_ACTION = {
    "type": "order",
    "orders": [{"a": 1, "b": True, "p": "100", "s": "100", "r": False, "t": {"limit": {"tif": "Gtc"}}}],
    "grouping": "na",
}
VECTOR_MSGPACK = (
    "83a474797065a56f72646572a66f72646572739186a16101a162c3a170a3313030a173a3313030a172c2a17481a56c"
    "696d697481a3746966a3477463a867726f7570696e67a26e61"
)
VECTOR_R = "0xd65369825a9df5d80099e513cce430311d7d26ddf477f5b3a33d2806b100d78e"
VECTOR_S = "0x2b54116ff64054968aa237c20ca9ff68000f977c93289157748a3162b6ea940e"


def test_official_vector_intermediates() -> None:
    assert msgspec.msgpack.encode(VECTOR_ACTION).hex() == VECTOR_MSGPACK
    cid = action_hash(VECTOR_ACTION, None, 0)
    assert cid.hex() == "884f2c32bb6dbdd65f6033e32fb28c0cb6f5b345db0f6471fd3366d85c9252c1"
    assert l1_digest(cid, True).hex() == "a5cfed1f2d7948de30aecacc7fea3c5e05c1e759020e96239847879b906f801e"


def test_official_vector_signature() -> None:
    sig = sign_l1_action(SDK_TEST_KEY, VECTOR_ACTION, None, 0, True)
    assert sig == {"r": VECTOR_R, "s": VECTOR_S, "v": 28}
    assert Signer(SDK_TEST_KEY).sign_action(VECTOR_ACTION, None, 0, True) == sig
    assert address_from_private_key(SDK_TEST_KEY) == SDK_TEST_ADDRESS


def test_signature_format_padded_hex_and_int_v() -> None:
    signer = Signer(SDK_TEST_KEY)
    for nonce in range(40):  # some r/s have leading zero nibbles; they must stay 64 digits
        sig = signer.sign_action(wire.noop_action(), None, nonce, nonce % 2 == 0)
        assert isinstance(sig["r"], str) and isinstance(sig["s"], str)
        assert len(sig["r"]) == 66 and sig["r"].startswith("0x")
        assert len(sig["s"]) == 66 and sig["s"].startswith("0x")
        assert type(sig["v"]) is int and sig["v"] in (27, 28)


def test_repr_hides_key() -> None:
    signer = Signer(SDK_TEST_KEY)
    key_hex = SDK_TEST_KEY[2:]
    for text in (repr(signer), str(signer), f"{signer}"):
        assert key_hex not in text and "0123456789012345678901234567890123456789" not in text
        assert SDK_TEST_ADDRESS in text
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(signer)


def test_bad_keys_never_echo() -> None:
    bad = "0x" + "zz" * 32
    with pytest.raises(ValueError) as exc:
        Signer(bad)
    assert "zz" not in str(exc.value)
    with pytest.raises(ValueError):
        Signer("0x1234")


# ---------- random actions ----------


@st.composite
def order_actions(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(1, 4))
    wires = []
    for _ in range(n):
        wires.append(
            wire.order_wire(
                draw(assets),
                draw(st.booleans()),
                draw(decimals_wire()),
                draw(decimals_wire()),
                draw(st.booleans()),
                draw(st.sampled_from(["Ioc", "Gtc", "Alo"])),
                draw(st.none() | cloids),
            )
        )
    return wire.order_action(wires)


actions = st.one_of(
    order_actions(),
    st.lists(st.tuples(assets, st.integers(0, 2**63)), min_size=1, max_size=3).map(wire.cancel_action),
    st.lists(st.tuples(assets, cloids), min_size=1, max_size=3).map(wire.cancel_by_cloid_action),
    st.one_of(st.none(), st.integers(1, 2**53)).map(wire.schedule_cancel_action),
    st.just(wire.noop_action()),
    st.builds(wire.update_leverage_action, assets, st.integers(1, 50)),
)
nonces = st.integers(0, 2**63)
expiries = st.none() | st.integers(0, 2**62)

_SDK_WALLET = Account.from_key(SDK_TEST_KEY)
_SIGNER = Signer(SDK_TEST_KEY)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=actions, vault=st.none() | hex_addr, nonce=nonces, expires=expiries, mainnet=st.booleans())
def test_matches_sdk(
    action: dict[str, object], vault: str | None, nonce: int, expires: int | None, mainnet: bool
) -> None:
    assert msgspec.msgpack.encode(action) == msgpack.packb(action)
    assert action_hash(action, vault, nonce, expires) == bytes(sdk.action_hash(action, vault, nonce, expires))
    expected = sdk.sign_l1_action(_SDK_WALLET, action, vault, nonce, expires, mainnet)
    ours = _SIGNER.sign_action(action, vault, nonce, mainnet, expires)
    assert int(str(ours["r"]), 16) == int(expected["r"], 16)
    assert int(str(ours["s"]), 16) == int(expected["s"], 16)
    assert ours["v"] == expected["v"]
    # Recovery round trip, with our padded form and the SDK's minimal-hex form.
    assert recover_l1_signer(action, vault, nonce, ours, mainnet, expires) == SDK_TEST_ADDRESS
    assert recover_l1_signer(action, vault, nonce, expected, mainnet, expires) == SDK_TEST_ADDRESS
    sdk_rec = sdk.recover_agent_or_user_from_l1_action(action, ours, vault, nonce, expires, mainnet)
    assert sdk_rec.lower() == SDK_TEST_ADDRESS


@settings(max_examples=30, deadline=None)
@given(action=actions, nonce=nonces, mainnet=st.booleans())
def test_matches_eth_account_generic(action: dict[str, object], nonce: int, mainnet: bool) -> None:
    cid = action_hash(action, None, nonce)
    typed = sdk.l1_payload({"source": "a" if mainnet else "b", "connectionId": cid})
    signable = encode_typed_data(full_message=typed)
    signed = Account.sign_message(signable, SDK_TEST_KEY)
    ours = _SIGNER.sign_action(action, None, nonce, mainnet)
    assert (int(str(ours["r"]), 16), int(str(ours["s"]), 16), ours["v"]) == (signed.r, signed.s, signed.v)


def test_recover_wrong_network_or_nonce_gives_other_address() -> None:
    sig = _SIGNER.sign_action(VECTOR_ACTION, None, 5, True)
    assert recover_l1_signer(VECTOR_ACTION, None, 5, sig, False) != SDK_TEST_ADDRESS
    assert recover_l1_signer(VECTOR_ACTION, None, 6, sig, True) != SDK_TEST_ADDRESS


@pytest.mark.parametrize(
    "sig",
    [
        {"r": VECTOR_R, "s": VECTOR_S},
        {"r": VECTOR_R, "s": VECTOR_S, "v": "28"},
        {"r": VECTOR_R, "s": VECTOR_S, "v": 29},
        {"r": VECTOR_R, "s": VECTOR_S, "v": True},
        {"r": "0xzz", "s": VECTOR_S, "v": 28},
        {"r": "0x", "s": VECTOR_S, "v": 28},
        {"r": "0x" + "f" * 64, "s": VECTOR_S, "v": 28},
        {"r": "0x0", "s": VECTOR_S, "v": 28},
        {"r": VECTOR_R, "s": "0x" + "1" * 65, "v": 28},
        {"r": 5.0, "s": VECTOR_S, "v": 28},
        "not a dict",
    ],
)
def test_recover_rejects_malformed(sig: object) -> None:
    with pytest.raises(ValueError):
        recover_l1_signer(VECTOR_ACTION, None, 0, sig, True)  # type: ignore[arg-type]


def test_recover_accepts_unpadded_and_unprefixed() -> None:
    sig = {"r": hex(int(VECTOR_R, 16)), "s": VECTOR_S[2:], "v": 28}
    assert recover_l1_signer(VECTOR_ACTION, None, 0, sig, True) == SDK_TEST_ADDRESS


def test_expires_after_and_vault_change_hash() -> None:
    base = action_hash(VECTOR_ACTION, None, 1)
    assert action_hash(VECTOR_ACTION, None, 1, 10) != base
    assert action_hash(VECTOR_ACTION, "0x" + "11" * 20, 1) != base
    with pytest.raises(ValueError):
        action_hash(VECTOR_ACTION, "0x1234", 1)
    with pytest.raises(ValueError):
        action_hash(VECTOR_ACTION, None, -1)
    with pytest.raises(ValueError):
        l1_digest(b"short", True)


def test_unencodable_action_raises_value_error_only() -> None:
    import pytest

    from hip3.hyperliquid.signing import action_hash

    with pytest.raises(ValueError, match="msgpack"):
        action_hash({"type": "noop", "x": 2**70}, None, 1)

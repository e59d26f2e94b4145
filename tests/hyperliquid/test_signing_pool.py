"""The signer's nonce pool: precomputed single-use ECDSA nonces (``Signer(pool_size=...)``).

A pooled signature differs from RFC 6979's (another ``k``) but must be an ordinary, valid, low-s
signature that the SDK and eth-account recover to the same address; no nonce may ever sign twice, in
this process or a forked child.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from eth_account import Account
from hyperliquid.utils import signing as sdk
from hypothesis import HealthCheck, given, settings

from hip3.hyperliquid import signing, wire
from hip3.hyperliquid.signing import Signer, action_hash, l1_digest, recover_l1_signer

from .conftest import SDK_TEST_ADDRESS, SDK_TEST_KEY
from .test_signing import actions, expiries, nonces

N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)


def _ints(sig: dict[str, object]) -> tuple[int, int, int]:
    return int(str(sig["r"]), 16), int(str(sig["s"]), 16), int(sig["v"])  # type: ignore[call-overload]


def test_pooled_signatures_recover_and_are_low_s() -> None:
    signer = Signer(SDK_TEST_KEY, pool_size=80)
    assert signer.refill() == 80 and signer.pooled == 80
    rs = set()
    ys = set()
    for nonce in range(80):
        order = wire.order_wire(nonce % 7, nonce % 2 == 0, Decimal("101.5"), Decimal("0.1"), False, "Ioc", None)
        action = wire.order_action([order])
        sig = signer.sign_action(action, None, nonce, nonce % 3 == 0, 1_700_000_000_000 + nonce)
        assert signer.pooled == 79 - nonce  # one nonce spent per signature
        r, s, v = _ints(sig)
        assert 0 < r < N and 0 < s <= N // 2 and v in (27, 28)
        assert len(str(sig["r"])) == 66 and len(str(sig["s"])) == 66
        digest = l1_digest(action_hash(action, None, nonce, 1_700_000_000_000 + nonce), nonce % 3 == 0)
        assert Account._recover_hash(digest, vrs=(v, r, s)).lower() == SDK_TEST_ADDRESS
        assert recover_l1_signer(action, None, nonce, sig, nonce % 3 == 0, 1_700_000_000_000 + nonce) == (
            SDK_TEST_ADDRESS
        )
        rs.add(r)
        ys.add(v)
    assert len(rs) == 80  # every signature used its own nonce
    assert ys == {27, 28}  # both recovery ids occur (and survive the low-s flip)


_POOLED = Signer(SDK_TEST_KEY, pool_size=4096)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=actions, nonce=nonces, expires=expiries)
def test_pooled_signature_accepted_by_the_sdk_oracle(action: dict[str, object], nonce: int,
                                                      expires: int | None) -> None:
    if _POOLED.pooled == 0:
        _POOLED.refill(200)
    before = _POOLED.pooled
    sig = _POOLED.sign_action(action, None, nonce, False, expires)
    assert _POOLED.pooled == before - 1
    assert sdk.recover_agent_or_user_from_l1_action(action, sig, None, nonce, expires, False).lower() == (
        SDK_TEST_ADDRESS
    )


def test_empty_pool_falls_back_to_rfc6979() -> None:
    pooled = Signer(SDK_TEST_KEY, pool_size=2)
    plain = Signer(SDK_TEST_KEY)
    action = wire.noop_action()
    assert pooled.pooled == 0  # nothing precomputed until refill
    assert pooled.sign_action(action, None, 5, True) == plain.sign_action(action, None, 5, True)
    pooled.refill()
    a = pooled.sign_action(action, None, 6, True)
    b = pooled.sign_action(action, None, 6, True)
    c = pooled.sign_action(action, None, 6, True)  # pool empty again: deterministic
    assert a != b and a["r"] != b["r"]  # two pooled nonces, two different signatures of one message
    assert c == plain.sign_action(action, None, 6, True)
    assert pooled.refill(max_new=1) == 1 and pooled.refill() == 1 and pooled.refill() == 0


def test_refill_respects_pool_size_and_bad_size_refused() -> None:
    with pytest.raises(ValueError):
        Signer(SDK_TEST_KEY, pool_size=-1)
    pooled = Signer(SDK_TEST_KEY, pool_size=1)
    pooled.refill()
    with pytest.raises(ValueError, match="32 bytes"):
        pooled.sign_digest(b"\x01" * 31)  # never signed from the pool with a wrong-length digest
    assert pooled.pooled == 1
    off = Signer(SDK_TEST_KEY)
    assert off.refill() == 0 and off.pooled == 0


def test_pool_never_crosses_a_fork() -> None:
    """A forked child inherits the parent's memory: it must not spend the parent's nonces (the same k
    on two different digests gives the key away)."""
    signer = Signer(SDK_TEST_KEY, pool_size=8)
    signer.refill()
    action = wire.noop_action()
    expected_child = Signer(SDK_TEST_KEY).sign_action(action, None, 9, True)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what its signer does, then leave without running pytest's teardown
        try:
            ok = signer.pooled == 0 and signer.sign_action(action, None, 9, True) == expected_child
            os.write(write_fd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        got = os.read(read_fd, 1)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    assert got == b"1"
    assert signer.pooled == 8  # the parent's pool is untouched


def test_a_stale_pid_pool_is_ignored_even_without_the_fork_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = Signer(SDK_TEST_KEY, pool_size=3)
    signer.refill()
    real_pid = os.getpid()
    monkeypatch.setattr(signing.os, "getpid", lambda: real_pid + 1)
    plain = Signer(SDK_TEST_KEY)
    action = wire.noop_action()
    assert signer.pooled == 0
    assert signer.sign_action(action, None, 1, True) == plain.sign_action(action, None, 1, True)
    assert signer.refill() == 3  # the new process's own pool, the old entries dropped
    assert signer.pooled == 3


def test_pool_holds_no_secret_in_repr() -> None:
    signer = Signer(SDK_TEST_KEY, pool_size=2)
    signer.refill()
    assert SDK_TEST_KEY[2:] not in repr(signer) and "pool" not in repr(signer)

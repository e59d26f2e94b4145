"""L1 ("phantom agent") signing of Hyperliquid trading actions.

Guards against the signing failures that cost the Rust original days on mainnet (every order refused
with "Error parsing JSON into valid websocket request" while wire variables were changed several at a
time; golden-signature tests against the official SDK settle them one by one):

* The action is msgpacked as a map in *insertion order* with msgpack-python>=1.0 default encodings
  (msgspec's msgpack encoder produces identical bytes; the tests prove it against ``msgpack``).
  A wrong key order, ``null`` instead of an omitted key or trailing zeros make the server recover a
  random address ("User or API Wallet 0x… does not exist").
* The signature is ``{"r": "0x"+64 hex, "s": "0x"+64 hex, "v": 27|28}`` with an *integer* ``v``;
  r/s without ``0x`` gave "Error parsing JSON into valid websocket request".
* ``source`` is ``"a"`` on mainnet, ``"b"`` on testnet; the EIP-712 chainId is 1337 on both.

Fast path: msgspec msgpack + pycryptodome keccak + coincurve ``sign_recoverable`` with
a key object built once (``Signer``), and precomputed EIP-712 domain separator / type hash; with a nonce
pool (``Signer(pool_size=...)``, the executor's default) the point multiplication is done ahead of time
too: a whole order signs in about 7 µs instead of 32 (``bench.signing``). The generic eth-account
typed-data path is only used by tests as an oracle.

Never log or repr a private key.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import coincurve
import msgspec
from Crypto.Hash import keccak as _keccak_mod

__all__ = [
    "AGENT_TYPE_HASH",
    "DOMAIN_SEPARATOR",
    "Signer",
    "action_hash",
    "address_from_private_key",
    "keccak256",
    "l1_digest",
    "recover_l1_signer",
    "sign_l1_action",
]

_SECP256K1_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)  # the curve order
_HALF_N = _SECP256K1_N // 2
_U64_MAX = (1 << 64) - 1


def _keccak256_portable(data: bytes) -> bytes:
    return _keccak_mod.new(digest_bits=256, data=data).digest()


def _make_fast_keccak() -> Callable[[bytes], bytes] | None:
    """Keccak-256 on pycryptodome's C core through cffi, reusing one state per thread.

    pycryptodome's ``keccak.new`` builds a Python object, a smart pointer and a buffer per call (about
    4.7 us here); calling the same C functions directly costs about 2 us. Falls back to the portable
    path when pycryptodome runs on its ctypes backend or its internals differ.
    """
    try:
        from Crypto.Hash.keccak import _raw_keccak_lib as lib  # type: ignore[attr-defined]
        from Crypto.Util import _raw_api

        if getattr(_raw_api, "backend", None) != "cffi":
            return None
        ffi = _raw_api.ffi
    except Exception:
        return None
    local = threading.local()

    def state() -> tuple[Any, Any]:
        pp = ffi.new("void **")
        if lib.keccak_init(pp, 64, 24) != 0:  # capacity 2*32 bytes, 24 rounds = Keccak-256
            raise RuntimeError("keccak_init failed")
        st = ffi.gc(pp[0], lib.keccak_destroy)
        local.st = (st, ffi.new("uint8_t[32]"))
        return local.st  # type: ignore[no-any-return]

    reset, absorb, digest, buffer = lib.keccak_reset, lib.keccak_absorb, lib.keccak_digest, ffi.buffer

    def keccak_cffi(data: bytes) -> bytes:
        try:
            st, out = local.st
        except AttributeError:
            st, out = state()
        reset(st)
        absorb(st, data, len(data))
        digest(st, out, 32, 0x01)  # 0x01 = original Keccak padding (not SHA3's 0x06)
        return buffer(out)[:]  # type: ignore[no-any-return]

    try:
        if keccak_cffi(b"abc") != _keccak256_portable(b"abc") or keccak_cffi(b"") != _keccak256_portable(b""):
            return None
    except Exception:
        return None
    return keccak_cffi


def _make_pysha3_keccak() -> Callable[[bytes], bytes] | None:
    """Keccak-256 from safe-pysha3 (a C extension: about 0.7 us per short hash here, against 1.5 us for
    the cffi path); checked against pycryptodome before it is trusted."""
    try:
        import sha3  # type: ignore[import-untyped,unused-ignore]  # safe-pysha3
    except ImportError:
        return None
    new = sha3.keccak_256

    def keccak_pysha3(data: bytes) -> bytes:
        return new(data).digest()  # type: ignore[no-any-return]

    for probe in (b"", b"abc", bytes(range(256)) * 3):
        if keccak_pysha3(probe) != _keccak256_portable(probe):
            return None
    return keccak_pysha3


keccak256: Callable[[bytes], bytes] = _make_pysha3_keccak() or _make_fast_keccak() or _keccak256_portable
keccak256.__doc__ = "Keccak-256 (Ethereum's, not SHA3-256) of ``data``."


# EIP-712 constants. Computed, then checked against the documented values at import so a
# typo in the type strings can never ship silently.
_DOMAIN_TYPE_HASH = keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
_CHAIN_ID = 1337
DOMAIN_SEPARATOR: bytes = keccak256(
    _DOMAIN_TYPE_HASH + keccak256(b"Exchange") + keccak256(b"1") + _CHAIN_ID.to_bytes(32, "big") + bytes(32)
)
AGENT_TYPE_HASH: bytes = keccak256(b"Agent(string source,bytes32 connectionId)")
assert DOMAIN_SEPARATOR.hex() == "d79297fcdf2ffcd4ae223d01edaa2ba214ff8f401d7c9300d995d17c82aa4040"
assert AGENT_TYPE_HASH.hex() == "26f05c2f7239b6983075e58321292d77b3aa173d19b27257ac96ab362570f508"

# structHash = keccak(AGENT_TYPE_HASH ‖ keccak(source) ‖ connectionId): everything but the id is fixed.
_STRUCT_PREFIX_MAINNET = AGENT_TYPE_HASH + keccak256(b"a")
_STRUCT_PREFIX_TESTNET = AGENT_TYPE_HASH + keccak256(b"b")
_DIGEST_PREFIX = b"\x19\x01" + DOMAIN_SEPARATOR

# One encoder for the process. msgspec encodes dicts in insertion order, ints in the smallest form and
# str with fixstr/str8/str16/str32, exactly as msgpack-python>=1.0 with its defaults (use_bin_type=True).
_MSGPACK = msgspec.msgpack.Encoder()
_pack_u64 = struct.Struct(">Q").pack


def _vault_bytes(vault_address: str | None) -> bytes:
    if vault_address is None:
        return b"\x00"
    hex_part = vault_address[2:] if vault_address[:2] in ("0x", "0X") else vault_address
    raw = bytes.fromhex(hex_part)
    if len(raw) != 20:
        raise ValueError(f"vault_address must be 20 bytes, got {vault_address!r}")
    return b"\x01" + raw


def action_hash(
    action: dict[str, object], vault_address: str | None, nonce: int, expires_after: int | None = None
) -> bytes:
    """The connectionId: keccak256(msgpack(action) ‖ nonce u64 BE ‖ vault tag ‖ [0x00 ‖ expiresAfter u64 BE]).

    The expiresAfter segment (tag 0x00, not 0x01) comes from the SDK source only; there is no official
    vector for it [UNVERIFIED].
    """
    if not 0 <= nonce <= _U64_MAX:
        raise ValueError(f"nonce out of u64 range: {nonce}")
    try:
        packed = _MSGPACK.encode(action)
    except (OverflowError, TypeError, msgspec.EncodeError) as e:  # e.g. an integer >= 2**64 in the action
        raise ValueError(f"action cannot be msgpack-encoded: {e}") from None
    data = packed + _pack_u64(nonce) + _vault_bytes(vault_address)
    if expires_after is not None:
        if not 0 <= expires_after <= _U64_MAX:
            raise ValueError(f"expires_after out of u64 range: {expires_after}")
        data += b"\x00" + _pack_u64(expires_after)  # [UNVERIFIED] tag byte 0x00, per SDK source
    return keccak256(data)


def l1_digest(connection_id: bytes, is_mainnet: bool) -> bytes:
    """EIP-712 digest of the phantom agent ``{source: "a"|"b", connectionId}``."""
    if len(connection_id) != 32:
        raise ValueError(f"connection_id must be 32 bytes, got {len(connection_id)}")
    prefix = _STRUCT_PREFIX_MAINNET if is_mainnet else _STRUCT_PREFIX_TESTNET
    return keccak256(_DIGEST_PREFIX + keccak256(prefix + connection_id))


def _key_bytes(private_key: str) -> bytes:
    hex_part = private_key[2:] if private_key[:2] in ("0x", "0X") else private_key
    try:
        raw = bytes.fromhex(hex_part)
    except ValueError:
        raise ValueError("private key is not hex") from None  # never echo the key
    if len(raw) != 32:
        raise ValueError("private key must be 32 bytes")
    return raw


def _address_of(public_key: coincurve.PublicKey) -> str:
    return "0x" + keccak256(public_key.format(compressed=False)[1:])[-20:].hex()


def _signature_dict(sig65: bytes) -> dict[str, object]:
    # r/s as "0x" + 64 zero-padded hex digits, v as an int (without "0x" the exchange cannot parse it).
    return {"r": "0x" + sig65[:32].hex(), "s": "0x" + sig65[32:64].hex(), "v": 27 + sig65[64]}


class _PoolEntry(NamedTuple):
    """One single-use ECDSA nonce, precomputed: everything of a signature that does not depend on the
    message. ``k`` itself is not kept."""

    k_inv: int  # k^-1 mod n
    r_d: int  # r * d mod n (d: the private key)
    r_hex: str  # "0x" + 64 hex digits of r
    y_odd: int  # parity of R.y (the recovery id before low-s normalisation)


_live_signers: weakref.WeakSet[Signer] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    # A forked child must never spend a nonce its parent may also spend: a nonce used for two different
    # digests gives the private key away. ``sign_digest`` also checks the pid; this empties the pools.
    for signer in list(_live_signers):
        signer._pool.clear()


os.register_at_fork(after_in_child=_forget_pools_after_fork)


class Signer:
    """An L1-action signer holding a secp256k1 key built once (the hot path of the executor).

    ``address`` is the lower-case signer (API wallet) address. The key never appears in ``repr``.

    **Nonce pool** (``pool_size`` > 0, off by default here; the executor turns it on). An ECDSA signature
    is ``r = (k·G).x``, ``s = k⁻¹(z + r·d) mod n``; the point multiplication ``k·G`` is nearly all of the
    25 µs that libsecp256k1 spends, and it does not depend on the message. ``refill`` (called off the hot
    path, by the executor's timer) draws ``k`` uniformly from the OS CSPRNG and precomputes ``k·G``,
    ``k⁻¹`` and ``r·d``; ``sign_digest`` then costs two modular multiplications. The signature is an
    ordinary one (low-s, recovery id as libsecp256k1's) and recovers the same address; only ``k`` differs
    from RFC 6979's deterministic choice. Safety rules, each tested:

    * an entry is removed from the pool before it is used and never put back: no ``k`` signs twice;
    * the pool belongs to the process that filled it: it is emptied in a forked child and ignored if
      the pid changed;
    * an empty pool falls back to libsecp256k1's deterministic signing (RFC 6979), so a burst of orders
      never waits for a refill.

    The modular arithmetic runs in Python integers, which are not constant-time; the variation is far
    below the network's jitter, so a remote observer cannot time it. [design note, not a proof]
    """

    __slots__ = ("__weakref__", "_d", "_key", "_pool", "_pool_pid", "address", "pool_size")

    def __init__(self, private_key: str, pool_size: int = 0) -> None:
        raw = _key_bytes(private_key)
        self._key = coincurve.PrivateKey(raw)
        self._d = int.from_bytes(raw, "big")
        self.address: str = _address_of(self._key.public_key)
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self._pool: deque[_PoolEntry] = deque()
        self._pool_pid = os.getpid()
        _live_signers.add(self)

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Signer must not be pickled (it holds a private key)")

    @property
    def pooled(self) -> int:
        """Precomputed nonces ready in this process."""
        return len(self._pool) if self._pool_pid == os.getpid() else 0

    def refill(self, max_new: int | None = None) -> int:
        """Precompute nonces until the pool holds ``pool_size`` (at most ``max_new`` this call, about
        40 µs each: ``bench.signing``'s ``nonce_precompute_us``). Returns how many were added."""
        pid = os.getpid()
        if pid != self._pool_pid:
            self._pool.clear()
            self._pool_pid = pid
        want = self.pool_size - len(self._pool)
        if max_new is not None:
            want = min(want, max_new)
        added = 0
        d = self._d
        for _ in range(max(0, want)):
            k = secrets.randbelow(_SECP256K1_N - 1) + 1
            point = coincurve.PublicKey.from_secret(k.to_bytes(32, "big")).format(compressed=True)
            r = int.from_bytes(point[1:], "big")
            if r >= _SECP256K1_N:  # R.x >= n: probability ~2^-128; skip rather than handle recid 2/3
                continue
            self._pool.append(_PoolEntry(pow(k, -1, _SECP256K1_N), r * d % _SECP256K1_N, f"0x{r:064x}",
                                         point[0] - 2))
            added += 1
        return added

    def sign_digest(self, digest: bytes) -> dict[str, object]:
        """Sign a 32-byte digest: from the nonce pool when it has an entry, else RFC 6979."""
        if len(digest) != 32:
            raise ValueError(f"digest must be 32 bytes, got {len(digest)}")
        pool = self._pool
        if pool and self._pool_pid == os.getpid():
            e = pool.popleft()  # removed before use: never signs twice
            s = e.k_inv * (int.from_bytes(digest, "big") % _SECP256K1_N + e.r_d) % _SECP256K1_N
            if s:  # s == 0 has probability ~2^-256; fall through to RFC 6979 then
                recid = e.y_odd
                if s > _HALF_N:  # low-s, as libsecp256k1 and Ethereum require
                    s = _SECP256K1_N - s
                    recid ^= 1
                return {"r": e.r_hex, "s": f"0x{s:064x}", "v": 27 + recid}
        return _signature_dict(self._key.sign_recoverable(digest, hasher=None))

    def sign_action(
        self,
        action: dict[str, object],
        vault_address: str | None,
        nonce: int,
        is_mainnet: bool,
        expires_after: int | None = None,
    ) -> dict[str, object]:
        """Sign an L1 action; the same inputs must go into the envelope sent to the exchange."""
        return self.sign_digest(l1_digest(action_hash(action, vault_address, nonce, expires_after), is_mainnet))


def sign_l1_action(
    private_key: str,
    action: dict[str, object],
    vault_address: str | None,
    nonce: int,
    is_mainnet: bool,
    expires_after: int | None = None,
) -> dict[str, object]:
    """One-shot signing (builds the key each call; use ``Signer`` on hot paths)."""
    return Signer(private_key).sign_action(action, vault_address, nonce, is_mainnet, expires_after)


def address_from_private_key(private_key: str) -> str:
    """Lower-case 0x address of a private key."""
    return Signer(private_key).address


def _parse_sig_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"signature {name} must be a hex string")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        hex_part = value[2:] if value[:2] in ("0x", "0X") else value
        if not hex_part or len(hex_part) > 64:
            raise ValueError(f"signature {name} has bad length: {value!r}")
        try:
            n = int(hex_part, 16)
        except ValueError:
            raise ValueError(f"signature {name} is not hex: {value!r}") from None
    else:
        raise ValueError(f"signature {name} must be a hex string, got {type(value).__name__}")
    if not 0 < n < _SECP256K1_N:
        raise ValueError(f"signature {name} out of range")
    return n


def recover_l1_signer(
    action: dict[str, object],
    vault_address: str | None,
    nonce: int,
    signature: dict[str, object],
    is_mainnet: bool,
    expires_after: int | None = None,
) -> str:
    """Recover the lower-case signer address of an L1 action (the simulator's authentication).

    r/s are compared as integers, so minimal hex (the SDK's form) and 64-digit padded hex both work.
    Raises ``ValueError`` for a malformed signature.
    """
    if not isinstance(signature, dict):
        raise ValueError("signature must be an object with r, s, v")
    try:
        r_raw, s_raw, v_raw = signature["r"], signature["s"], signature["v"]
    except KeyError as exc:
        raise ValueError(f"signature lacks {exc.args[0]!r}") from None
    r = _parse_sig_int(r_raw, "r")
    s = _parse_sig_int(s_raw, "s")
    if isinstance(v_raw, bool) or not isinstance(v_raw, int) or v_raw not in (27, 28):
        raise ValueError(f"signature v must be the integer 27 or 28, got {v_raw!r}")
    digest = l1_digest(action_hash(action, vault_address, nonce, expires_after), is_mainnet)
    sig65 = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v_raw - 27])
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(sig65, digest, hasher=None)
    except Exception as exc:  # coincurve raises a bare Exception/ValueError on an invalid signature
        raise ValueError(f"signature does not recover a key: {exc}") from None
    return _address_of(public_key)

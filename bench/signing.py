"""Benchmark: build + hash + sign one IOC order (hip3 fast path) vs eth-account's generic typed-data path.

Run: ``python -m bench.signing``. The last line is one JSON object with ``sign_order_median_us``,
``eth_account_median_us`` and ``ratio``. Uses a public test key only.
"""

from __future__ import annotations

import gc
import json
import secrets
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from eth_account import Account
from eth_account.messages import encode_typed_data

from hip3.hyperliquid import wire
from hip3.hyperliquid.signing import Signer, action_hash, recover_l1_signer
from hip3.runtime.percentiles import percentile_round

TEST_KEY = "0x" + secrets.token_hex(32)  # a throwaway key made for this run
CLOID = "0xd2ed5e997c5a4cb9946d84c35f0b737c"
NONCE = 1_769_594_065_700


def _typed(connection_id: bytes) -> dict[str, object]:
    return {
        "domain": {"chainId": 1337, "name": "Exchange", "verifyingContract": "0x" + "00" * 20, "version": "1"},
        "types": {
            "Agent": [{"name": "source", "type": "string"}, {"name": "connectionId", "type": "bytes32"}],
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
        },
        "primaryType": "Agent",
        "message": {"source": "a", "connectionId": connection_id},
    }


def _samples(fn: Callable[[], object], n: int, rounds: int = 3) -> list[float]:
    for _ in range(min(200, n)):
        fn()
    out: list[float] = []
    gc.disable()
    try:
        for _ in range(rounds):
            for _ in range(n):
                t0 = time.perf_counter_ns()
                fn()
                out.append((time.perf_counter_ns() - t0) / 1000.0)
    finally:
        gc.enable()
    return out


_ACTION = wire.order_action([wire.order_wire(110026, True, Decimal("112.95"), Decimal("2.7"), False, "Ioc", CLOID)])


def _pool_sign(signer: Signer) -> dict[str, object]:
    action = wire.order_action([wire.order_wire(110026, True, Decimal("112.95"), Decimal("2.7"), False, "Ioc", CLOID)])
    return signer.sign_action(action, None, NONCE, True)


def main() -> None:
    signer = Signer(TEST_KEY)
    account = Account.from_key(TEST_KEY)
    px, sz = Decimal("112.95"), Decimal("2.7")

    def fast() -> dict[str, object]:
        action = wire.order_action([wire.order_wire(110026, True, px, sz, False, "Ioc", CLOID)])
        return signer.sign_action(action, None, NONCE, True)

    def generic() -> tuple[int, int, int]:
        action = wire.order_action([wire.order_wire(110026, True, px, sz, False, "Ioc", CLOID)])
        signed = account.sign_message(encode_typed_data(full_message=_typed(action_hash(action, None, NONCE))))
        return signed.r, signed.s, signed.v

    ref = generic()
    sig = fast()
    assert (int(str(sig["r"]), 16), int(str(sig["s"]), 16), sig["v"]) == ref, "fast path disagrees"

    fast_s = _samples(fast, 3000)
    slow_s = _samples(generic, 300)
    # The executor's default: a precomputed single-use nonce per signature (refilled here beforehand,
    # off the timed call, as the executor's timer does after a send).
    pooled = Signer(TEST_KEY, pool_size=10_000)
    pooled.refill(1)
    recovered = recover_l1_signer(_ACTION, None, NONCE, _pool_sign(pooled), True)
    assert recovered == signer.address and pooled.pooled == 0, "pooled signature does not recover"
    pool_s: list[float] = []
    for _ in range(3):
        pooled.refill()  # 3,200 spent per round (200 warm-up calls + 3,000 timed): never empty
        pool_s += _samples(lambda: _pool_sign(pooled), 3000, rounds=1)
    refill_t0 = time.perf_counter_ns()
    added = pooled.refill(1000)
    refill_us = (time.perf_counter_ns() - refill_t0) / 1000.0 / max(added, 1)
    p50 = statistics.median(pool_s)
    f50, s50 = statistics.median(fast_s), statistics.median(slow_s)
    f99 = percentile_round(fast_s, 0.99)
    print(f"fast path (msgspec msgpack + keccak + coincurve): p50 {f50:.1f} us, p99 {f99:.1f} us, n={len(fast_s)}")
    print(f"eth-account encode_typed_data + sign_message:     p50 {s50:.1f} us, n={len(slow_s)}")
    print(f"ratio {s50 / f50:.1f}x")
    print(f"with a precomputed nonce (the executor's default): p50 {p50:.1f} us, n={len(pool_s)}; "
          f"precomputing one nonce {refill_us:.1f} us")
    print(
        json.dumps(
            {
                "sign_order_median_us": round(f50, 2),
                "sign_order_p99_us": round(f99, 2),
                "eth_account_median_us": round(s50, 2),
                "ratio": round(s50 / f50, 2),
                "sign_order_pooled_median_us": round(p50, 2),
                "nonce_precompute_us": round(refill_us, 2),
            }
        )
    )


if __name__ == "__main__":
    main()

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
from hip3.hyperliquid.signing import Signer, action_hash

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
    f50, s50 = statistics.median(fast_s), statistics.median(slow_s)
    f99 = statistics.quantiles(fast_s, n=100)[98]
    print(f"fast path (msgspec msgpack + keccak + coincurve): p50 {f50:.1f} us, p99 {f99:.1f} us, n={len(fast_s)}")
    print(f"eth-account encode_typed_data + sign_message:     p50 {s50:.1f} us, n={len(slow_s)}")
    print(f"ratio {s50 / f50:.1f}x")
    print(
        json.dumps(
            {
                "sign_order_median_us": round(f50, 2),
                "sign_order_p99_us": round(f99, 2),
                "eth_account_median_us": round(s50, 2),
                "ratio": round(s50 / f50, 2),
            }
        )
    )


if __name__ == "__main__":
    main()

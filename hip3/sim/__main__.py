"""``python -m hip3.sim``: run the exchange simulator as a process.

Prints ``SIM READY port=<n>`` on stdout once listening (the supervisor waits for that line), then serves
until SIGINT/SIGTERM. ``--fund ADDRESS:USD`` may repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from decimal import Decimal, InvalidOperation

from hip3.sim.app import SimServer
from hip3.sim.params import SimParams, SimParamsError


def _fund(s: str) -> tuple[str, Decimal]:
    addr, _, usd = s.rpartition(":")
    if not addr.startswith("0x") or len(addr) != 42:
        raise argparse.ArgumentTypeError(f"--fund wants ADDRESS:USD, got {s!r}")
    try:
        return addr.lower(), Decimal(usd)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"--fund: bad USD amount in {s!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hip3.sim", description="Local Hyperliquid HIP-3 exchange simulator"
    )
    ap.add_argument("--host", default=None, help="bind address (default from config: 127.0.0.1)")
    ap.add_argument("--port", type=int, default=None, help="port (0 = any free port)")
    ap.add_argument("--config", default=None, help="TOML file with a [sim] table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fund", type=_fund, action="append", default=[], metavar="ADDRESS:USD")
    ap.add_argument("--order-log", default=None, metavar="FILE", help="JSON Lines log of accepted actions")
    args = ap.parse_args(argv)
    try:
        params = SimParams.from_toml(args.config) if args.config else SimParams()
    except (SimParamsError, OSError) as e:
        print(f"hip3.sim: {e}", file=sys.stderr)
        return 2
    if args.host is not None or args.port is not None:
        import msgspec

        params = msgspec.structs.replace(
            params,
            host=args.host if args.host is not None else params.host,
            port=args.port if args.port is not None else params.port,
        )
    funds: dict[str, Decimal] = {}
    for addr, usd in args.fund:
        funds[addr] = funds.get(addr, Decimal(0)) + usd
    sim = SimServer(params, seed=args.seed, funds=funds, order_log=args.order_log)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        port = await sim.serve()
        print(f"SIM READY port={port}", flush=True)
        await stop.wait()
        await sim._shutdown()

    asyncio.run(run())
    sim.order_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Milliseconds per signed order with the SDK's order builder (coincurve makes it ~7x faster).

    python benchmarks/signing.py [--orders 300]
"""
from __future__ import annotations

import argparse
import statistics
import time

from eth_account import Account
from py_clob_client_v2 import OrderArgs
from py_clob_client_v2.order_builder.builder import OrderBuilder
from py_clob_client_v2.signer import Signer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    try:
        import coincurve  # noqa: F401
        backend = "coincurve"
    except ImportError:
        backend = "pure-Python eth_keys (install coincurve)"
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    builder = OrderBuilder(Signer(key, 137))
    token = str(2**250 + 12345)
    from py_clob_client_v2.clob_types import CreateOrderOptions

    opts = CreateOrderOptions(tick_size="0.01", neg_risk=False)
    times = []
    for i in range(args.orders):
        start = time.perf_counter()
        builder.build_order(OrderArgs(token_id=token, price=0.57, size=10 + i % 7, side="SELL"), opts, version=2)
        times.append((time.perf_counter() - start) * 1000)
    times = times[10:]  # warm-up
    print(f"signing backend: {backend}")
    p95 = sorted(times)[int(len(times) * 0.95)]
    print(f"{len(times)} V2 limit orders: mean {statistics.mean(times):.3f} ms, "
          f"median {statistics.median(times):.3f} ms, p95 {p95:.3f} ms per signed order")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

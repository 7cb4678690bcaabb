#!/usr/bin/env python3
"""Milliseconds per signed order, order id included, through the bot's own signing path (bot/venue/sdk.py on the
unified SDK, polymarket-client): V1 (CTF exchange) and Protocol V2 (ExchangeV3) orders, limit and fill-and-kill,
from a plain wallet and from a deposit wallet. Target: <= 2 ms per order. Nothing is sent.

    python benchmarks/signing.py [--orders 300] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from eth_account import Account  # noqa: E402

from bot.venue.sdk import Session  # noqa: E402
from bot.wallets import deposit_wallet_address  # noqa: E402

TARGET_MS = 2.0
V1_TOKEN = str(2**250 + 12345)
V2_TOKEN = str((0x01AB << 104) | 7)   # bits 40..103 zero: a Protocol V2 position id


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"signing sent a request: {request.method} {request.url}")


def session(deposit: bool) -> Session:
    acct = Account.create()
    funder = deposit_wallet_address(acct.address) if deposit else acct.address
    s = Session("http://signing.invalid", private_key=acct.key.hex(), funder=funder, signature_type=3 if deposit else 0,
                transport=httpx.MockTransport(_refuse))
    s.use_credentials("k", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=", "p")
    for token in (V1_TOKEN, V2_TOKEN):
        s.know_market([token], "0x" + token[-8:].rjust(64, "0"), Decimal("0.01"), False, Decimal("0.02"), 1)
    return s


def measure(orders: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for wallet in ("eoa", "deposit_wallet"):
        s = session(wallet == "deposit_wallet")
        for kind, token in (("v1", V1_TOKEN), ("v2", V2_TOKEN)):
            for order in ("limit", "fak"):
                times = []
                for i in range(orders):
                    start = time.perf_counter()
                    if order == "limit":
                        s.sign_limit(token, Decimal("0.57"), Decimal(10 + i % 7), "SELL", False)
                    else:
                        s.sign_market(token, "SELL", Decimal(10 + i % 7), Decimal("0.50"), False)
                    times.append((time.perf_counter() - start) * 1000)
                times = times[10:]   # warm-up
                rows[f"{wallet}/{kind}/{order}"] = {
                    "mean_ms": round(statistics.mean(times), 3), "median_ms": round(statistics.median(times), 3),
                    "p95_ms": round(sorted(times)[int(len(times) * 0.95)], 3)}
        s.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        import coincurve  # noqa: F401
        backend = "coincurve"
    except ImportError:
        backend = "pure-Python eth_keys (install coincurve)"
    rows = measure(max(args.orders, 20))
    worst = max(r["mean_ms"] for r in rows.values())
    if args.json:
        print(json.dumps({"backend": backend, "orders": rows, "worst_mean_ms": worst, "target_ms": TARGET_MS}))
    else:
        print(f"signing backend: {backend}")
        for name, r in rows.items():
            print(f"{name:28s} mean {r['mean_ms']:.3f} ms, median {r['median_ms']:.3f} ms, p95 {r['p95_ms']:.3f} ms")
        print(f"worst mean {worst:.3f} ms per signed order (target <= {TARGET_MS} ms)")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())

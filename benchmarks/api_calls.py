#!/usr/bin/env python3
"""API calls per hour by the number of open positions, counted by the simulated exchange.

For N = 5, 50 and 200 open positions and each exit mode, one simulated hour of the bot against
bot/sim at the default intervals (loop 10 s, order checks 30 s), with a simulated clock shared by the
bot and the exchange. Prints, from the SIMULATOR's request counts (not the bot's own), calls per hour
by endpoint and reads per loop, plus the bot's CPU milliseconds per loop (its own thread; the exchange's
threads and the network are excluded), beside the seed's arithmetic (legacy 6 x 60 x N per hour;
concurrent 16 per position).

    python benchmarks/api_calls.py [--json] [--sizes 5,50,200] [--minutes 60]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.clock import SimulatedClock  # noqa: E402
from bot.config import BotConfig  # noqa: E402
from bot.position_manager import ExitMode, Position, PositionState, PositionStore  # noqa: E402
from bot.scanner import MarketScanner  # noqa: E402
from bot.sim import SimExchange  # noqa: E402
from bot.venue.live import LiveVenue  # noqa: E402
from main_bot import Bot  # noqa: E402

READ_PREFIXES = ("GET ", "POST /books", "POST /prices", "POST /midpoints")


def seed_arithmetic(mode: str, n: int) -> int:
    """The seed's own estimate of calls per hour (legacy: a book per position per loop; concurrent:
    16 calls per position lifecycle)."""
    return 6 * 60 * n if mode == "monitor" else 16 * n


def build(sim: SimExchange, clock: SimulatedClock, workdir: Path, mode: ExitMode, n: int) -> Bot:
    """A bot holding ``n`` open positions in ``mode`` (TPs resting for limit_orders), counts reset."""
    config = BotConfig.model_validate({
        "bot": {"dry_run": False, "loop_interval_seconds": 10, "positions_file": str(workdir / "positions.json"),
                "log_file": None, "log_level": "WARNING"},
        "capital": {"total": 100000, "max_trade_size": 10, "max_positions": n},
        "trading": {"order_check_interval_seconds": 30},
        "strategy": {"take_profit_pct": "0.5", "stop_loss_pct": "0.9", "max_hold_hours": 48, "min_liquidity": 0,
                     "min_hours_to_end": 0},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url},
    })
    wallet = sim.new_wallet(usdc=100000)
    venue = LiveVenue(sim.clob_url, private_key=wallet["private_key"], funder=wallet["address"], clock=clock)
    bot = Bot(config, venue, MarketScanner.from_config(config), PositionStore(config.bot.positions_file), clock=clock)
    now = bot.now()
    for i in range(n):
        m = sim.create_market(f"Benchmark market {i}?", yes_price=0.5, volatility=0)
        yes = m["token_ids"][0]
        sim.fund(wallet["address"], token_id=yes, shares=20)
        pos = Position(token_id=yes, condition_id=m["condition_id"], market_id=m["id"], question=m["slug"],
                       exit_mode=mode, status=PositionState.OPEN, shares=Decimal(20), entry_shares=Decimal(20),
                       entry_price=Decimal("0.51"), entry_cost=Decimal("10.2"), tp_price=Decimal("0.77"),
                       sl_price=Decimal("0.05"), opened_at=now, updated_at=now)
        bot.state.add(pos)
        if mode == ExitMode.LIMIT_ORDERS:
            bot.manage.arm_tp(pos, now)
            assert pos.tp_order_id, "TP placement failed in the benchmark setup"
    bot._reconciled = True
    bot.save()
    return bot


def run_case(mode: ExitMode, n: int, minutes: float) -> dict:
    clock = SimulatedClock(start=1_800_000_000)
    with SimExchange(seed=1, clock=clock) as sim, tempfile.TemporaryDirectory() as tmp:
        bot = build(sim, clock, Path(tmp), mode, n)
        sim.reset_request_counts()
        loops = int(minutes * 60 / bot.config.bot.loop_interval_seconds)
        cpu = 0.0
        for _ in range(loops):
            started = time.thread_time()
            bot.run_once()
            cpu += time.thread_time() - started
            clock.advance(bot.config.bot.loop_interval_seconds)
        counts = sim.request_counts()["by_endpoint"]
        open_now = sum(1 for p in bot.state.positions if p.status == PositionState.OPEN)
        assert open_now == n, f"positions closed during the benchmark ({open_now}/{n} open)"
    per_hour = 60 / minutes
    reads = sum(v for k, v in counts.items() if k.startswith(READ_PREFIXES))
    return {
        "mode": mode.value,
        "positions": n,
        "calls_per_hour": round(sum(counts.values()) * per_hour),
        "reads_per_loop": round(reads / loops, 3),
        "by_endpoint": {k: round(v * per_hour) for k, v in sorted(counts.items())},
        "cpu_ms_per_loop": round(cpu / loops * 1000, 2),
        "seed_estimate_per_hour": seed_arithmetic(mode.value, n),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", default="5,50,200")
    parser.add_argument("--minutes", type=float, default=60)
    args = parser.parse_args()
    logging.getLogger("bot").setLevel(logging.WARNING)
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)
    results = []
    started = time.time()
    for n in (int(x) for x in args.sizes.split(",")):
        for mode in (ExitMode.MONITOR, ExitMode.LIMIT_ORDERS):
            results.append(run_case(mode, n, args.minutes))
    if args.json:
        print(json.dumps({"results": results}, indent=2))
        return 0
    print(f"One simulated hour per case ({args.minutes:g} min), loop 10 s, order checks 30 s; counts from bot/sim\n")
    print(f"{'mode':13} {'N':>4} {'calls/h':>8} {'seed est./h':>11} {'reads/loop':>10} {'CPU ms/loop':>11}"
          "  by endpoint")
    for r in results:
        eps = ", ".join(f"{k} {v}" for k, v in r["by_endpoint"].items())
        print(f"{r['mode']:13} {r['positions']:>4} {r['calls_per_hour']:>8} {r['seed_estimate_per_hour']:>11} "
              f"{r['reads_per_loop']:>10} {r['cpu_ms_per_loop']:>11}  {eps}")
    print(f"\n(wall time {time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

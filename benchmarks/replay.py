#!/usr/bin/env python3
"""How fast a replay runs (bot/replay, the bot's own loop over recorded prices): ``--markets`` markets of ``--days``
days at one price a minute (random walks on the tick, cached as a download would cache them), replayed from the
cache. Targets on 2 cores: 20 markets x 30 days (864,000 points) in <= 60 s; a 9-combination grid of it in <= 5
minutes; peak memory (RSS, the grid's processes included) <= 500 MB.

    python benchmarks/replay.py [--markets 20] [--days 30] [--grid] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import BotConfig  # noqa: E402
from bot.replay.backtest import Job, cache_markets, grid_pool, parse_grid, replay_markets, run_grid  # noqa: E402
from bot.replay.market import FillModel, ReplayMarket  # noqa: E402
from bot.replay.run import replay  # noqa: E402
from main_bot import Bot  # noqa: E402

T0 = 1_780_000_000
STEP = 60
GRID = ["take_profit_pct=0.05,0.10,0.15", "stop_loss_pct=0.05,0.10,0.15"]


def synthetic(markets: int, days: float, seed: int = 1) -> list[ReplayMarket]:
    """Random walks on the 0.01 grid (a step of -2..+2 ticks a minute), resolved by their last price."""
    rng = random.Random(seed)
    steps = int(days * 1440)
    times = [T0 + STEP * j for j in range(steps)]
    grid = {c: Decimal(c) / 100 for c in range(0, 101)}   # one Decimal per price (interned, as the cache loads)
    out = []
    for i in range(1, markets + 1):
        cents, path = rng.randint(30, 70), []
        for _ in range(steps):
            cents = min(95, max(5, cents + rng.choice((-2, -1, 0, 0, 1, 2))))
            path.append(cents)
        toks = [str((0xC7F1 << 200) + (0x5A5A5A5A5A5A << 40) + i * 10 + k) for k in (1, 2)]
        yes_wins = path[-1] >= 50
        gamma = {"id": str(i), "question": f"Benchmark market {i}?", "conditionId": "0x" + f"{i:064x}",
                 "slug": f"bench-{i}", "endDate": "2026-12-31T00:00:00Z", "liquidityNum": 10_000 + i,
                 "volumeNum": 100_000, "outcomes": '["Yes", "No"]', "clobTokenIds": json.dumps(toks), "version": "v1",
                 "orderPriceMinTickSize": 0.01, "orderMinSize": 5, "negRisk": False}
        out.append(ReplayMarket(gamma=gamma, tokens=toks, outcomes=["Yes", "No"],
                                series={toks[0]: (times, [grid[c] for c in path]),
                                        toks[1]: (times, [grid[100 - c] for c in path])},
                                payouts={toks[0]: Decimal(yes_wins), toks[1]: Decimal(not yes_wins)},
                                fee_rate=Decimal("0.02"), fee_exponent=1))
    return out


def config(ladder: str | None = None) -> BotConfig:
    """The benchmark's settings (``ladder``: a take-profit ladder instead of the single TP: "0.05:0.5/0.12:0.5")."""
    return BotConfig.model_validate({
        "bot": {"positions_file": "unused.json", "log_file": None},
        "capital": {"total": 1000, "max_trade_size": 10, "max_positions": 5},
        "trading": {"ab_test_ratio": 0.5, "ab_test_seed": 1},
        "strategy": {"take_profit_pct": "0.10", "stop_loss_pct": "0.10", "min_liquidity": 0, "min_volume": 0,
                     "min_hours_to_end": 0, "max_spread": "0.1", "scan_interval_seconds": 60,
                     "take_profit_ladder": ladder}})


def rss_mb() -> float:
    """Peak resident memory of this process and of its finished children (the grid's workers), in MB."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(me, kids) / 1024, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=20)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--grid", action="store_true", help="also run the 9-combination grid (2 processes)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ladder", default=None, help="a take-profit ladder (profit:share/...) instead of one TP")
    args = parser.parse_args()
    until = T0 + int(args.days * 86400)
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        metas = cache_markets(Path(tmp), synthetic(args.markets, args.days), 1)
        started = time.perf_counter()
        markets = replay_markets(Path(tmp), metas, 1)
        load_s = time.perf_counter() - started
        result = replay(config(args.ladder), markets, T0, until, FillModel(), bot_class=Bot)
        seconds = time.perf_counter() - started
        out = {"markets": args.markets, "days": args.days,
               "points": sum(len(m.series[m.tokens[0]][0]) for m in markets), "positions": len(result.rows),
               "seconds": round(seconds, 2), "load_seconds": round(load_s, 2),
               "sim_minutes_per_second": round(args.days * 1440 / seconds, 1), "trades": result.trades,
               "rss_mb": rss_mb()}
        if args.grid:
            model = FillModel()
            jobs = [Job(Bot, config(args.ladder).model_dump_json(), combo, tmp, metas, T0, until, 1,
                        {"spread_ticks": model.spread_ticks, "depth": str(model.depth), "levels": model.levels,
                         "tp_fill": model.tp_fill, "exit_latency_steps": model.exit_latency_steps})
                    for combo in parse_grid(GRID)]
            started = time.perf_counter()
            with grid_pool(args.workers) as pool:
                rows = run_grid(jobs, pool)
            out["grid"] = {"combinations": len(rows), "workers": args.workers,
                           "seconds": round(time.perf_counter() - started, 1),
                           "best": {"settings": rows[0]["settings"], "pnl": rows[0]["pnl"]}, "rss_mb": rss_mb()}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:24s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""A mass exit: N positions (half per exit mode) whose markets all gap through their stop-losses at one instant.

The bot runs against bot/sim on loopback with the wall clock, at a 1 s loop and the default config. The
crossing happens half a loop interval before the bot's next loop starts (the mean wait). Prints the time
from the crossing to the moment the loop has booked the last exit sell's fill, the requests the sim counted
from the crossing on, and how many positions sold more than they held (``double_sells``, must be 0).

    python benchmarks/mass_exit.py [--json] [--positions 200]
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

from bot.clock import SystemClock  # noqa: E402
from bot.config import BotConfig  # noqa: E402
from bot.money import SHARE_EPSILON  # noqa: E402
from bot.orders import Role  # noqa: E402
from bot.position_manager import ExitMode, Position, PositionState, PositionStore  # noqa: E402
from bot.scanner import MarketScanner  # noqa: E402
from bot.sim import SimExchange  # noqa: E402
from bot.venue.live import LiveVenue  # noqa: E402
from main_bot import Bot  # noqa: E402

SHARES = Decimal(20)
TIMEOUT_S = 120.0


def build(sim: SimExchange, workdir: Path, n: int, api: dict | None = None) -> tuple[Bot, list[Position], dict]:
    """A bot holding ``n`` open positions, half with a resting TP (limit_orders), half monitored."""
    config = BotConfig.model_validate({
        "bot": {"dry_run": False, "loop_interval_seconds": 1, "positions_file": str(workdir / "positions.json"),
                "log_file": None, "log_level": "WARNING"},
        "capital": {"total": 100000, "max_trade_size": 10, "max_positions": n},
        "trading": {"order_check_interval_seconds": 30},
        "strategy": {"take_profit_pct": "0.5", "stop_loss_pct": "0.2", "max_hold_hours": 48, "min_liquidity": 0,
                     "min_hours_to_end": 0},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url, **(api or {})},
    })
    wallet = sim.new_wallet(usdc=100000)
    clock = SystemClock()
    venue = LiveVenue(sim.clob_url, private_key=wallet["private_key"], funder=wallet["address"], clock=clock,
                      max_requests_per_second=config.api.max_requests_per_second)
    bot = Bot(config, venue, MarketScanner.from_config(config), PositionStore(config.bot.positions_file), clock=clock)
    now = bot.now()
    positions = []
    for i in range(n):
        m = sim.create_market(f"Mass exit market {i}?", yes_price=0.5, volatility=0)
        yes = m["token_ids"][0]
        sim.fund(wallet["address"], token_id=yes, shares=SHARES)
        mode = ExitMode.LIMIT_ORDERS if i % 2 == 0 else ExitMode.MONITOR
        pos = Position(token_id=yes, condition_id=m["condition_id"], market_id=m["id"], question=m["slug"],
                       exit_mode=mode, status=PositionState.OPEN, shares=SHARES, entry_shares=SHARES,
                       entry_price=Decimal("0.50"), entry_cost=Decimal("10"), tp_price=Decimal("0.75"),
                       sl_price=Decimal("0.40"), opened_at=now, updated_at=now)
        bot.state.add(pos)
        positions.append(pos)
        if mode == ExitMode.LIMIT_ORDERS:
            bot.manage.arm_tp(pos, now)
            assert pos.tp_order_id, "TP placement failed in the benchmark setup"
    bot._reconciled = True
    bot.save()
    bot.run_once()   # one quiet loop: market info cached, books read, nothing triggers
    return bot, positions, wallet


def sold_twice(pos: Position) -> bool:
    sold = sum((r.filled for r in pos.orders if r.role in (Role.EXIT, Role.TP)), Decimal(0))
    return sold > pos.entry_shares + SHARE_EPSILON


def run(n: int, api: dict | None = None) -> dict:
    with SimExchange(seed=1) as sim, tempfile.TemporaryDirectory() as tmp:
        bot, positions, wallet = build(sim, Path(tmp), n, api)
        interval = bot.config.bot.loop_interval_seconds
        sim.reset_request_counts()
        crossing = time.monotonic()
        for pos in positions:   # every market gaps through its stop-loss at once
            sim.set_book(pos.token_id, bids=[("0.30", "1000")], asks=[("0.32", "1000")])
        time.sleep(max(0.0, interval / 2 - (time.monotonic() - crossing)))
        last_exit = None
        loops = 0
        run_exits = bot.manage.run_exits
        sold_at: list[float] = []

        def timed_run_exits(*args, **kwargs):   # the moment the loop has booked its exit sells' answers
            run_exits(*args, **kwargs)
            if all(p.status == PositionState.CLOSED for p in positions) and not sold_at:
                sold_at.append(time.monotonic() - crossing)
        bot.manage.run_exits = timed_run_exits   # type: ignore[method-assign]
        while time.monotonic() - crossing < TIMEOUT_S:
            started = time.monotonic()
            bot.run_once()
            loops += 1
            if all(p.status == PositionState.CLOSED for p in positions):
                last_exit = sold_at[0] if sold_at else time.monotonic() - crossing
                break
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
        counts = sim.request_counts()
        held = sim.balances(wallet["address"])["tokens"]
        closed = sum(1 for p in positions if p.status == PositionState.CLOSED)
        return {
            "positions": n,
            "last_exit_ms": round(last_exit * 1000) if last_exit is not None else None,
            "requests": counts["total"],
            "double_sells": sum(1 for p in positions if sold_twice(p)),
            "closed": closed,
            "loops": loops,
            "shares_left": str(sum((Decimal(held.get(p.token_id, "0")) for p in positions), Decimal(0))),
            "by_endpoint": dict(sorted(counts["by_endpoint"].items())),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--positions", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("bot").setLevel(logging.ERROR)
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)
    result = run(args.positions)
    if args.json:
        print(json.dumps({k: result[k] for k in ("positions", "last_exit_ms", "requests", "double_sells")}))
        return 0
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""The state's cost as the history grows: one save, the start-up load, and the bot's CPU per loop.

For 10, 1,000, 10,000 and 50,000 closed positions (in the history database, bot/history.py) with 5 active
positions managed by the bot against bot/sim (monitor mode, a simulated clock): the median time of one save
of positions.json (a change to write each time), the time of the start-up load (the state file, the
history's running totals and id set, as the first loop and the first close need them), and the median CPU
milliseconds of one loop (the bot's thread only). Targets (issue 12): save <= 5 ms, CPU per loop within 2x
of the 10-position figure at every size.

    python benchmarks/state_growth.py [--json] [--sizes 10,1000,10000,50000] [--loops 30]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.clock import SimulatedClock  # noqa: E402
from bot.config import BotConfig  # noqa: E402
from bot.orders import OrderRecord, RecordState, Role  # noqa: E402
from bot.position_manager import CloseReason, ExitMode, Position, PositionState, PositionStore  # noqa: E402
from bot.scanner import MarketScanner  # noqa: E402
from bot.sim import SimExchange  # noqa: E402
from bot.venue.live import LiveVenue  # noqa: E402
from main_bot import Bot  # noqa: E402

ACTIVE = 5


def closed_positions(n: int) -> list[Position]:
    """``n`` closed positions shaped like the bot's (an entry and an exit record each)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    template = Position(
        token_id="t", condition_id="c", exit_mode=ExitMode.MONITOR, status=PositionState.CLOSED,
        close_reason=CloseReason.TAKE_PROFIT, entry_price=Decimal("0.5"), tp_price=Decimal("0.55"),
        sl_price=Decimal("0.45"), exit_price=Decimal("0.55"), realized_pnl=Decimal("0.5"), opened_at=t0,
        updated_at=t0, closed_at=t0, venue="live", wallet=None,
        orders=[OrderRecord(role=Role.ENTRY, order_id="e", state=RecordState.DONE, filled=Decimal(10),
                            usdc=Decimal(5)),
                OrderRecord(role=Role.EXIT, order_id="x", state=RecordState.DONE, filled=Decimal(10),
                            usdc=Decimal("5.5"))])
    out = []
    for i in range(n):
        at = t0 + timedelta(minutes=10 * i)
        orders = [r.model_copy(update={"order_id": f"{r.order_id}{i}"}) for r in template.orders]
        out.append(template.model_copy(update={"id": f"h{i:011d}", "token_id": f"tok{i}", "condition_id": f"c{i}",
                                               "opened_at": at, "closed_at": at + timedelta(minutes=5),
                                               "orders": orders}))
    return out


def build(sim: SimExchange, clock: SimulatedClock, workdir: Path, closed: int) -> tuple[Bot, float]:
    config = BotConfig.model_validate({
        "bot": {"dry_run": False, "loop_interval_seconds": 10, "positions_file": str(workdir / "positions.json"),
                "log_file": None, "log_level": "WARNING"},
        "capital": {"total": 100000, "max_trade_size": 10, "max_positions": ACTIVE},
        "trading": {"order_check_interval_seconds": 30, "use_concurrent_orders": False},
        "strategy": {"take_profit_pct": "0.5", "stop_loss_pct": "0.9", "max_hold_hours": 10**4, "min_liquidity": 0,
                     "min_hours_to_end": 0},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url},
    })
    wallet = sim.new_wallet(usdc=100000)
    venue = LiveVenue(sim.clob_url, private_key=wallet["private_key"], funder=wallet["address"], clock=clock)
    store = PositionStore(config.bot.positions_file)
    store.history.append(closed_positions(closed))
    store.history.close()
    bot = Bot(config, venue, MarketScanner.from_config(config), PositionStore(config.bot.positions_file), clock=clock)
    now = bot.now()
    for i in range(ACTIVE):
        m = sim.create_market(f"Growth market {i}?", yes_price=0.5, volatility=0)
        yes = m["token_ids"][0]
        sim.fund(wallet["address"], token_id=yes, shares=20)
        bot.state.add(Position(token_id=yes, condition_id=m["condition_id"], market_id=m["id"], question=m["slug"],
                               exit_mode=ExitMode.MONITOR, status=PositionState.OPEN, shares=Decimal(20),
                               entry_shares=Decimal(20), entry_price=Decimal("0.51"), entry_cost=Decimal("10.2"),
                               tp_price=Decimal("0.77"), sl_price=Decimal("0.05"), opened_at=now, updated_at=now))
    bot._reconciled = True
    bot.save()
    started = time.perf_counter()   # the start-up load, as a restarted bot does it
    again = PositionStore(config.bot.positions_file)
    state = again.load()
    again.settle(state)
    state.closed_totals()
    again.history.ids()
    load_s = time.perf_counter() - started
    again.history.close()
    return bot, load_s


def run_case(closed: int, loops: int) -> dict:
    clock = SimulatedClock(start=1_800_000_000)
    with SimExchange(seed=1, clock=clock) as sim, tempfile.TemporaryDirectory() as tmp:
        bot, load_s = build(sim, clock, Path(tmp), closed)
        saves = []
        for i in range(20):
            bot.state.counters["benchmark"] = i   # a change, so the save writes
            started = time.perf_counter()
            bot.store.save(bot.state)
            saves.append(time.perf_counter() - started)
        cpu = []
        for _ in range(loops):
            started = time.thread_time()
            bot.run_once()
            cpu.append(time.thread_time() - started)
            clock.advance(bot.config.bot.loop_interval_seconds)
        assert len(bot.state.active_positions()) == ACTIVE, "a position closed during the benchmark"
        assert bot.store.history.count() == closed
    return {"closed": closed, "active": ACTIVE, "save_ms": round(statistics.median(saves) * 1000, 2),
            "load_ms": round(load_s * 1000, 1), "cpu_ms_per_loop": round(statistics.median(cpu) * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", default="10,1000,10000,50000")
    parser.add_argument("--loops", type=int, default=30)
    args = parser.parse_args()
    logging.getLogger("bot").setLevel(logging.WARNING)
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)
    results = [run_case(int(n), args.loops) for n in args.sizes.split(",")]
    base = results[0]["cpu_ms_per_loop"] or 1e-9
    ok = all(r["save_ms"] <= 5 and r["cpu_ms_per_loop"] <= 2 * base for r in results)
    if args.json:
        print(json.dumps({"results": results, "targets_met": ok}, indent=2))
        return 0 if ok else 1
    print(f"{ACTIVE} active positions, monitor mode, bot/sim; medians of 20 saves and {args.loops} loops\n")
    print(f"{'closed':>8} {'save ms':>8} {'load ms':>8} {'CPU ms/loop':>12}")
    for r in results:
        print(f"{r['closed']:>8} {r['save_ms']:>8} {r['load_ms']:>8} {r['cpu_ms_per_loop']:>12}")
    print("\ntargets (save <= 5 ms, CPU per loop within 2x of the first size):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""API calls per hour by the number of open positions, counted by the simulated exchange; and per lifecycle.

For N = 5, 50 and 200 open positions (seeded, all at one moment) and each exit mode, one simulated hour of the
bot against bot/sim at the default intervals (loop 10 s, order checks 30 s), with a simulated clock shared by
the bot and the exchange, for each feed: ``poll`` (REST only, as ``feeds.enabled: false``) and ``push`` (the
WebSocket feeds on, their defaults: every book checked over REST 75 s after the feed last said something,
the open orders every 600 s). Prints, from the SIMULATOR's request counts (not the bot's own), calls per hour
by endpoint and reads per loop, plus the bot's CPU milliseconds per loop (its own thread; the exchange's and
the feeds' threads and the network are excluded), beside the seed's arithmetic (legacy 6 x 60 x N per hour;
concurrent 16 per position).

Calls per lifecycle: per feed and exit mode, ``--lifecycles`` positions opened by the bot itself from the
scanner (one per loop), held ``--hold-minutes``, then closed one per loop, alternately by a gap through the
SL and by the price rising through the TP; the REST calls the bot's CallMeter charged to each position
(``metrics["api_calls"]``: its entry, including the scan that found its market, its orders, its share of the
batched reads), with and without that discovery. The same figures go into each row of that feed and mode.

With the simulated clock the WebSocket messages still travel in real time: the push runs wait (real time)
until the feed has delivered what a step must bring (the snapshots, a crossed book, a TP's fill) before the
bot handles it (``run_events``, as the run loop does when woken), and sleep 1-2 ms between loops otherwise.

    python benchmarks/api_calls.py [--json] [--sizes 5,50,200] [--minutes 60] [--feed push|poll|both]
                                   [--lifecycles 20] [--hold-minutes 10] [--ladder 0.05:0.5/0.20:0.5]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.clock import Clock, SimulatedClock  # noqa: E402
from bot.config import BotConfig, feed_urls, with_overrides  # noqa: E402
from bot.feeds import Feeds  # noqa: E402
from bot.position_manager import CloseReason, ExitMode, Position, PositionState, PositionStore  # noqa: E402
from bot.scanner import MarketScanner  # noqa: E402
from bot.sim import SimExchange  # noqa: E402
from bot.venue.live import LiveVenue  # noqa: E402
from main_bot import Bot  # noqa: E402

READ_PREFIXES = ("GET ", "POST /books", "POST /prices", "POST /midpoints")
#: The lifecycles' entry filters (as tests/e2e): still markets at 0.50 pass, TP and SL 10% from the entry.
LIFECYCLE_STRATEGY = {"take_profit_pct": "0.10", "stop_loss_pct": "0.10", "min_price": "0.2", "max_price": "0.8",
                      "min_liquidity": 0, "min_volume": 0, "max_spread": "0.1", "min_hours_to_end": 0,
                      "scan_interval_seconds": 10}


def seed_arithmetic(mode: str, n: int) -> int:
    """The seed's own estimate of calls per hour (legacy: a book per position per loop; concurrent:
    16 calls per position lifecycle)."""
    return 6 * 60 * n if mode == "monitor" else 16 * n


def bench_config(sim: SimExchange, workdir: Path, n: int, loop_seconds: float = 10, order_check_seconds: float = 30,
                 **sections: dict) -> BotConfig:
    """The benchmarks' config: loop and order-check intervals, room for ``n`` positions, the sim's hosts and
    WebSocket channels; ``sections`` update the config's sections (``strategy={...}``)."""
    data: dict[str, dict] = {
        "bot": {"dry_run": False, "loop_interval_seconds": loop_seconds,
                "positions_file": str(workdir / "positions.json"), "log_file": None, "log_level": "WARNING"},
        "capital": {"total": 100000, "max_trade_size": 10, "max_positions": n},
        "trading": {"order_check_interval_seconds": order_check_seconds},
        "strategy": {"take_profit_pct": "0.5", "stop_loss_pct": "0.9", "max_hold_hours": 48, "min_liquidity": 0,
                     "min_hours_to_end": 0},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url},
        "feeds": feed_urls(sim.ws_url),
    }
    for name, values in sections.items():
        data[name].update(values)
    return BotConfig.model_validate(data)


def make_bot(sim: SimExchange, clock: Clock, config: BotConfig, push: bool) -> tuple[Bot, dict]:
    """A bot on a fresh funded wallet, with the push feeds when ``push`` (built as bot/cli.py ``make_bot`` does:
    they wake the bot). Returns (bot, wallet)."""
    wallet = sim.new_wallet(usdc=100000)
    venue = LiveVenue(sim.clob_url, private_key=wallet["private_key"], funder=wallet["address"], clock=clock)
    feeds = Feeds(config.feeds, clock, lambda: bot.wake(), venue.feed_credentials()) if push else None
    bot = Bot(config, venue, MarketScanner.from_config(config), PositionStore(config.bot.positions_file), clock=clock,
              feeds=feeds)
    return bot, wallet


def seed_positions(bot: Bot, sim: SimExchange, wallet: dict, mode: ExitMode, n: int, tp: str = "0.77",
                   sl: str = "0.05", name: str = "Benchmark market") -> list[Position]:
    """``n`` open positions of 20 shares bought at 0.51 on still markets at 0.50 (the wallet funded with the
    shares, the market info cached as an entry leaves it), TPs resting for limit_orders; saved, the start-up
    reconciliation marked done."""
    now = bot.now()
    positions = []
    for i in range(n):
        m = sim.create_market(f"{name} {i}?", yes_price=0.5, volatility=0)
        yes = m["token_ids"][0]
        sim.fund(wallet["address"], token_id=yes, shares=20)
        pos = Position(token_id=yes, condition_id=m["condition_id"], market_id=m["id"], question=m["slug"],
                       exit_mode=mode, status=PositionState.OPEN, shares=Decimal(20), entry_shares=Decimal(20),
                       entry_price=Decimal("0.51"), entry_cost=Decimal("10.2"), tp_price=Decimal(tp),
                       sl_price=Decimal(sl), opened_at=now, updated_at=now)
        bot.state.add(pos)
        positions.append(pos)
        if mode == ExitMode.LIMIT_ORDERS:
            bot.manage.arm_tp(pos, now)
            assert pos.tp_order_id, "TP placement failed in the benchmark setup"
        bot.venue.get_market_info(yes, m["condition_id"])   # cached, as after the bot's own entry
    bot._reconciled = True
    bot.save()
    return positions


def build(sim: SimExchange, clock: Clock, workdir: Path, mode: ExitMode, n: int, push: bool = False) -> Bot:
    """A bot holding ``n`` open positions in ``mode`` (TPs resting for limit_orders) at the default intervals."""
    bot, wallet = make_bot(sim, clock, bench_config(sim, workdir, n), push)
    seed_positions(bot, sim, wallet, mode, n)
    return bot


def settle(bot: Bot, between: Callable[[], None], timeout: float = 30.0) -> None:
    """Start the feeds and loop (``between`` after each loop) until every held token's book is fresh on the
    market channel and the user channel is fresh too (as tests/e2e/test_feeds.py ``settle``)."""
    feeds = bot.feeds
    assert feeds is not None
    feeds.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bot.run_once()
        tokens = {p.token_id for p in bot.state.active_positions()}
        if all(feeds.fresh(t) for t in tokens) and feeds.user_fresh():
            return
        between()
        time.sleep(0.05)   # real time: the sockets connect and the snapshots arrive
    raise RuntimeError(f"the feeds did not become fresh within {timeout:g} s: {feeds.stats()}")


def run_case(mode: ExitMode, n: int, minutes: float, push: bool = False) -> dict:
    clock = SimulatedClock(start=1_800_000_000)
    with SimExchange(seed=1, clock=clock) as sim, tempfile.TemporaryDirectory() as tmp:
        bot = build(sim, clock, Path(tmp), mode, n, push)
        interval = bot.config.bot.loop_interval_seconds
        try:
            if push:
                settle(bot, lambda: clock.advance(interval))
                clock.advance(interval)
            sim.reset_request_counts()
            loops = int(minutes * 60 / interval)
            cpu = 0.0
            for _ in range(loops):
                started = time.thread_time()
                bot.run_once()
                cpu += time.thread_time() - started
                clock.advance(interval)
                if push:   # the run loop's wait ends: what the feeds pushed meanwhile (here nothing moves)
                    time.sleep(0.001)
                    started = time.thread_time()
                    bot.run_events()
                    cpu += time.thread_time() - started
        finally:
            if bot.feeds is not None:
                bot.feeds.stop()
        counts = sim.request_counts()["by_endpoint"]
        open_now = sum(1 for p in bot.state.positions if p.status == PositionState.OPEN)
        assert open_now == n, f"positions closed during the benchmark ({open_now}/{n} open)"
    per_hour = 60 / minutes
    reads = sum(v for k, v in counts.items() if k.startswith(READ_PREFIXES))
    return {
        "feed": "push" if push else "poll",
        "mode": mode.value,
        "positions": n,
        "calls_per_hour": round(sum(counts.values()) * per_hour),
        "reads_per_loop": round(reads / loops, 3),
        "by_endpoint": {k: round(v * per_hour) for k, v in sorted(counts.items())},
        "cpu_ms_per_loop": round(cpu / loops * 1000, 2),
        "seed_estimate_per_hour": seed_arithmetic(mode.value, n),
    }


def until(cond: Callable[[], object], timeout: float = 5.0) -> bool:
    """Wait (real time) until ``cond()``: what a feed must deliver travels in real time."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def run_lifecycles(mode: ExitMode, push: bool, count: int, hold_minutes: float, ladder: str | None = None) -> dict:
    """``count`` positions opened by the bot itself from the scanner (one per loop), held ``hold_minutes``
    together, then closed one per loop, alternately by a gap through the SL and by the price rising through
    the TP (``ladder``: a take-profit ladder instead, e.g. "0.05:0.5/0.20:0.5"). Returns the REST calls charged to
    each position (its ``metrics["api_calls"]``), with and without the discovery of its market (the entry's scan:
    Gamma, the candidates' books, market info, the balance)."""
    clock = SimulatedClock(start=1_800_000_000)
    with SimExchange(seed=1, clock=clock) as sim, tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            sim.create_market(f"Lifecycle market {i}?", yes_price=0.5, volatility=0)
        config = bench_config(sim, Path(tmp), count, strategy={**LIFECYCLE_STRATEGY, "take_profit_ladder": ladder},
                              trading={"use_concurrent_orders": mode == ExitMode.LIMIT_ORDERS})
        bot, _ = make_bot(sim, clock, config, push)
        interval = config.bot.loop_interval_seconds
        discovery: dict[str, Counter] = {}   # token -> the calls of the scan that picked it
        by_endpoint: dict[str, Counter] = defaultdict(Counter)   # position id -> what was charged to it
        pick, charge = bot.manage.pick_entry, bot.meter.charge

        def timed_pick(now: datetime) -> Any:
            before = bot.meter.snapshot()
            picked = pick(now)
            if picked is not None:
                assert picked[0].token_id not in discovery, "a market picked twice"
                discovery[picked[0].token_id] = bot.meter.snapshot() - before
            return picked

        def noted_charge(positions: list[Position], delta: Counter, now: datetime) -> None:
            charge(positions, delta, now)
            for p in positions:
                by_endpoint[p.id].update({k: v / len(positions) for k, v in delta.items()})

        bot.manage.pick_entry = timed_pick   # type: ignore[method-assign]
        bot.meter.charge = noted_charge      # type: ignore[method-assign]

        def loop() -> None:
            bot.run_once()
            clock.advance(interval)
            if bot.feeds is not None:   # the run loop's wait: the feeds deliver what is on its way
                feeds = bot.feeds
                until(lambda: all(feeds.seen_at(p.token_id) is not None for p in bot.state.active_positions()))
                time.sleep(0.002)
                bot.run_events()

        try:
            if push:
                bot.feeds.start()   # type: ignore[union-attr]
            for _ in range(3 * count):
                if len(bot.state.active_positions()) >= count:
                    break
                loop()
            positions = list(bot.state.active_positions())
            assert len(positions) == count and all(p.status == PositionState.OPEN for p in positions), \
                f"{len(positions)} of {count} positions opened"
            bot.config = with_overrides(bot.config, strategy__scan_interval_seconds=10**9)   # no new entries
            bot.delay_scan()
            if bot.feeds is not None:
                # A TP placed on a market the user channel does not follow yet is never acknowledged on it: the
                # channel is reconnected user_ack_seconds (real time) later. Let that happen here, not at a
                # random point of the hold (the reconnect's forced order read is charged all the same).
                time.sleep(config.feeds.user_ack_seconds + 1)
                settle(bot, lambda: clock.advance(interval))
            sim.reset_request_counts()
            hold_loops = int(hold_minutes * 60 / interval)
            for _ in range(hold_loops):
                loop()
            held = sim.request_counts()["by_endpoint"]   # positions opened one per loop: checks fall due apart
            for i, pos in enumerate(positions):
                exit_one(bot, sim, pos, stop_loss=i % 2 == 0, loop=loop)
                loop()
        finally:
            if bot.feeds is not None:
                bot.feeds.stop()
    calls = [float(p.metrics.get("api_calls", {}).get("total", 0)) for p in positions]
    found = [float(sum(discovery.get(p.token_id, Counter()).values())) for p in positions]
    for p, total in zip(positions, calls, strict=True):
        assert abs(sum(by_endpoint[p.id].values()) - total) < 1e-3, "the endpoint tally disagrees with the meter"
    sources = Counter(str(p.metrics.get("trigger_source")) for p in positions
                      if p.close_reason == CloseReason.STOP_LOSS)
    own = {p.id: total - disc for p, total, disc in zip(positions, calls, found, strict=True)}
    by_exit = {reason.value: round(statistics.fmean(own[p.id] for p in positions if p.close_reason == reason), 2)
               for reason in (CloseReason.STOP_LOSS, CloseReason.TAKE_PROFIT)}
    return {
        "positions": count, "hold_minutes": hold_minutes,
        "calls_per_lifecycle": round(statistics.fmean(calls), 2),
        "calls_per_lifecycle_without_discovery": round(statistics.fmean(calls) - statistics.fmean(found), 2),
        "without_discovery_by_exit": by_exit,
        "discovery_per_lifecycle": round(statistics.fmean(found), 2),
        "by_endpoint": {k: round(v / count, 2) for k, v in sorted(sum(by_endpoint.values(), Counter()).items())},
        "discovery_by_endpoint": {k: round(v / count, 2)
                                  for k, v in sorted(sum(discovery.values(), Counter()).items())},
        "hold_calls_per_hour": round(sum(held.values()) * 3600 / (hold_loops * interval)),
        "hold_by_endpoint": {k: round(v * 3600 / (hold_loops * interval)) for k, v in sorted(held.items())},
        "sl_exits_by_trigger_source": dict(sources),
        "close_reasons": dict(Counter(p.close_reason.value if p.close_reason else "-" for p in positions)),
    }


def exit_one(bot: Bot, sim: SimExchange, pos: Position, stop_loss: bool, loop: Callable[[], None]) -> None:
    """Move ``pos``'s market through its SL (to 0.40) or its TP (to 0.65) and let the bot close it: from the
    feed (``run_events``, once the feed has delivered the change) or from the loops that follow."""
    sim.set_price(pos.token_id, 0.40 if stop_loss else 0.65)
    feeds = bot.feeds
    if feeds is not None:
        if pos.tp_order_id and not stop_loss:
            until(lambda: (o := feeds.order(pos.tp_order_id or "")) is not None and o.final)
        else:
            until(lambda: (b := feeds.book(pos.token_id)) is not None and b.best_bid is not None
                  and (b.best_bid <= (pos.sl_price or 0) if stop_loss else b.best_bid >= (pos.tp_price or 1)))
        bot.run_events()
    for _ in range(20):
        if pos.status == PositionState.CLOSED:
            return
        loop()
    raise AssertionError(f"position {pos.id} did not close ({pos.status.value})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", default="5,50,200")
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--feed", choices=("push", "poll", "both"), default="both")
    parser.add_argument("--lifecycles", type=int, default=20, help="positions per lifecycle run (default 20)")
    parser.add_argument("--hold-minutes", type=float, default=10, help="how long they are held (default 10)")
    parser.add_argument("--ladder", default=None, help="the lifecycles with a take-profit ladder (profit:share/...)")
    args = parser.parse_args()
    logging.getLogger("bot").setLevel(logging.WARNING)
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)
    results = []
    started = time.time()
    feeds = ("poll", "push") if args.feed == "both" else (args.feed,)
    modes = (ExitMode.MONITOR, ExitMode.LIMIT_ORDERS)
    lifecycles = {(f, m): run_lifecycles(m, f == "push", args.lifecycles, args.hold_minutes, args.ladder)
                  for f in feeds for m in modes}
    for feed in feeds:
        for n in (int(x) for x in args.sizes.split(",")):
            for mode in modes:
                row = run_case(mode, n, args.minutes, feed == "push")
                life = lifecycles[(feed, mode)]
                row.update(calls_per_lifecycle=life["calls_per_lifecycle"],
                           calls_per_lifecycle_without_discovery=life["calls_per_lifecycle_without_discovery"],
                           lifecycle=life)
                results.append(row)
    if args.json:
        print(json.dumps({"results": results}, indent=2))
        return 0
    print(f"One simulated hour per case ({args.minutes:g} min), loop 10 s, order checks 30 s; counts from bot/sim.\n"
          "push: feeds on, books checked over REST every 75 s, open orders every 600 s (feeds defaults)\n")
    print(f"{'feed':5} {'mode':13} {'N':>4} {'calls/h':>8} {'seed est./h':>11} {'reads/loop':>10} {'CPU ms/loop':>11}"
          "  by endpoint")
    for r in results:
        eps = ", ".join(f"{k} {v}" for k, v in r["by_endpoint"].items())
        print(f"{r['feed']:5} {r['mode']:13} {r['positions']:>4} {r['calls_per_hour']:>8} "
              f"{r['seed_estimate_per_hour']:>11} {r['reads_per_loop']:>10} {r['cpu_ms_per_loop']:>11}  {eps}")
    print(f"\nCalls per lifecycle ({args.lifecycles} positions opened by the bot from the scanner, held "
          f"{args.hold_minutes:g} min, closed one per loop, half by SL, half by TP):\n")
    print(f"{'feed':5} {'mode':13} {'all':>6} {'w/o discovery':>13} {'SL/TP exits':>11} {'discovery':>9} "
          f"{'held calls/h':>12}  by endpoint (per lifecycle)")
    for (feed, mode), life in lifecycles.items():
        eps = ", ".join(f"{k} {v:g}" for k, v in life["by_endpoint"].items())
        split = "/".join(f"{v:g}" for v in life["without_discovery_by_exit"].values())
        print(f"{feed:5} {mode.value:13} {life['calls_per_lifecycle']:>6} "
              f"{life['calls_per_lifecycle_without_discovery']:>13} {split:>11} {life['discovery_per_lifecycle']:>9} "
              f"{life['hold_calls_per_hour']:>12}  {eps}")
    print("(discovery: the calls of the scan that picked the position's market; SL/TP exits: w/o discovery, by how "
          "the position closed;\n held calls/h: all REST calls per hour while the positions were held)")
    print(f"\n(wall time {time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

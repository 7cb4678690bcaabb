#!/usr/bin/env python3
"""Stop-loss latency on bot/sim: from the sim's book change to the exit sell reaching the sim, push vs poll.

The bot runs ``Bot.run()`` in a thread against bot/sim on loopback (same process, real clocks for both), so
it sleeps between loops and wakes on feed events exactly as in production. Cases: feed ``push`` (WebSocket
feeds on) or ``poll`` (REST only, as ``feeds.enabled: false``), loop 10 s or 1 s, exit mode limit_orders (a
TP rests: the exit cancels it, then sells) or monitor. Per case the bot holds ``--exits`` positions on still
markets (and half as many TP positions), the feeds fresh; then each SL market gaps through its stop-loss at
a random moment, uniform over a window of whole loop intervals (at least two, and at least 200 ms per
crossing; the same for push and poll), timed as ``t0 = time.time(); sim.set_price(...)``. The delay is the
exit sell's arrival at the sim (``sim.order_arrivals()``) minus ``t0``; crossings may overlap (several in one
poll interval are handled by the next loop, as one batch). Then, separately, the TP markets rise through
their resting TPs (the sim's trade happens inside ``set_price``): the bot knew at the position's
``closed_at`` (its handler's time); push from the user channel, poll from the REST open-orders check (every
``order_check_interval_seconds``: the default 30 s, set to 1 s in the 1 s poll case). One process: the sim's
threads share the bot's interpreter and its GIL.

    python benchmarks/sl_latency.py [--json] [--exits 50] [--quick]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.api_calls import bench_config, make_bot, seed_positions, settle  # noqa: E402
from bot.clock import SystemClock  # noqa: E402
from bot.orders import Role  # noqa: E402
from bot.position_manager import CloseReason, ExitMode, Position  # noqa: E402
from bot.sim import SimExchange  # noqa: E402

SL, TP = "0.45", "0.56"              # the seeded positions' stop-loss and TP (bought at 0.51, market at 0.50)
SL_GAP, TP_GAP = 0.40, 0.65          # where the scripted moves take the market
MIN_SPACING_S = 0.2                  # at least this much window per crossing (on average)
VENUE_CALLS = ("get_books", "open_orders", "cancel", "cancel_many", "get_order", "token_balance", "market_sell",
               "market_sell_many", "get_market_info")


@dataclass(frozen=True)
class Case:
    feed: str          # "push" | "poll"
    loop: float        # loop_interval_seconds
    mode: ExitMode

    @property
    def order_check(self) -> float:
        """order_check_interval_seconds: the default 30 s, the loop interval for the 1 s poll case."""
        return self.loop if self.feed == "poll" and self.loop < 10 else 30


def pct(values: list[float], q: int) -> float | None:
    """The q-th percentile (inclusive method), None without values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def timed(calls: dict[str, list[float]], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, recording how long each call took (seconds) in ``calls[name]``."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            calls.setdefault(name, []).append(time.perf_counter() - started)
    return wrapper


def window(case: Case, n: int, tp: bool = False) -> float:
    """The crossings' window: two loop intervals, at least MIN_SPACING_S per crossing, and for the poll cases'
    TPs one order-check interval; rounded up to whole loop intervals (the loop's phase is sampled evenly)."""
    least = max(2 * case.loop, MIN_SPACING_S * n, case.order_check if tp and case.feed == "poll" else 0)
    return math.ceil(least / case.loop - 1e-9) * case.loop


def cross(sim: SimExchange, positions: list[Position], price: float, window: float, rng: random.Random,
          done: Callable[[], bool], timeout: float) -> dict[str, float]:
    """Move each position's market to ``price`` at random moments uniform over ``window`` seconds; returns
    position id -> t0 (time.time() just before the move). Waits (up to ``timeout`` after the window) for ``done``."""
    moments = sorted(rng.uniform(0, window) for _ in positions)
    order = rng.sample(positions, len(positions))
    start = time.monotonic()
    t0: dict[str, float] = {}
    for pos, at in zip(order, moments, strict=True):
        time.sleep(max(0.0, start + at - time.monotonic()))
        t0[pos.id] = time.time()
        sim.set_price(pos.token_id, price)
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    return t0


def exit_sell_id(pos: Position) -> str | None:
    """The position's first exit sell (the one its trigger sent)."""
    return next((r.order_id for r in pos.orders if r.role == Role.EXIT and r.order_id), None)


def run_case(case: Case, exits: int, tps: int, seed: int) -> dict:
    rng = random.Random(seed)
    push = case.feed == "push"
    tps = tps if case.mode == ExitMode.LIMIT_ORDERS else 0
    with SimExchange(seed=1) as sim, tempfile.TemporaryDirectory() as tmp:
        config = bench_config(sim, Path(tmp), exits + tps, loop_seconds=case.loop, order_check_seconds=case.order_check)
        bot, wallet = make_bot(sim, SystemClock(), config, push)
        sl_pos = seed_positions(bot, sim, wallet, case.mode, exits, tp=TP, sl=SL, name="SL market")
        tp_pos = seed_positions(bot, sim, wallet, case.mode, tps, tp=TP, sl=SL, name="TP market")
        if push:
            settle(bot, lambda: None)
        else:
            bot.run_once()   # a first quiet loop, as in production (market info cached, books read)
        calls: dict[str, list[float]] = {}
        for name in VENUE_CALLS:
            setattr(bot.venue, name, timed(calls, name, getattr(bot.venue, name)))
        bot.store.save = timed(calls, "save state", bot.store.save)   # type: ignore[method-assign]
        bot.run_once = timed(calls, "loop", bot.run_once)   # type: ignore[method-assign]
        sim.clear_order_arrivals()
        runner = threading.Thread(target=bot.run, name="bot-loop", daemon=True)
        runner.start()
        try:
            sl_t0 = cross(sim, sl_pos, SL_GAP, window(case, exits), rng, lambda: all(not p.is_active for p in sl_pos),
                          timeout=3 * case.loop + 15)
            sl_calls = {k: list(v) for k, v in calls.items()}
            tp_t0 = cross(sim, tp_pos, TP_GAP, window(case, tps, tp=True), rng,
                          lambda: all(not p.is_active for p in tp_pos),
                          timeout=case.order_check + 2 * case.loop + 15) if tp_pos else {}
        finally:
            bot.request_stop()
            runner.join(30)
        arrivals = sim.order_arrivals()
    return summarize(case, sl_pos, tp_pos, sl_t0, tp_t0, arrivals, sl_calls)


def summarize(case: Case, sl_pos: list[Position], tp_pos: list[Position], sl_t0: dict[str, float],
              tp_t0: dict[str, float], arrivals: dict[str, float], calls: dict[str, list[float]]) -> dict:
    delays: list[float] = []
    phases: dict[str, list[float]] = {"t0 -> book seen": [], "seen -> handler": [], "seen -> sell signed": [],
                                      "signed -> at the sim": []}
    for pos in sl_pos:
        oid = exit_sell_id(pos)
        if oid is None or oid not in arrivals or pos.close_reason != CloseReason.STOP_LOSS:
            continue
        t0, arrived = sl_t0[pos.id], arrivals[oid]
        delays.append(arrived - t0)
        rec = pos.record(oid)
        seen, handler = pos.metrics.get("trigger_seen_at"), pos.metrics.get("trigger_at")
        if rec is None or rec.sent_at is None or seen is None or handler is None:
            continue
        phases["t0 -> book seen"].append(float(seen) - t0)   # push: the feed's delay; poll: the wait for a loop
        if case.feed == "push":   # (a loop's handler time is the loop's start, before its read)
            phases["seen -> handler"].append(datetime.fromisoformat(handler).timestamp() - float(seen))
        phases["seen -> sell signed"].append(rec.sent_at - float(seen))   # the bot's own trigger_delay_ms
        phases["signed -> at the sim"].append(arrived - rec.sent_at)
    # A crossing that came while an earlier one's sell was still on its way overlapped it (push: it may have
    # queued behind it; poll: they are one batch, so "alone" is left out).
    spans = sorted((sl_t0[p.id], arrivals[oid]) for p in sl_pos if (oid := exit_sell_id(p)) in arrivals)
    alone = [end - start for i, (start, end) in enumerate(spans) if all(e <= start for _, e in spans[:i])
             and case.feed == "push"]
    known = [p.closed_at.timestamp() - tp_t0[p.id] for p in tp_pos
             if p.closed_at is not None and p.close_reason == CloseReason.TAKE_PROFIT]
    sources = Counter(str(p.metrics.get("trigger_source")) for p in sl_pos if p.close_reason == CloseReason.STOP_LOSS)
    return {
        "feed": case.feed, "loop_seconds": case.loop, "mode": case.mode.value,
        "exits": len(delays), "p50_ms": ms(pct(delays, 50)), "p99_ms": ms(pct(delays, 99)),
        "max_ms": ms(max(delays, default=None)),
        "overlapped": sum(1 for i, (start, _) in enumerate(spans) if any(e > start for _, e in spans[:i])),
        "p50_alone_ms": ms(pct(alone, 50)),
        "tp_fills": len(known), "tp_fill_known_p50_ms": ms(pct(known, 50)), "tp_fill_known_p99_ms": ms(pct(known, 99)),
        "order_check_seconds": case.order_check,
        "not_closed": sum(1 for p in sl_pos + tp_pos if p.is_active),
        "trigger_sources": dict(sources),
        "trigger_sources_agree": set(sources) <= {case.feed},
        "phases_p50_ms": {k: ms(pct(v, 50)) for k, v in phases.items() if v},
        "venue_calls_p50_ms": {k: [len(v), ms(pct(v, 50))] for k, v in sorted(calls.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--exits", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="10 exits, the 1 s loops only, no monitor mode")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("bot").setLevel(logging.ERROR)
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)
    exits = 10 if args.quick else args.exits
    tps = max(4, exits // 2)
    loops = (1.0,) if args.quick else (10.0, 1.0)
    modes = (ExitMode.LIMIT_ORDERS,) if args.quick else (ExitMode.LIMIT_ORDERS, ExitMode.MONITOR)
    started = time.time()
    results = [run_case(Case(feed, loop, mode), exits, tps, args.seed)
               for mode in modes for feed in ("push", "poll") for loop in loops]
    if args.json:
        print(json.dumps({"results": results}, indent=2))
        return 0
    print("SL gap -> exit sell at the sim (ms), and TP fill -> known by the bot (ms); bot/sim on loopback\n")
    print(f"{'feed':5} {'loop s':>6} {'mode':13} {'exits':>5} {'p50':>7} {'p99':>7} {'max':>7} {'overlap':>7} "
          f"{'p50 alone':>9} {'triggers':>16} {'TP fills':>8} {'known p50':>9} {'p99':>7} {'checks s':>8}")
    for r in results:
        src = ",".join(f"{k} {v}" for k, v in sorted(r["trigger_sources"].items()))
        print(f"{r['feed']:5} {r['loop_seconds']:>6g} {r['mode']:13} {r['exits']:>5} {r['p50_ms']!s:>7} "
              f"{r['p99_ms']!s:>7} {r['max_ms']!s:>7} {r['overlapped']:>7} {r['p50_alone_ms']!s:>9} {src:>16} "
              f"{r['tp_fills']:>8} "
              f"{r['tp_fill_known_p50_ms']!s:>9} {r['tp_fill_known_p99_ms']!s:>7} {r['order_check_seconds']:>8g}")
    print("\nWhere the time goes (p50 ms per exit) and the bot's venue calls while the SLs were crossed (n, p50 ms):")
    for r in results:
        phases = ", ".join(f"{k} {v}" for k, v in r["phases_p50_ms"].items())
        venue = ", ".join(f"{k} {n}x{v}" for k, (n, v) in r["venue_calls_p50_ms"].items())
        print(f"  {r['feed']} {r['loop_seconds']:g} s {r['mode']}: {phases}\n      {venue}")
    print("\noverlap: crossings that came while an earlier exit sell was still on its way; p50 alone: the push exits"
          " that overlapped none")
    if not all(r["trigger_sources_agree"] for r in results):
        print("\nWARNING: some exits were triggered by the other feed than their case's (see triggers)")
    print("\nTargets on loopback: push p50 <= 50 ms, p99 <= 250 ms; TP fill known <= 100 ms after the sim's trade.")
    print(f"(wall time {time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

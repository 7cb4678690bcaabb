"""Reads per loop stay flat in the number of positions, counted by the simulated exchange itself."""
from __future__ import annotations

import pytest

from benchmarks.api_calls import build
from bot.clock import SimulatedClock
from bot.position_manager import ExitMode
from bot.sim import SimExchange

READS = ("GET ", "POST /books")


def reads(sim) -> int:
    return sum(v for k, v in sim.request_counts()["by_endpoint"].items() if k.startswith(READS))


@pytest.mark.parametrize("mode", [ExitMode.MONITOR, ExitMode.LIMIT_ORDERS])
@pytest.mark.parametrize("n", [3, 60])
def test_reads_per_loop_do_not_grow_with_positions(tmp_path, mode, n):
    clock = SimulatedClock(start=1_800_000_000)
    with SimExchange(seed=2, clock=clock) as sim:
        bot = build(sim, clock, tmp_path, mode, n)
        setup_calls = sum(bot.venue.api_calls().values())
        sim.reset_request_counts()
        per_loop = []
        for _ in range(36):   # six simulated minutes at the default 10 s loop
            before = reads(sim)
            bot.run_once()
            per_loop.append(reads(sim) - before)
            clock.advance(10)
        assert max(per_loop) <= 2
        assert per_loop.count(1) >= 30           # one batched book read; open orders only now and then
        counts = sim.request_counts()["by_endpoint"]
        assert counts["POST /books"] == 36
        assert "GET /book" not in counts and "GET /data/order/{id}" not in counts
        # the bot's own count of what it sent agrees with the exchange's
        assert sum(bot.venue.api_calls().values()) - setup_calls == sim.request_counts()["total"]

"""An hour of simulated trading with 10% of requests failing: no crash, nothing lost, no double sell."""
from __future__ import annotations

import logging
from decimal import Decimal as D

from bot.clock import SimulatedClock
from bot.config import BotConfig, with_overrides
from bot.position_manager import PositionState, PositionStore
from bot.scanner import MarketScanner
from bot.sim import SimExchange
from bot.venue.live import LiveVenue
from main_bot import Bot
from tests.e2e import invariants


def test_an_hour_with_ten_percent_faults(tmp_path, caplog):
    clock = SimulatedClock(start=1_800_000_000)
    with SimExchange(seed=11, clock=clock, markets=6, default_volatility="0.004") as sim:
        wallet = sim.new_wallet(usdc=200)
        config = BotConfig.model_validate({
            "bot": {"dry_run": False, "loop_interval_seconds": 10, "positions_file": str(tmp_path / "p.json"),
                    "log_file": None},
            "capital": {"total": 60, "max_trade_size": 10, "max_positions": 3},
            "trading": {"ab_test_ratio": 0.5, "ab_test_seed": 1, "order_check_interval_seconds": 30},
            "strategy": {"take_profit_pct": "0.05", "stop_loss_pct": "0.05", "max_hold_hours": 0.1,
                         "blacklist_hours": 0.05, "min_liquidity": 0, "min_hours_to_end": 0, "max_spread": "0.1",
                         "scan_interval_seconds": 30},
            "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url},
        })
        venue = LiveVenue(sim.clob_url, private_key=wallet["private_key"], funder=wallet["address"], clock=clock,
                          seed=3)
        bot = Bot(config, venue, MarketScanner(sim.gamma_url, config.strategy), PositionStore(tmp_path / "p.json"),
                  clock=clock)
        sim.set_faults(0.10, statuses=[429, 425, 500, 503], seed=7)
        with caplog.at_level(logging.INFO):
            for _ in range(360):
                bot.run_guarded()
                clock.advance(10)
            sim.set_faults(0)
            bot.config = with_overrides(bot.config, strategy__scan_interval_seconds=10**9)   # wind down: no new entries
            for _ in range(120):
                bot.run_guarded()
                clock.advance(10)
        faults = sim.request_counts()["faults"]
        assert faults > 50, "the test must really have been under fire"
        assert "Unexpected error" not in caplog.text
        positions = bot.state.all_positions()
        closed = [p for p in positions if p.status == PositionState.CLOSED and p.entry_shares > 0]
        assert len(closed) >= 8, f"only {len(closed)} lifecycles completed in the hour"
        for p in positions:
            assert p.sold_shares <= p.entry_shares + D("0.01"), f"{p.id} sold more than it bought"
        result = invariants.check(bot.state, sim.balances(wallet["address"]),
                                  invariants.venue_view(sim.clob_url, wallet["private_key"], wallet["address"]))
        assert (result["orphan_orders"], result["orphan_shares"], result["duplicates"], result["mismatches"]) == \
            (0, 0, 0, 0), result["details"]
        assert not any(p.status == PositionState.NEEDS_ATTENTION for p in positions)
        print(f"faults={faults} requests={sim.request_counts()['total']} lifecycles={len(closed)} "
              f"reasons={sorted({p.close_reason.value for p in closed})} read_retries={venue.retries}")

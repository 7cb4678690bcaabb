"""End-to-end fixtures: the bot, through the real py-clob-client-v2, against bot/sim on loopback."""
from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import SimulatedClock
from bot.config import BotConfig, feed_urls, with_overrides
from bot.position_manager import PositionStore
from bot.scanner import MarketScanner
from bot.sim import SimExchange
from bot.venue.live import LiveVenue
from bot.venue.paper import PaperVenue
from main_bot import Bot


@pytest.fixture
def sim():
    with SimExchange(seed=3) as exchange:
        yield exchange


def e2e_config(tmp_path: Path, sim: SimExchange, **overrides) -> BotConfig:
    """A config for scripted runs: everything fast, filters open, the sim's hosts."""
    data = {
        "bot": {"dry_run": False, "loop_interval_seconds": 1, "positions_file": str(tmp_path / "positions.json"),
                "log_file": None},
        "capital": {"total": "100", "max_trade_size": "10", "max_positions": 3},
        "trading": {"use_concurrent_orders": True, "order_check_interval_seconds": 30},
        "strategy": {"take_profit_pct": "0.10", "stop_loss_pct": "0.10", "max_hold_hours": 24, "blacklist_hours": 24,
                     "min_price": "0.2", "max_price": "0.8", "min_liquidity": "0", "min_volume": "0",
                     "max_spread": "0.1", "min_hours_to_end": 0, "scan_interval_seconds": 1},
        "api": {"clob_host": sim.clob_url, "gamma_host": sim.gamma_url},
        # Used only by a harness built with feeds=True (the others run REST-only, as with feeds.enabled false).
        "feeds": feed_urls(sim.ws_url),
    }
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return BotConfig.model_validate(data)


class Harness:
    """A bot wired to the sim with a funded throwaway wallet and a simulated bot clock.
    ``signature_type`` 3: the key's deposit wallet holds the funds and makes the orders."""

    def __init__(self, sim: SimExchange, tmp_path: Path, dry_run: bool = False, wallet=None, signature_type: int = 0,
                 feeds: bool = False, **overrides):
        self.sim = sim
        self.config = e2e_config(tmp_path, sim, **overrides)
        self.wallet = wallet or sim.new_wallet(usdc=100, signature_type=signature_type)
        signature_type = self.wallet.get("signature_type", signature_type)
        # One clock for both when the sim runs on a simulated one (delays, restart windows), else the bot's own.
        self.clock = sim.clock if isinstance(sim.clock, SimulatedClock) else SimulatedClock(start=sim.clock.time())
        if dry_run:
            self.venue = PaperVenue(LiveVenue(sim.clob_url, clock=self.clock), Decimal(100),
                                    state_file=tmp_path / "paper.json")
        else:
            self.venue = LiveVenue(sim.clob_url, private_key=self.wallet["private_key"], funder=self.wallet["address"],
                                   signature_type=signature_type, clock=self.clock)
        self.store = PositionStore(self.config.bot.positions_file)
        self.wakes = 0
        self.feeds = None
        if feeds:   # the push feeds of bot/sim, started here (the loop's run() starts them; tests step it)
            from bot.feeds import Feeds

            self.feeds = Feeds(self.config.feeds, self.clock, self._wake, self.venue.feed_credentials())
            self.feeds.start()
        self.bot = Bot(self.config, self.venue, MarketScanner.from_config(self.config), self.store,
                       clock=self.clock, feeds=self.feeds)

    def _wake(self) -> None:
        self.wakes += 1
        bot = getattr(self, "bot", None)
        if bot is not None:
            bot.wake()   # (ends a loop's wait, or a read's retry wait, when the test gave the bot a waker)

    def close(self) -> None:
        """Stop the feeds' threads (a harness built with feeds=True)."""
        if self.feeds is not None:
            self.feeds.stop()

    def loop(self, n: int = 1, advance: float = 1.0) -> None:
        for _ in range(n):
            self.bot.run_once()
            self.clock.advance(advance)

    def no_new_trades(self) -> None:
        """Stop scanning, so a closed position's market is not bought again within the test."""
        self.config = with_overrides(self.config, strategy__scan_interval_seconds=10**9)
        self.bot.config = self.config
        self.bot.delay_scan()

    def restart(self) -> Bot:
        self.bot = Bot(self.config, self.venue, MarketScanner.from_config(self.config),
                       PositionStore(self.config.bot.positions_file), clock=self.clock, feeds=self.feeds)
        return self.bot

    @property
    def positions(self):
        return self.bot.state.all_positions()

    def venue_balances(self):
        return self.sim.balances(self.wallet["address"])

    def held(self, token: str) -> Decimal:
        """The shares of ``token`` the account holds: on the venue (the simulator's books), or in the paper account of
        a dry run."""
        if self.venue.name != "live":
            return self.venue.token_balance(token)
        return Decimal(str(self.venue_balances()["tokens"].get(token, 0)))


def sim_order_status(sim: SimExchange, order_id: str) -> str | None:
    """The simulator's own record of an order's status (the venue's GET /data/order forgets orders that are no
    longer live: FACTS.md Part 0, 0.3)."""
    view = sim.engine.order_view(order_id, include_forgotten=True)
    return view["status"] if view else None


@pytest.fixture(autouse=True)
def quiet_sdk():
    logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)

"""Property-based test of positions' lives: random price paths, random venue answers (fills, partial fills,
delayed matching, HTTP 200 refusals, lost and garbled answers, 429/425/5xx faults, the engine's restart
window, sparse answers) and random crashes inside every phase, through the real SDK against bot/sim.

After every step (what the bot knows may lag the venue only where an order's outcome is still being
looked up):
- the account's shares of each token equal the active positions' shares on it, less what their TPs
  filled on the venue and the bot has not read yet (never more than the bot bought, never negative);
- a position never sold more than it bought; at most one resting TP per token, each one a position's;
- every open position has a stop-loss price, and a limit_orders one a TP (resting, or being looked up);
- no position needs a person and the bot never pauses itself (nothing here is a reason to).
At the end, once everything has exited: each position's realized P&L is the account's cash change for it
(the sum over positions equals the account's USDC change, within $0.001 a position).

Default profile: a few dozen examples in well under a minute. ``HYPOTHESIS_PROFILE=nightly`` runs many more.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot import crashpoints
from bot.clock import SimulatedClock
from bot.config import with_overrides
from bot.orders import Role
from bot.position_manager import ExitMode, PositionState, PositionStore
from bot.scanner import MarketScanner
from bot.sim import SimExchange
from bot.venue.live import LiveVenue
from main_bot import Bot
from tests.e2e.conftest import e2e_config

settings.register_profile("default", max_examples=12, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("nightly", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("debug", max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "40")), deadline=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")

SHARE_UNIT = D("0.01")
CRASH_POINTS = ["before_send", "after_buy", "after_tp", "after_cancel", "before_sell", "after_sell"]
ANSWERS = ["normal", "normal", "normal", "delayed", "refused", "lost", "garbled", "busy", "sparse", "restart"]


class Crash(BaseException):
    """A kill at a crash point: not an Exception, so the bot's own handlers cannot swallow it."""


@dataclass(frozen=True)
class Step:
    price: float
    answer: str
    crash: str | None
    advance: float


steps = st.lists(st.builds(
    Step,
    price=st.sampled_from([0.30, 0.40, 0.44, 0.46, 0.48, 0.50, 0.52, 0.54, 0.56, 0.60, 0.70]),
    answer=st.sampled_from(ANSWERS),
    crash=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(CRASH_POINTS)),
    advance=st.sampled_from([1.0, 3.0, 11.0, 31.0]),
), min_size=4, max_size=14)


class World:
    """The sim, one funded wallet and the bot, which can be killed and started again from its files."""

    def __init__(self, sim: SimExchange, tmp: Path):
        self.sim = sim
        self.clock = sim.clock
        self.config = e2e_config(tmp, sim, capital__max_positions=2, capital__max_trade_size="10",
                                 trading__ab_test_ratio=0.5, trading__ab_test_seed=5,
                                 trading__order_check_interval_seconds=5,
                                 strategy__take_profit_pct="0.08", strategy__stop_loss_pct="0.08",
                                 strategy__max_hold_hours=0.05)
        self.wallet = sim.new_wallet(usdc=100)
        self.start_usdc = D(str(sim.balances(self.wallet["address"])["usdc"]))
        self.markets = [sim.create_market(f"Market {i}?", yes_price=0.5, volatility=0) for i in range(2)]
        self.restart()

    def restart(self) -> None:
        venue = LiveVenue(self.sim.clob_url, private_key=self.wallet["private_key"], funder=self.wallet["address"],
                          clock=self.clock)
        self.bot = Bot(self.config, venue, MarketScanner(self.sim.gamma_url, self.config.strategy),
                       PositionStore(self.config.bot.positions_file), clock=self.clock)

    def run_once(self, crash: str | None) -> None:
        def hook(name: str) -> None:
            if name == crash:
                raise Crash(name)

        crashpoints.set_hook(hook if crash else None)
        try:
            self.bot.run(loops=self.bot.loops_done + 1)   # one loop, errors classified as in production
        except Crash:
            self.restart()   # what is on disk is all the next bot knows
        finally:
            crashpoints.set_hook(None)

    def set_answers(self, answer: str) -> None:
        sim = self.sim
        sim.set_faults(0)
        sim.refuse_orders()
        sim.set_sparse_answers(answer == "sparse")
        for m in self.markets:
            sim.set_market_options(m["condition_id"], seconds_delay=3 if answer == "delayed" else 0)
        if answer == "refused":
            sim.refuse_orders(next=1)
        elif answer == "lost":
            sim.set_faults(1.0, statuses=[500], paths=["/order"], after=True)
        elif answer == "garbled":
            sim.set_faults(1.0, statuses=[200], paths=["/order"], after=True)
        elif answer == "busy":
            sim.set_faults(0.5, statuses=[429, 425, 500, 503], seed=1)
        elif answer == "restart" and sim.engine_phase()["phase"] == "normal":
            sim.restart_engine(seconds_425=20, post_only_seconds=20)

    def check(self) -> None:
        state = self.bot.state
        sim, address = self.sim, self.wallet["address"]
        balances = sim.balances(address)
        assert not state.paused, state.pause_reason
        for pos in state.all_positions():
            assert pos.status != PositionState.NEEDS_ATTENTION, (pos.id, pos.attention_reason)
            assert pos.sold_shares <= pos.entry_shares + SHARE_UNIT, (pos.id, pos.sold_shares, pos.entry_shares)
            assert pos.shares >= 0
            if pos.status == PositionState.OPEN:
                assert pos.sl_price is not None, pos.id
                if pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.shares >= pos.min_order_size:
                    assert pos.tp_order_id or (pos.pending is not None and pos.pending.role == Role.TP), pos.id
        resting = [o for o in sim.engine.open_orders(address) if o["side"] == "SELL"]
        tokens = [o["asset_id"] for o in resting]
        assert len(tokens) == len(set(tokens)), "two resting sells on one token"
        known = state.known_order_ids()
        assert all(o["id"] in known for o in resting), "a resting order no position knows"
        by_token: dict[str, list] = {}
        for pos in state.all_positions():
            by_token.setdefault(pos.token_id, []).append(pos)
        for token, positions in by_token.items():
            if any(p.status == PositionState.OPENING or (p.pending is not None and p.pending.order_id)
                   for p in positions):
                continue   # an order's outcome is being looked up: the bot knows it does not know yet
            expected = D(0)
            for p in positions:
                if not p.is_active:
                    continue
                unread = D(0)
                tp = p.live_tp
                if tp is not None and tp.order_id:
                    view = sim.engine.order_view(tp.order_id) or {}
                    unread = D(view.get("size_matched", "0")) - tp.filled
                expected += p.shares - unread
            held = D(str(balances["tokens"].get(token, 0)))
            assert held >= 0
            assert expected - SHARE_UNIT / 100 <= held <= expected + SHARE_UNIT * len(positions), \
                (token[:8], str(held), str(expected))

    def wind_down(self) -> None:
        """Everything calm again and the holding time over: every position exits (or is held as dust)."""
        self.config = self.bot.config = with_overrides(self.config, strategy__scan_interval_seconds=10**9)
        self.bot.delay_scan()
        self.set_answers("normal")
        for m in self.markets:   # a book an exit can sell into (a collapsed one is held by design, not dumped)
            self.sim.set_price(m["token_ids"][0], 0.5)
        self.clock.advance(60)
        for _ in range(40):
            self.bot.run(loops=self.bot.loops_done + 1)
            self.bot.delay_scan()
            self.check()
            if all(p.status in (PositionState.CLOSED, PositionState.HELD) for p in self.bot.state.all_positions()):
                break
            self.clock.advance(61)
        assert all(p.status in (PositionState.CLOSED, PositionState.HELD) for p in self.bot.state.all_positions()), \
            [(p.id, p.status.value, p.pending) for p in self.bot.state.all_positions()]
        cash = D(str(self.sim.balances(self.wallet["address"])["usdc"])) - self.start_usdc
        booked = sum((p.exit_proceeds - p.entry_cost for p in self.bot.state.all_positions()), D(0))
        assert abs(cash - booked) <= D("0.001") * max(1, len(self.bot.state.all_positions())), (str(cash), str(booked))


@settings(settings.get_profile(PROFILE))
@given(path=steps)
def test_a_positions_life_keeps_the_books_and_the_account_in_step(tmp_path_factory, path):
    tmp = tmp_path_factory.mktemp("life")
    with SimExchange(seed=3, clock=SimulatedClock(start=1_800_000_000.0)) as sim:
        world = World(sim, tmp)
        for step in path:
            world.set_answers(step.answer)
            for m in world.markets:
                sim.set_price(m["token_ids"][0], step.price)
            world.run_once(step.crash)
            world.set_answers("normal")
            world.check()
            world.clock.advance(step.advance)
        world.wind_down()


@pytest.fixture(autouse=True)
def _no_hook_left():
    yield
    crashpoints.set_hook(None)

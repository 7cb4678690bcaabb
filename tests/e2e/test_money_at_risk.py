"""No money at risk on the real venue's answers: one test per rule, through the real SDK against bot/sim.

Each reproduces what put money at risk before (the venue's delayed, sparse, refused or lost answers; the
user's own shares in the wallet; a token the venue does not know; dust; fees; a TP that fills during an
exit; the matching engine's restart window) and asserts the account and the positions agree.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal as D

import pytest

from bot.clock import SimulatedClock
from bot.errors import ConfigError
from bot.orders import Role
from bot.position_manager import CloseReason, ExitMode, Position, PositionState
from bot.sim import SimExchange
from tests.e2e.conftest import Harness

PNL_TOLERANCE = D("0.001")


@pytest.fixture
def sim():
    """A sim on a simulated clock that the bot shares (delays and restart windows pass when the test says)."""
    with SimExchange(seed=3, clock=SimulatedClock(start=1_800_000_000.0)) as exchange:
        yield exchange


def usdc(h) -> D:
    return D(str(h.venue_balances()["usdc"]))


def only(positions):
    assert len(positions) == 1, positions
    return positions[0]


def opened(sim, tmp_path, mode="limit_orders", price=0.5, **overrides):
    m = sim.create_market("Will it rain?", yes_price=price, volatility=0)
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=mode == "limit_orders", **overrides)
    return m, h


# -- rule 1: order answers are read as the venue means them -------------------------------------------

def test_a_delayed_buy_is_looked_up_by_its_id_until_it_matched(sim, tmp_path):
    m, h = opened(sim, tmp_path)
    sim.set_market_options(m["condition_id"], seconds_delay=3)
    start = usdc(h)
    h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.OPENING and pos.entry_order_id      # not "bought nothing"
    h.no_new_trades()
    h.clock.advance(4)
    h.loop()
    assert pos.status == PositionState.OPEN and pos.entry_shares > 0 and pos.tp_order_id
    assert pos.shares == h.held(pos.token_id)
    assert abs((start - usdc(h)) - pos.entry_cost) <= PNL_TOLERANCE


def test_sparse_success_answers_through_a_whole_lifecycle(sim, tmp_path):
    """The venue may answer only success/orderID/errorMsg: no amounts is "not known yet", never "nothing"."""
    m, h = opened(sim, tmp_path, mode="monitor")
    sim.set_sparse_answers(True)
    start = usdc(h)
    h.loop()
    h.no_new_trades()
    h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.OPEN and pos.entry_shares > 0
    sim.set_price(m["token_ids"][0], 0.40)
    for _ in range(4):
        h.loop(advance=3)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.held(pos.token_id) < D("0.01")
    assert abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE


def test_an_http_200_refusal_is_a_refusal(sim, tmp_path, caplog):
    m, h = opened(sim, tmp_path)
    sim.refuse_orders(next=1, message="not enough balance / allowance")
    h.loop()
    pos = only(h.positions)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.ENTRY_UNFILLED
    assert h.held(pos.token_id) == 0 and "Malformed" not in caplog.text
    sim.refuse_orders(next=0)
    h.loop(advance=2)      # the next scan buys; refuse the TP only
    second = h.positions[-1]
    assert second.status == PositionState.OPEN and second.tp_order_id


def test_a_tp_whose_answer_cannot_be_read_is_looked_up_not_dropped(sim, tmp_path):
    """A 200 with a body no client can parse: the TP may rest. Before, the bot fell back to monitoring with
    the TP still reserving the shares; now it looks the id up and adopts it."""
    m, h = opened(sim, tmp_path)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    first_tp = pos.tp_order_id
    sim.engine.cancel(h.wallet["address"], [first_tp])   # the venue drops the TP (e.g. a market event)
    sim.set_faults(1.0, statuses=[200], paths=["/order"], after=True)
    h.clock.advance(31)
    h.loop()                                              # the re-armed TP's answer is garbled
    sim.set_faults(0)
    assert pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.pending and pos.pending.role == Role.TP
    h.loop()
    open_orders = sim.engine.open_orders(h.wallet["address"])
    assert len(open_orders) == 1 and pos.tp_order_id == open_orders[0]["id"] != first_tp
    assert pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.pending is None


# -- rule 2: the bot only ever owns what it bought ---------------------------------------------------

def test_a_lost_buy_answer_adopts_only_what_that_order_bought(sim, tmp_path):
    m = sim.create_market("Own shares?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    wallet = sim.new_wallet(usdc=100)
    sim.fund(wallet["address"], token_id=yes, shares=300)          # the user's own shares
    h = Harness(sim, tmp_path, wallet=wallet, trading__use_concurrent_orders=False)
    sim.set_faults(1.0, statuses=[500], paths=["/order"], after=True)
    h.loop()                                                      # bought, but the answer was lost
    sim.set_faults(0)
    h.no_new_trades()
    pos = only(h.positions)
    assert pos.status == PositionState.OPENING and pos.entry_order_id
    h.loop()
    assert pos.status == PositionState.OPEN and D(15) < pos.shares < D(21)   # ~19.6, never 300
    sim.set_price(yes, 0.40)
    for _ in range(3):
        h.loop(advance=3)
    # the user's 300 untouched (what is left of the bot's own is under one venue unit: 0.01)
    assert pos.status == PositionState.CLOSED and D(300) <= h.held(yes) < D("300.01")


def test_start_up_reports_shares_no_position_accounts_for(sim, tmp_path, caplog):
    m = sim.create_market("Own shares?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    wallet = sim.new_wallet(usdc=100)
    h = Harness(sim, tmp_path, wallet=wallet, trading__use_concurrent_orders=False)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    sim.fund(wallet["address"], token_id=yes, shares=300)
    h.restart()
    h.no_new_trades()
    caplog.set_level(logging.WARNING)
    h.bot.run_once()
    assert "token balance(s) no position accounts for" in caplog.text and pos.shares < 21


# -- rule 5: one broken position never blocks the others ---------------------------------------------

def test_a_position_the_venue_cannot_check_never_blocks_another_stop_loss(sim, tmp_path):
    m, h = opened(sim, tmp_path, mode="monitor")
    h.loop()
    h.no_new_trades()
    good = only(h.positions)
    # a concurrent position on a market the venue does not know (404 on its market info): its TP is gone,
    # so start-up would place it again and fail there
    ghost = Position(token_id="99999999999999999999", condition_id="0x" + "ab" * 32,
                     exit_mode=ExitMode.LIMIT_ORDERS, tp_order_id="0x" + "12" * 32, shares=D(10), entry_shares=D(10),
                     entry_price=D("0.5"), entry_cost=D(5), tp_price=D("0.55"), sl_price=D("0.45"),
                     opened_at=h.bot.now(), updated_at=h.bot.now())
    h.bot.state.add(ghost)
    h.bot.save()
    sim.set_price(m["token_ids"][0], 0.40)
    bot = h.restart()
    h.no_new_trades()
    for _ in range(3):
        bot.run_once()
        h.clock.advance(3)
    good, ghost = bot.state.all_positions()
    assert good.status == PositionState.CLOSED and good.close_reason == CloseReason.STOP_LOSS
    assert ghost.status == PositionState.NEEDS_ATTENTION and ghost.attention_reason


# -- rule 8: dust is still a position ------------------------------------------------------------------

def test_dust_is_held_to_resolution_and_its_payout_booked(sim, tmp_path):
    m = sim.create_market("Dust?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    wallet = sim.new_wallet(usdc=100)
    sim.fund(wallet["address"], token_id=yes, shares=D("1.5"))
    h = Harness(sim, tmp_path, wallet=wallet)
    now = h.bot.now()
    pos = Position(token_id=yes, condition_id=m["condition_id"], market_id=m["id"], outcome="Yes",
                   exit_mode=ExitMode.MONITOR, shares=D("1.5"), entry_shares=D("1.5"), entry_price=D("0.5"),
                   entry_cost=D("0.75"), tp_price=D("0.55"), sl_price=D("0.45"), opened_at=now, updated_at=now)
    h.bot.state.add(pos)
    h.bot.save()
    h.restart()
    h.no_new_trades()
    sim.set_price(yes, 0.40)
    h.loop(2, advance=2)
    pos = only(h.positions)
    assert pos.status == PositionState.HELD and pos.is_active and pos.shares == D("1.5")
    before = usdc(h)
    sim.resolve(m["condition_id"], "Yes")
    h.clock.advance(61)
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.exit_proceeds == D("1.5")
    assert pos.realized_pnl == D("0.75") and usdc(h) - before == D("1.5")


def test_a_trade_size_too_small_for_any_exit_refuses_to_start(sim, tmp_path):
    m, h = opened(sim, tmp_path, capital__max_trade_size="1.05")
    with pytest.raises(ConfigError, match="stop-loss could never sell"):
        h.bot.run(loops=1)
    assert h.positions == []


# -- rule 9: P&L is the wallet's P&L ---------------------------------------------------------------------

@pytest.mark.parametrize("mode,exit_price,reason", [("monitor", 0.40, CloseReason.STOP_LOSS),
                                                     ("monitor", 0.60, CloseReason.TAKE_PROFIT),
                                                     ("limit_orders", 0.60, CloseReason.TAKE_PROFIT),
                                                     ("limit_orders", 0.40, CloseReason.STOP_LOSS)])
def test_realized_pnl_equals_the_accounts_cash_change(sim, tmp_path, mode, exit_price, reason):
    m, h = opened(sim, tmp_path, mode=mode)
    start = usdc(h)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    sim.set_price(m["token_ids"][0], exit_price)
    for _ in range(4):
        h.loop(advance=31)
    assert pos.status == PositionState.CLOSED and pos.close_reason == reason
    assert pos.fees_paid > 0
    assert abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE


def test_paper_trading_charges_the_venues_fees(sim, tmp_path):
    m, h = opened(sim, tmp_path, mode="monitor")
    paper = Harness(sim, tmp_path / "paper", dry_run=True, trading__use_concurrent_orders=False)
    start = paper.venue.collateral_balance()
    paper.loop()
    paper.no_new_trades()
    pos = only(paper.positions)
    assert pos.status == PositionState.OPEN and pos.pending is None
    assert pos.shares < pos.entry_cost / pos.entry_price      # the BUY's fee was taken in shares
    sim.set_price(m["token_ids"][0], 0.40)
    for _ in range(3):
        paper.loop(advance=3)
    assert pos.status == PositionState.CLOSED and pos.fees_paid > 0
    assert abs((paper.venue.collateral_balance() - start) - pos.realized_pnl) <= PNL_TOLERANCE


# -- rule 12: a TP that fills is a profit, never an alarm -----------------------------------------------

def test_a_tp_that_fills_after_its_cancel_was_refused_is_booked_at_start_up(sim, tmp_path):
    m, h = opened(sim, tmp_path)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    start_cash = usdc(h)
    sim.set_faults(1.0, statuses=[429], paths=["/order"])       # the TP cancel (and any sell) refused
    sim.set_price(m["token_ids"][0], 0.40)
    h.loop()
    assert pos.status == PositionState.EXITING and pos.tp_order_id
    sim.set_faults(0)
    sim.set_price(m["token_ids"][0], 0.65)                       # ...then the TP fills while the bot is down
    bot = h.restart()
    h.no_new_trades()
    bot.run_once()
    pos = only(bot.state.all_positions())
    assert pos.status in (PositionState.EXITING, PositionState.CLOSED) and not bot.state.paused
    h.clock.advance(61)
    bot.run_once()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert abs((usdc(h) - start_cash) - pos.exit_proceeds) <= PNL_TOLERANCE and not bot.state.paused


# -- the venue's harder answers: the restart window -----------------------------------------------------

def test_a_stop_loss_waits_out_the_engine_restart_and_sells(sim, tmp_path):
    m, h = opened(sim, tmp_path, mode="monitor")
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    sim.restart_engine(seconds_425=90, post_only_seconds=120)
    sim.set_price(m["token_ids"][0], 0.40)
    for _ in range(10):
        h.loop(advance=30)
        if pos.status == PositionState.CLOSED:
            break
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.clock.time() - 1_800_000_000.0 >= 210   # it was sold only once orders were taken again
    assert h.held(pos.token_id) < D("0.01")


def test_no_bids_means_the_stop_loss_cannot_fire_and_the_bot_says_so(sim, tmp_path, caplog):
    m, h = opened(sim, tmp_path, mode="monitor")
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    sim.set_book(m["token_ids"][0], bids=[], asks=[[0.55, 100]])
    caplog.set_level(logging.WARNING)
    h.loop(3)
    assert caplog.text.count(f"Position {pos.id}: the book has no bids") == 1
    assert pos.status == PositionState.OPEN


def test_time_exit_is_measured_from_the_sims_clock(sim, tmp_path):
    m, h = opened(sim, tmp_path, mode="monitor", strategy__max_hold_hours=1)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    h.clock.advance(timedelta(hours=1, seconds=1).total_seconds())
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TIME_EXIT


def test_shares_sold_by_hand_while_the_bot_was_down_shrink_the_position_at_start(sim, tmp_path):
    """Before: needs_attention, a pause, and the rest below its stop-loss never sold. Now the position keeps
    what the account holds (after a refreshed read), with a warning and an alert, and protects it."""
    m, h = opened(sim, tmp_path, mode="monitor")
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    held_before = h.held(pos.token_id)
    sim.fund(h.wallet["address"], token_id=pos.token_id, shares=held_before - 5)   # 5 sold on polymarket.com
    bot = h.restart()
    h.no_new_trades()
    bot.run_once()
    pos = only(bot.state.all_positions())
    assert pos.status == PositionState.OPEN and pos.shares == held_before - 5 and not bot.state.paused
    assert pos.metrics["shares_left_outside"] == "5.000000" or D(pos.metrics["shares_left_outside"]) == 5
    start = usdc(h)
    sim.set_price(m["token_ids"][0], 0.40)   # the rest is still protected: its stop-loss sells exactly it
    h.bot = bot
    h.loop(2, advance=3)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.held(pos.token_id) < D("0.01") and not bot.state.paused
    sale = sum((r.usdc - r.fee for r in pos.orders if r.role == Role.EXIT), D(0))
    assert abs((usdc(h) - start) - sale) <= PNL_TOLERANCE


def test_all_shares_sold_by_hand_close_the_position_at_cost_without_a_pause(sim, tmp_path):
    m, h = opened(sim, tmp_path, mode="monitor")
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    sim.fund(h.wallet["address"], token_id=pos.token_id, shares=0)   # sold by hand on polymarket.com
    bot = h.restart()
    h.no_new_trades()
    bot.run_once()
    pos = only(bot.state.all_positions())
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.SOLD_OUTSIDE
    assert not bot.state.paused and pos.realized_pnl == 0   # booked at cost (its fee included): no P&L


def test_a_position_needing_attention_that_agrees_again_goes_back_under_management(sim, tmp_path):
    from bot.lifecycle import AttentionNeeded, apply

    m, h = opened(sim, tmp_path, mode="monitor")
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    apply(pos, AttentionNeeded("could not be checked against the venue at start-up"), h.bot.now())
    h.bot.manage.after(pos, h.bot.now())   # (pauses new entries)
    assert h.bot.state.paused
    bot = h.restart()
    h.no_new_trades()
    bot.run_once()
    pos = only(bot.state.all_positions())
    assert pos.status == PositionState.OPEN and pos.attention_reason is None and not bot.state.paused


@pytest.mark.parametrize("approved", [False, True], ids=["by_hand", "auto_redeem"])
def test_the_resolution_line_says_who_redeems_the_winning_shares(sim, tmp_path, caplog, approved):
    """"Redeem on polymarket.com" is true only when Polymarket's auto-redeem operator is not approved (FACTS.md
    Part 0, 0.8): the bot reads that once at start (from the chain: the sim answers eth_call) and says which."""
    from bot.doctor import auto_redeem_approved

    m = sim.create_market("Will it resolve?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, trading__use_concurrent_orders=False)
    sim.set_approval(h.wallet["address"], "auto_redeem_operator", approved)
    h.bot.manage.auto_redeem = auto_redeem_approved(h.venue)
    assert h.bot.manage.auto_redeem is approved
    h.loop()
    pos = only(h.positions)
    h.no_new_trades()
    sim.resolve(m["condition_id"], "Yes")
    with caplog.at_level(logging.INFO, logger="bot"):
        h.loop(3, advance=120)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.MARKET_RESOLVED
    line = next(r.getMessage() for r in caplog.records if "MARKET RESOLVED" in r.getMessage())
    assert ("auto-redeem operator redeems the winning shares by itself" in line) == approved
    assert ("redeem the winning shares on polymarket.com" in line) == (not approved)

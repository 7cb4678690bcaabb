"""Races and partial fills, through the real SDK against the simulated venue."""
from __future__ import annotations

from decimal import Decimal as D

from bot.fees import taker_fee
from bot.position_manager import CloseReason, PositionState
from bot.venue.base import Book
from main_bot import Snapshot
from tests.e2e.conftest import Harness


def setup_limit_position(sim, tmp_path, **overrides):
    m = sim.create_market("Race?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, **overrides)
    h.loop()
    h.no_new_trades()
    pos = h.positions[0]
    assert pos.tp_order_id and pos.tp_price == D("0.57") and pos.sl_price == D("0.45")
    return m, h, pos


def usdc(h) -> D:
    return D(h.venue_balances()["usdc"])


def test_tp_fills_between_the_sl_trigger_and_the_cancel(sim, tmp_path):
    m, h, pos = setup_limit_position(sim, tmp_path)
    before = usdc(h)
    sim.set_price(m["token_ids"][0], 0.65)          # the TP fills on the venue...
    stale = Book(pos.token_id, bids=((D("0.40"), D("100")),), asks=((D("0.42"), D("100")),))
    h.bot._update_positions(Snapshot(books={pos.token_id: stale}), h.bot.now())   # ...the bot saw an old book
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.exit_order_ids == [] and pos.metrics.get("cancel_race") is True
    assert usdc(h) - before == round_down(pos.entry_shares) * D("0.57")   # sold once, at the TP
    assert D(h.venue_balances()["tokens"][pos.token_id]) < D("0.01")


def round_down(x: D) -> D:
    return x.quantize(D("0.01"), rounding="ROUND_DOWN")


def test_market_moves_through_tp_and_sl_in_one_loop(sim, tmp_path):
    m, h, pos = setup_limit_position(sim, tmp_path)
    before = usdc(h)
    yes = m["token_ids"][0]
    sim.set_price(yes, 0.65)
    sim.set_price(yes, 0.40)
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert usdc(h) - before == round_down(pos.entry_shares) * D("0.57")
    assert h.venue_balances()["open_orders"] == 0


def test_partial_tp_fill_then_stop_loss_sells_only_the_rest(sim, tmp_path):
    m, h, pos = setup_limit_position(sim, tmp_path)
    yes = m["token_ids"][0]
    tp_size = round_down(pos.shares)
    before = usdc(h)
    sim.set_book(yes, bids=[[0.57, 8], [0.49, 500]], asks=[[0.58, 500]])   # someone buys 8 of our TP shares
    h.clock.advance(30)
    h.loop()
    assert pos.tp_filled_shares == D(8) and pos.status == PositionState.OPEN
    sim.set_price(yes, 0.40)
    h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert pos.sold_shares == tp_size
    # the TP filled as a maker (no fee); the stop-loss sold as a taker and paid the market's fee in USDC
    fee = taker_fee(tp_size - 8, D("0.39"), D("0.02"), 2)
    assert fee > 0 and pos.fees_paid > fee   # (and the entry's fee, paid in USDC on top of its cost)
    assert pos.exit_proceeds == D(8) * D("0.57") + (tp_size - 8) * D("0.39") - fee
    assert abs(usdc(h) - before - pos.exit_proceeds) <= D("0.001")   # the bot's proceeds are the wallet's
    assert h.venue_balances()["open_orders"] == 0


def test_entry_that_fills_partly_arms_exits_for_the_filled_shares(sim, tmp_path):
    m = sim.create_market("Thin?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    sim.set_book(yes, bids=[[0.49, 500]], asks=[[0.51, 12], [0.60, 500]])   # only 12 shares within the cap
    h = Harness(sim, tmp_path)
    h.loop()
    pos = h.positions[0]
    assert pos.status == PositionState.OPEN and pos.shares == D(12)   # CLOB V2: every share bought is held
    assert pos.entry_cost == D("6.12") + taker_fee(D(12), D("0.51"), D("0.02"), 2)   # the fee in USDC on top
    order = h.venue.get_order(pos.tp_order_id)
    assert order.original_size == round_down(pos.shares)


def test_the_tp_id_known_before_sending_is_the_venues_order_id(sim, tmp_path):
    m = sim.create_market("Hash?", yes_price=0.5, volatility=0)
    neg = sim.create_market("Hash neg risk?", yes_price=0.5, volatility=0, neg_risk=True)
    h = Harness(sim, tmp_path)
    for market in (m, neg):
        yes = market["token_ids"][0]
        sim.fund(h.wallet["address"], token_id=yes, shares=20)
        info = h.venue.get_market_info(yes, market["condition_id"])
        seen = []
        fill = h.venue.limit_sell(yes, D("0.60"), D("10"), info, before_post=seen.append)
        assert seen == [fill.order_id]

"""Start-up reconciliation: the bot was down while the venue moved on."""
from __future__ import annotations

import logging
from decimal import Decimal as D

from py_clob_client_v2 import ClobClient, OrderArgs, PartialCreateOrderOptions

from bot.config import with_overrides
from bot.lifecycle import OrderSigned, apply
from bot.orders import RecordState
from bot.position_manager import CloseReason, ExitMode, Position, PositionState
from bot.venue.base import MarketInfo
from tests.e2e.conftest import Harness, sim_order_status


def opened(sim, tmp_path, **kw):
    m = sim.create_market("Down time?", yes_price=0.5, volatility=0)
    h = Harness(sim, tmp_path, **kw)
    h.loop()
    h.no_new_trades()
    return m, h, h.positions[0]


def restart(h):
    bot = h.restart()
    h.no_new_trades()
    return bot


def test_tp_filled_while_down_closes_the_position(sim, tmp_path, caplog):
    m, h, pos = opened(sim, tmp_path)
    sim.set_price(m["token_ids"][0], 0.65)
    bot = restart(h)
    with caplog.at_level(logging.INFO, logger="bot"):
        bot.run_once()
    pos = bot.state.all_positions()[0]
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert "Reconciled 1 position(s)" in caplog.text and "1 TP filled while down" in caplog.text


def test_vanished_tp_is_placed_again(sim, tmp_path):
    m, h, pos = opened(sim, tmp_path)
    old = pos.tp_order_id
    assert h.venue.cancel(old).was_canceled(old)     # e.g. cancelled on the website
    bot = restart(h)
    bot.run_once()
    pos = bot.state.all_positions()[0]
    assert pos.status == PositionState.OPEN and pos.tp_order_id and pos.tp_order_id != old
    assert h.venue_balances()["open_orders"] == 1


def test_stop_loss_crossed_while_down_fires_first(sim, tmp_path):
    m, h, pos = opened(sim, tmp_path)
    sim.set_price(m["token_ids"][0], 0.40)
    bot = restart(h)
    bot.run_once()
    pos = bot.state.all_positions()[0]
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.venue_balances()["open_orders"] == 0


def test_crash_between_buy_and_save_leaves_no_untracked_shares(sim, tmp_path):
    m = sim.create_market("Crash?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    h = Harness(sim, tmp_path)
    now = h.bot.now()
    pos = Position(token_id=yes, condition_id=m["condition_id"], exit_mode=ExitMode.LIMIT_ORDERS,
                   status=PositionState.OPENING, tp_price=D("0.57"), sl_price=D("0.45"), opened_at=now,
                   updated_at=now, pending={"kind": "entry", "usdc": "10", "max_price": "0.53"})
    h.bot.state.add(pos)
    h.bot.save()                                        # the intent was saved...
    info = MarketInfo(yes, m["condition_id"], D("0.01"), D(5), False)

    def record(order_id):                               # ...and the signed order's id, before it was sent...
        apply(pos, OrderSigned(order_id, h.clock.time()), now)
        h.bot.save()

    h.venue.market_buy(yes, D(10), D("0.53"), info, before_post=record)   # ...it went through, the process died
    bot = restart(h)
    bot.run_once()
    pos = bot.state.all_positions()[0]
    held = D(h.venue_balances()["tokens"][yes])
    assert pos.status == PositionState.OPEN and pos.shares == held   # all it bought, to the venue's 6 decimals
    assert pos.entry_price == D("0.51") and pos.tp_order_id    # cost basis from the trades, TP armed
    assert len(bot.state.all_positions()) == 1


def test_unknown_orders_are_reported_and_cancelled_only_when_configured(sim, tmp_path, caplog):
    m, h, pos = opened(sim, tmp_path)
    stray = ClobClient(sim.clob_url, chain_id=137, key=h.wallet["private_key"], funder=h.wallet["address"])
    stray.set_api_creds(stray.create_or_derive_api_key())
    order = stray.create_and_post_order(OrderArgs(token_id=m["token_ids"][1], price=0.3, size=10, side="BUY"),
                                        options=PartialCreateOrderOptions(tick_size="0.01", neg_risk=False))
    bot = restart(h)
    with caplog.at_level(logging.INFO, logger="bot"):
        bot.run_once()
    assert "1 unknown open order(s)" in caplog.text and order["orderID"] in caplog.text
    assert h.venue_balances()["open_orders"] == 2
    h.config = with_overrides(h.config, trading__cancel_unknown_orders=True)
    bot = restart(h)
    bot.run_once()
    assert h.venue_balances()["open_orders"] == 1   # only the TP the position knows remains
    assert sim_order_status(sim, order["orderID"]) == "CANCELED"


def test_account_short_of_shares_at_start_shrinks_the_position(sim, tmp_path, caplog):
    m, h, pos = opened(sim, tmp_path, trading__use_concurrent_orders=False)
    sim.fund(h.wallet["address"], token_id=pos.token_id, shares=0)   # sold elsewhere while the bot was down
    bot = restart(h)
    with caplog.at_level(logging.WARNING, logger="bot"):
        bot.run_once()
    pos = bot.state.all_positions()[0]
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.SOLD_OUTSIDE
    assert not bot.state.paused and "1 position(s) shrunk to what the account holds" in caplog.text


def unrecorded(pos):
    """The TP's record as it was saved before the TP left: its id known, its answer not recorded."""
    rec = pos.live_tp
    rec.state = RecordState.SENT
    pos.orders = list(pos.orders)


def test_tp_placed_but_not_recorded_is_adopted_not_doubled(sim, tmp_path):
    m, h, pos = opened(sim, tmp_path)
    tp = pos.tp_order_id
    unrecorded(pos)   # as if the process died after sending the TP, before recording the answer
    h.bot.save()
    bot = restart(h)
    bot.run_once()
    pos = bot.state.all_positions()[0]
    assert pos.tp_order_id == tp and pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.pending is None
    assert h.venue_balances()["open_orders"] == 1


def test_tp_sent_before_a_crash_and_filled_while_down_closes_the_position(sim, tmp_path):
    m, h, pos = opened(sim, tmp_path)
    unrecorded(pos)
    h.bot.save()
    sim.set_price(m["token_ids"][0], 0.65)   # the unrecorded TP fills while the bot is down
    bot = restart(h)
    bot.run_once()
    pos = bot.state.all_positions()[0]
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.tp_order_id is None and pos.realized_pnl > 0


def test_an_unrecorded_entry_is_not_confused_with_an_earlier_buy_of_the_same_token(sim, tmp_path):
    m, h, first = opened(sim, tmp_path, trading__use_concurrent_orders=False)
    yes = m["token_ids"][0]
    sim.set_price(yes, 0.60)
    h.loop()   # the first position takes its profit; the token is free again
    assert first.status == PositionState.CLOSED
    now = h.bot.now()
    again = Position(token_id=yes, condition_id=m["condition_id"], exit_mode=ExitMode.MONITOR,
                     status=PositionState.OPENING, tp_price=D("0.66"), sl_price=D("0.54"), opened_at=now,
                     updated_at=now, pending={"kind": "entry", "usdc": "10", "max_price": "0.63"})
    h.bot.state.add(again)
    h.bot.save()   # the intent was saved, then the process died before the buy left
    bot = restart(h)
    bot.run_once()
    again = next(p for p in bot.state.all_positions() if p.id == again.id)   # moved to the history
    assert again.status == PositionState.CLOSED and again.close_reason == CloseReason.ENTRY_UNFILLED
    assert not bot.state.paused

"""Money on today's venue (CLOB V2, FACTS.md Part 0), end to end through the real SDK against bot/sim: taker fees
in USDC on both sides, fills that fail ("ghost fills"), orders the venue forgets, balance locks, resting orders
cancelled by a resolution, uncancellable delayed orders, and the two money-at-risk paths found from outside
(an exit the feed saw waiting behind a read's retries; shares sold by hand).

The simulator and the bot share one simulated clock here (a ghost trade fails, and a lock ends, on it), so every
market is still (volatility 0) and every delay is the test's own."""
from __future__ import annotations

import logging
from decimal import Decimal as D

import pytest

from bot.clock import SimulatedClock, Waker
from bot.fees import taker_fee
from bot.orders import Role
from bot.position_manager import CloseReason, ExitMode, PositionState
from bot.sim import SimExchange
from tests.e2e.conftest import Harness, sim_order_status

PNL_TOLERANCE = D("0.001")


@pytest.fixture
def csim():
    with SimExchange(seed=3, clock=SimulatedClock(start=1_800_000_000)) as exchange:
        yield exchange


def usdc(h: Harness) -> D:
    return D(str(h.venue_balances()["usdc"])) if h.venue.name == "live" else h.venue.collateral_balance()


def only(positions):
    assert len(positions) == 1, positions
    return positions[0]


def open_one(sim, tmp_path, mode="limit_orders", price=0.5, dry_run=False, **market):
    m = sim.create_market("Will it rain?", yes_price=price, volatility=0, **market)
    h = Harness(sim, tmp_path, dry_run=dry_run, trading__use_concurrent_orders=mode == "limit_orders")
    start = usdc(h)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    assert pos.status == PositionState.OPEN
    return m, h, pos, start


# -- fact 1: taker fees in USDC on both sides ------------------------------------------------------------------

@pytest.mark.parametrize("dry_run", [False, True], ids=["live", "dry_run"])
@pytest.mark.parametrize("mode,move,reason", [("limit_orders", 0.40, CloseReason.STOP_LOSS),
                                              ("monitor", 0.40, CloseReason.STOP_LOSS),
                                              ("monitor", 0.60, CloseReason.TAKE_PROFIT),
                                              ("limit_orders", 0.60, CloseReason.TAKE_PROFIT)])
def test_v2_fees_every_share_bought_is_held_and_pnl_is_the_wallets(csim, tmp_path, dry_run, mode, move, reason):
    """Before: a BUY's fee was taken in shares (the account held all, the bot booked fewer) and a SELL's as
    fee x p (1/p too small): realized P&L was not the wallet's on a fee market."""
    m, h, pos, start = open_one(csim, tmp_path, mode, price=0.3, dry_run=dry_run, fee_rate="0.05", fee_exponent=1)
    yes = m["token_ids"][0]
    entry = next(r for r in pos.orders if r.role == Role.ENTRY)
    assert pos.shares == entry.filled == h.held(yes)   # every share bought is the account's and the bot's
    assert entry.fee > 0 and pos.entry_cost == entry.usdc + entry.fee
    assert abs((start - usdc(h)) - pos.entry_cost) <= PNL_TOLERANCE   # the cost is what left the wallet
    csim.set_price(yes, move * 0.3 / 0.5)
    h.loop(3, advance=3)
    assert pos.status == PositionState.CLOSED and pos.close_reason == reason
    assert h.held(yes) < D("0.01")
    assert abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE
    if reason == CloseReason.STOP_LOSS:   # a taker SELL pays the curve's fee, in USDC, out of its proceeds
        sale = next(r for r in pos.orders if r.role == Role.EXIT)
        assert sale.fee >= taker_fee(sale.filled, sale.usdc / sale.filled, D("0.05"), 1) - D("0.0001") > 0


# -- fact 2: fills that fail -------------------------------------------------------------------------------------

def test_a_buy_that_never_settled_holds_nothing_and_closes_as_unfilled(csim, tmp_path):
    """Before: the buy was booked from the 'matched' answer and the bot held phantom shares."""
    csim.create_market("Will it rain?", yes_price=0.5, volatility=0)
    h = Harness(csim, tmp_path, trading__use_concurrent_orders=False)
    start = usdc(h)
    csim.ghost_fills(1, fail_after_s=2)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    assert pos.status == PositionState.OPEN and not pos.orders[0].confirmed   # matched, not settled
    h.loop(7, advance=1)   # it fails 2 s later; unsettled fills are re-checked every 5 s
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.ENTRY_UNFILLED
    assert pos.realized_pnl == 0 and pos.shares == 0 and usdc(h) == start and h.held(pos.token_id) == 0
    assert not h.bot.state.paused


def test_a_tp_fill_that_failed_puts_the_shares_back_under_protection(csim, tmp_path):
    """Before: a TP booked from size_matched closed the position while its shares were still in the wallet,
    unprotected."""
    m, h, pos, start = open_one(csim, tmp_path)
    yes, tp = m["token_ids"][0], pos.tp_order_id
    csim.ghost_fills(1, fail_after_s=60)
    csim.set_price(yes, 0.60)   # someone buys through the TP: a match that never settles
    csim.set_price(yes, 0.50)
    h.loop(advance=1)
    h.clock.advance(30)   # the TP check is due
    h.loop(advance=1)
    assert pos.status == PositionState.SETTLING and pos.close_reason == CloseReason.TAKE_PROFIT
    assert h.held(yes) > 0   # (the shares never left: the venue's trade is still 'MATCHED')
    h.clock.advance(30)   # ...and then FAILED
    h.loop(3, advance=1)
    assert pos.status == PositionState.OPEN and pos.shares == h.held(yes) > 0   # the shares are back
    assert pos.tp_order_id and pos.tp_order_id != tp and pos.exit_mode == ExitMode.LIMIT_ORDERS   # TP rests again
    assert h.venue_balances()["open_orders"] == 1 and pos.record(tp).failed > 0
    csim.set_price(yes, 0.40)   # and the stop-loss protects them
    h.loop(2, advance=3)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.held(yes) < D("0.01") and abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE


def test_a_tp_that_crossed_at_once_and_failed_is_not_booked_as_settled(csim, tmp_path):
    """A TP placed again while the bid stands at its price fills at once, as a taker; that match may fail too.
    Before: its fill was booked as settled (the POST answer's "matched" taken for a settlement), the position
    closed as take_profit and its shares stayed in the wallet, unprotected (found by the fault test)."""
    m, h, pos, start = open_one(csim, tmp_path)
    yes, tp = m["token_ids"][0], pos.tp_order_id
    csim.ghost_fills(1, fail_after_s=60)
    csim.set_price(yes, 0.60)   # the TP fills as a maker: a ghost fill
    csim.ghost_fills(1, fail_after_s=60)   # ...and so will the next match (the TP placed again, crossing at once)
    h.loop(advance=1)
    h.clock.advance(30)
    h.loop(advance=1)
    assert pos.status == PositionState.SETTLING
    h.clock.advance(31)   # the first fill FAILED: the shares are back and the TP is placed again, at 0.60's bid
    h.loop(2, advance=1)
    crossed = [r for r in pos.orders if r.role == Role.TP and r.order_id != tp and r.filled > 0]
    assert crossed and not crossed[-1].confirmed   # a taker fill: booked unsettled
    assert pos.status != PositionState.CLOSED and h.held(yes) > 0
    h.clock.advance(61)   # ...and it FAILED too: never closed, the shares are protected again
    csim.set_price(yes, 0.50)
    h.loop(3, advance=1)
    assert pos.status == PositionState.OPEN and pos.shares == h.held(yes) > 0
    csim.set_price(yes, 0.40)
    h.loop(3, advance=3)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.held(yes) < D("0.01") and abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE


@pytest.mark.parametrize("fail_after_s", [0, 4])
def test_an_exit_sale_that_failed_is_sold_again(csim, tmp_path, fail_after_s):
    m, h, pos, start = open_one(csim, tmp_path, mode="monitor")
    yes = m["token_ids"][0]
    csim.ghost_fills(1, fail_after_s=fail_after_s)
    csim.set_price(yes, 0.40)
    for _ in range(8):
        h.loop(advance=2)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    exits = [r for r in pos.orders if r.role == Role.EXIT]
    assert exits[0].failed > 0 and exits[0].filled == 0 and exits[-1].filled > 0   # sold again
    assert h.held(yes) < D("0.01") and abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE


# -- fact 3: orders the venue forgets ---------------------------------------------------------------------------

@pytest.mark.parametrize("forget", [True, False], ids=["forgotten", "remembered"])
def test_a_tp_that_filled_while_the_bot_was_down_closes_with_its_profit(csim, tmp_path, forget):
    """Before (forgotten): needs_attention and a pause instead of a profit, or the TP 'placed again'."""
    m, h, pos, start = open_one(csim, tmp_path)
    csim.forget_orders(forget)
    yes, tp = m["token_ids"][0], pos.tp_order_id
    csim.set_price(yes, 0.60)   # the TP fills while the bot is down
    assert sim_order_status(csim, tp) == "MATCHED" and (h.venue.get_order(tp) is None) == forget
    bot = h.restart()
    h.no_new_trades()
    bot.run_once()
    pos = only(bot.state.all_positions())
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.realized_pnl > 0 and abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE
    assert not bot.state.paused and h.venue_balances()["open_orders"] == 0


def test_a_filled_tp_the_venue_forgot_is_not_placed_again(csim, tmp_path, caplog):
    """Before: a filled TP that left the open-orders list was 'placed again', refused for balance, and the
    position fell back to monitoring shares it no longer had."""
    m, h, pos, start = open_one(csim, tmp_path)
    yes = m["token_ids"][0]
    csim.set_price(yes, 0.60)
    h.clock.advance(30)   # the TP check is due
    with caplog.at_level(logging.WARNING, logger="bot"):
        h.loop()
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.TAKE_PROFIT
    assert pos.fallback_reason is None and "placing it again" not in caplog.text
    assert abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE


# -- fact 4: balance locks ---------------------------------------------------------------------------------------

def test_a_balance_lock_keeps_the_stop_loss_retrying_and_no_position_opens(csim, tmp_path, caplog):
    m, h, pos, start = open_one(csim, tmp_path, mode="monitor")
    csim.create_market("Will it snow?", yes_price=0.5, volatility=0)   # room and a market for a new position
    h.bot.delay_scan(now_too=True)
    h.config.strategy.__dict__["scan_interval_seconds"] = 1
    yes = m["token_ids"][0]
    csim.balance_lock(40)
    csim.set_price(yes, 0.40)
    with caplog.at_level(logging.WARNING, logger="bot"):
        for _ in range(6):
            h.loop(advance=4)
        assert pos.status == PositionState.EXITING and h.held(yes) > 0
        assert h.bot.manage.lock.active and caplog.text.count("BALANCE LOCK") == 1   # told once
        # no new position holds anything (a buy tried before the lock was known was refused: nothing owned),
        # and exits are never paused
        assert [p for p in h.positions if p.entry_shares > 0] == [pos] and not h.bot.state.paused
        tried = len(h.positions)
        h.loop(2, advance=4)
        assert len(h.positions) == tried   # once the lock is known, no entry is even tried
        for _ in range(10):
            h.loop(advance=5)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.held(yes) < D("0.01") and not h.bot.manage.lock.active
    assert "Balance lock over" in caplog.text and not h.bot.state.paused


# -- also: a resolution cancels resting orders; market_resolved may never arrive ----------------------------------

@pytest.mark.parametrize("feeds", [False, True], ids=["rest", "feeds_without_market_resolved"])
def test_a_market_that_resolves_while_its_tp_rests_pays_out(csim, tmp_path, feeds):
    m = csim.create_market("Will it rain?", yes_price=0.5, volatility=0)
    h = Harness(csim, tmp_path, feeds=feeds)
    try:
        start = usdc(h)
        h.loop()
        h.no_new_trades()
        pos = only(h.positions)
        tp = pos.tp_order_id
        csim.market_resolved_messages(False)
        csim.resolve(m["condition_id"], "Yes")
        assert sim_order_status(csim, tp) == "CANCELED_MARKET_RESOLVED"
        h.loop(3, advance=30)
        assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.MARKET_RESOLVED
        assert pos.realized_pnl > 0 and abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE
        assert pos.exit_mode == ExitMode.LIMIT_ORDERS   # not 'fallen back' after a refused new TP
    finally:
        h.close()


# -- money at risk: nothing the loop does may delay a stop-loss the feed has seen --------------------------------

def test_an_exit_the_feed_saw_never_waits_behind_a_reads_retries(csim, tmp_path):
    """Before: with the REST books answering 503 and room for a new position, the entry scan's book read
    retried (5 s waits) in the loop's thread before the event phase sold: 10-16 s late."""
    import time

    m = csim.create_market("Will it rain?", yes_price=0.5, volatility=0)
    h = Harness(csim, tmp_path, feeds=True, trading__use_concurrent_orders=False, feeds__check_seconds=30)
    try:
        h.loop()
        pos = only(h.positions)
        yes = m["token_ids"][0]
        deadline = time.monotonic() + 5
        while h.feeds.seen_at(yes) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        csim.create_market("Will it snow?", yes_price=0.5, volatility=0)   # room and a market to buy next
        h.bot._waker = Waker()
        h.venue.interruptible(h.bot._waker)
        real_books = h.venue.get_books

        def books(tokens):
            tokens = list(tokens)
            if yes not in tokens and not h.bot._waker.woken():   # the entry scan: the stop-loss crosses now
                csim.set_faults(rate=1.0, statuses=[503], paths=["/books"])
                csim.set_price(yes, 0.40)
                end = time.monotonic() + 5
                while not h.bot._waker.woken() and time.monotonic() < end:   # the market channel tells
                    time.sleep(0.005)
            return real_books(tokens)

        h.venue.get_books = books
        h.bot.delay_scan(now_too=True)
        before = h.clock.time()
        h.bot.run_guarded()   # the loop: its entry scan reads books that answer 503
        assert h.clock.time() - before < 1   # no retry waited: the read failed at once, for next loop
        h.bot.run_events()   # the event phase: the stop-loss the feed saw
        assert pos.status in (PositionState.SETTLING, PositionState.CLOSED) and pos.sold_shares > 0
        assert pos.metrics["trigger_source"] == "push" and h.clock.time() - before < 1
    finally:
        csim.set_faults()
        h.close()


# -- money at risk: shares that leave the account outside the bot ------------------------------------------------

def test_shares_sold_by_hand_while_the_bot_runs_shrink_the_position_and_the_rest_is_sold(csim, tmp_path):
    """Before: needs_attention, the bot paused, and the remainder below its stop-loss was never sold."""
    m, h, pos, start = open_one(csim, tmp_path, mode="monitor")
    yes = m["token_ids"][0]
    bought = pos.shares
    csim.fund(h.wallet["address"], token_id=yes, shares=bought - 7)   # 7 sold on polymarket.com
    csim.set_price(yes, 0.40)
    for _ in range(10):
        h.loop(advance=10)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert D(pos.metrics["shares_left_outside"]) == 7 and not h.bot.state.paused
    assert h.held(yes) < D("0.01")
    sold = sum((r.filled for r in pos.orders if r.role == Role.EXIT), D(0))
    assert D(0) <= bought - 7 - sold < D("0.01")   # what the account held (to the venue's 0.01), never more


# -- also: a delayed order may refuse to be cancelled until its delay is over -----------------------------------

def test_a_delayed_tp_that_cannot_be_cancelled_is_waited_for_never_sold_around(csim, tmp_path, caplog):
    m = csim.create_market("Will it rain?", yes_price=0.5, volatility=0)
    yes = m["token_ids"][0]
    h = Harness(csim, tmp_path)
    real_limit_sell = h.venue.limit_sell

    def limit_sell(*args, **kwargs):   # the price jumps through the TP as it is placed: it crosses, and waits
        csim.set_market_options(m["condition_id"], seconds_delay=6)
        csim.delayed_uncancellable(True)
        csim.set_price(yes, 0.60)
        try:
            return real_limit_sell(*args, **kwargs)
        finally:
            csim.set_price(yes, 0.50)   # ...and falls back before its delay is over: it will rest
    h.venue.limit_sell = limit_sell
    start = usdc(h)
    h.loop()
    h.venue.limit_sell = real_limit_sell
    h.no_new_trades()
    pos = only(h.positions)
    assert pos.tp_order_id and sim_order_status(csim, pos.tp_order_id) == "DELAYED"
    csim.set_price(yes, 0.40)
    with caplog.at_level(logging.INFO, logger="bot"):
        h.loop(advance=1)
        assert pos.status == PositionState.EXITING and pos.sold_shares == 0   # not sold around the TP
        assert "still open after a cancel" in caplog.text
        for _ in range(6):
            h.loop(advance=3)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    assert h.held(yes) < D("0.01") and h.venue_balances()["open_orders"] == 0
    assert abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE


def test_a_stop_loss_on_a_buy_that_never_settled_waits_for_its_trades_not_a_verdict(csim, tmp_path):
    """The shares of a buy whose trades have not settled are missing from the account: no "sold by hand"
    verdict, no sale of shares that are not there; the failed trades close it as unfilled."""
    m = csim.create_market("Will it rain?", yes_price=0.5, volatility=0)
    h = Harness(csim, tmp_path, trading__use_concurrent_orders=False)
    start = usdc(h)
    csim.ghost_fills(1, fail_after_s=20)
    h.loop()
    h.no_new_trades()
    pos = only(h.positions)
    csim.set_price(m["token_ids"][0], 0.40)
    for _ in range(4):
        h.loop(advance=3)
        assert pos.status == PositionState.EXITING and "shares_left_outside" not in pos.metrics
        assert pos.sold_shares == 0
    h.loop(4, advance=5)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.ENTRY_UNFILLED
    assert pos.realized_pnl == 0 and usdc(h) == start and not h.bot.state.paused


@pytest.mark.parametrize("net", [False, True], ids=["answer_gross", "answer_net"])
def test_a_sales_pnl_is_the_wallets_whether_the_answer_gives_the_proceeds_gross_or_net(csim, tmp_path, net):
    """Whether a taker SELL's takingAmount is gross or net of the fee is unknown (FACTS.md Part 0, 0.1): the
    sale is booked again from its trades once they settle, so the P&L is the wallet's under both answers."""
    m, h, pos, start = open_one(csim, tmp_path, "monitor", price=0.3, fee_rate="0.25", fee_exponent=2)
    csim.sell_answer_net(net)
    csim.set_price(m["token_ids"][0], 0.24)
    h.loop(3, advance=3)
    assert pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS
    sale = next(r for r in pos.orders if r.role == Role.EXIT)
    assert sale.confirmed and sale.fee > 0
    assert abs((usdc(h) - start) - pos.realized_pnl) <= PNL_TOLERANCE

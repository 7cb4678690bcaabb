"""Trader planning and order rules, over the paper venue with a scripted book."""
from decimal import Decimal as D

import pytest

from bot.errors import OrderRejected
from bot.trader import Trader, exit_prices
from bot.venue.base import Book
from bot.venue.paper import PaperVenue
from tests.test_paper_venue import INFO, ScriptedBooks


def make_trader(tmp_path):
    return Trader(PaperVenue(ScriptedBooks(), D("100"), state_file=tmp_path / "p.json"))


def test_exit_prices_round_towards_safety():
    # entry 0.53: TP +10% = 0.583 -> 0.59 (never take less), SL -10% = 0.477 -> 0.47 (never fire early)
    assert exit_prices(D("0.53"), D("0.10"), D("0.10"), D("0.01")) == (D("0.59"), D("0.47"))
    # clamped to the valid range near the edges
    assert exit_prices(D("0.95"), D("0.10"), D("0.10"), D("0.01"))[0] == D("0.99")


def test_plan_reports_the_dollar_minimum(tmp_path):
    t = make_trader(tmp_path)
    with pytest.raises(OrderRejected, match=r"\$0.5 is below the venue's \$1 minimum"):
        t.plan_entry(t.venue.reader.book, INFO, D("0.5"), D("0.1"), D("0.1"), needs_resting_tp=False)


def test_plan_reports_the_share_minimum_for_a_resting_tp_with_numbers(tmp_path):
    t = make_trader(tmp_path)
    with pytest.raises(OrderRejected) as err:
        t.plan_entry(t.venue.reader.book, INFO, D("2"), D("0.1"), D("0.1"), needs_resting_tp=True)
    msg = err.value.message
    assert "3.84 shares" in msg and "minimum of 5 shares" in msg and "$2.6" in msg
    # the same trade is fine when no order has to rest
    plan = t.plan_entry(t.venue.reader.book, INFO, D("2"), D("0.1"), D("0.1"), needs_resting_tp=False)
    assert plan.max_price == D("0.54") and plan.expected_shares == D("3.84")


def test_buy_with_exits_places_the_tp_for_the_shares_held(tmp_path):
    t = make_trader(tmp_path)
    plan = t.plan_entry(t.venue.reader.book, INFO, D("10.4"), D("0.1"), D("0.1"), needs_resting_tp=True)
    result = t.execute_buy_with_exits("T", plan, INFO, plan.tp_price)
    assert result.shares_held == D("20") and result.tp_error is None
    status = t.check_order_status(result.tp_fill.order_id)
    assert status["status"] == "open" and status["original_size"] == D("20") and status["price"] == D("0.58")


def test_tp_below_minimum_size_is_refused_before_sending(tmp_path):
    t = make_trader(tmp_path)
    with pytest.raises(OrderRejected, match="below the market's minimum"):
        t._place_limit_sell("T", D("0.6"), D("4.99"), INFO)


def test_unknown_order_status_is_unknown(tmp_path):
    assert make_trader(tmp_path).check_order_status("nope")["status"] == "unknown"


def test_marketable_sell_floor_is_rounded_down_to_the_tick(tmp_path):
    t = make_trader(tmp_path)
    t.venue.market_buy("T", D("10.40"), D("0.53"), INFO)
    t.venue.reader.book = Book("T", bids=((D("0.41"), D("5")), (D("0.40"), D("100"))), asks=())
    fill = t.sell_marketable("T", D("20"), D("0.419"), INFO)   # floor 0.41: only the 0.41 level
    assert fill.filled_shares == D("5") and fill.usdc == D("2.05")


# -- Rules 3 and 4: no entry whose exits are broken before it starts ----------------------------------------

from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bot.money import price_ceiling, price_floor  # noqa: E402
from bot.trader import ENTRY_SLIPPAGE_TICKS, EntrySkipped, entry_problem  # noqa: E402
from bot.venue.base import MarketInfo  # noqa: E402

FILTERS = dict(min_price=D("0.01"), max_price=D("0.99"), max_spread=D("0.10"), max_spread_share=D("0.5"))


def plan_for(tmp_path, bid, ask, tp=D("0.10"), sl=D("0.10"), tick=D("0.01"), **filters):
    t = make_trader(tmp_path)
    book = Book("T", bids=((D(bid), D("100")),), asks=((D(ask), D("100")),))
    info = MarketInfo("T", "0xc", tick, D("5"), False)
    return t.plan_entry(book, info, D("10"), tp, sl, needs_resting_tp=False, **{**FILTERS, **filters})


def test_a_book_whose_bid_is_below_the_stop_loss_is_skipped(tmp_path):
    # 0.18 / 0.22 with 10% TP/SL: SL 0.19 >= bid 0.18; the bot used to buy at 0.22 and sell at 0.18 next loop
    with pytest.raises(EntrySkipped, match=r"stop-loss 0.19 is at or above the best bid 0.18"):
        plan_for(tmp_path, "0.18", "0.22")


@pytest.mark.parametrize("bid,ask", [("0.01", "0.02"), ("0.02", "0.03"), ("0.03", "0.04"), ("0.04", "0.05")])
def test_penny_books_are_not_bought_with_a_stop_loss_at_the_bid(tmp_path, bid, ask):
    with pytest.raises(EntrySkipped, match="stop-loss"):
        plan_for(tmp_path, bid, ask)


def test_a_penny_book_never_buys_above_the_price_its_filters_allow(tmp_path):
    # 0.02 / 0.03 with a wide SL and no spread limit: a fill at the old 2-tick cap (0.05) or at 0.04 puts the
    # SL (0.02) on the bid, so the cap is the ask
    plan = plan_for(tmp_path, "0.02", "0.03", tp=D("0.5"), sl=D("0.5"), max_spread_share=None)
    assert plan.max_price == D("0.03") and plan.sl_price == D("0.01") and plan.tp_price == D("0.05")
    for worse in ("0.04", "0.05"):
        assert "stop-loss" in entry_problem(D(worse), D("0.02"), *exit_prices(D(worse), D("0.5"), D("0.5"),
                                                                               D("0.01")), None)


def test_a_spread_that_eats_the_take_profit_is_skipped(tmp_path):
    # ask 0.51, bid 0.48: TP 0.57 is 0.06 away, the spread 0.03 is half of it: allowed at 0.5, not at 0.4
    assert plan_for(tmp_path, "0.48", "0.51").tp_price == D("0.57")
    with pytest.raises(EntrySkipped, match=r"spread 0.03 .* more than 40% of the take-profit distance 0.06"):
        plan_for(tmp_path, "0.48", "0.51", max_spread_share=D("0.4"))


def test_a_take_profit_that_cannot_be_above_the_entry_is_skipped(tmp_path):
    with pytest.raises(EntrySkipped, match=r"take-profit 0.99 cannot be above the entry 0.99"):
        plan_for(tmp_path, "0.98", "0.99", max_spread_share=None)
    # at 0.98 the TP is clamped to 0.99 (1 - tick) and the 1-tick spread is all of the TP distance
    with pytest.raises(EntrySkipped, match="spread"):
        plan_for(tmp_path, "0.97", "0.98")


def test_the_buy_cap_stays_within_max_price_and_the_valid_range(tmp_path):
    assert plan_for(tmp_path, "0.78", "0.79", max_price=D("0.80")).max_price == D("0.80")   # not 0.81
    plan = plan_for(tmp_path, "0.96", "0.97", tp=D("0.5"), sl=D("0.5"), max_spread_share=None)
    assert plan.tp_price == D("0.99") and plan.max_price == D("0.98")   # TP clamped to 1 - tick; cap below it


def test_filters_on_the_book_are_skips_with_reasons(tmp_path):
    with pytest.raises(EntrySkipped, match="outside strategy.min_price..max_price"):
        plan_for(tmp_path, "0.49", "0.50", max_price=D("0.45"))
    with pytest.raises(EntrySkipped, match="above strategy.max_spread"):
        plan_for(tmp_path, "0.40", "0.50", max_spread=D("0.05"))
    t = make_trader(tmp_path)
    with pytest.raises(EntrySkipped, match="no bids"):
        t.plan_entry(Book("T", asks=((D("0.5"), D("9")),)), INFO, D("10"), D("0.1"), D("0.1"), False)


@settings(max_examples=300, deadline=None)
@given(tick=st.sampled_from([D("0.01"), D("0.001")]), bid_steps=st.integers(1, 998), spread_steps=st.integers(1, 20),
       tp=st.decimals(D("0.01"), D("0.5"), places=2), sl=st.decimals(D("0.01"), D("0.5"), places=2),
       share=st.sampled_from([None, D("0.25"), D("0.5"), D("1")]),
       max_price=st.decimals(D("0.05"), D("0.99"), places=2))
def test_every_price_a_planned_entry_may_pay_keeps_its_exits_valid(tmp_path_factory, tick, bid_steps, spread_steps,
                                                                    tp, sl, share, max_price):
    bid = bid_steps * tick
    ask = bid + spread_steps * tick
    assume(ask <= 1 - tick)
    t = make_trader(tmp_path_factory.mktemp("p"))
    book = Book("T", bids=((bid, D("1000")),), asks=((ask, D("1000")),))
    info = MarketInfo("T", "0xc", tick, D("5"), False)
    try:
        plan = t.plan_entry(book, info, D("10"), tp, sl, needs_resting_tp=False, min_price=tick,
                            max_price=max_price, max_spread=D("1"), max_spread_share=share)
    except EntrySkipped:
        return
    assert tick <= plan.sl_price < bid < ask < plan.tp_price <= 1 - tick and ask <= plan.max_price <= 1 - tick
    assert plan.max_price <= max_price and plan.max_price <= ask + ENTRY_SLIPPAGE_TICKS * tick
    c = ask
    while c <= plan.max_price:   # whatever the buy pays up to its cap, the position's exits still make sense
        tp_c, sl_c = exit_prices(c, tp, sl, tick)
        assert entry_problem(c, bid, tp_c, sl_c, share) is None
        assert tick <= sl_c < bid and c < tp_c <= 1 - tick
        c += tick


@given(entry=st.decimals(D("0.0001"), D("0.9999"), places=4), tp=st.decimals(D("0.001"), D("0.99"), places=3),
       sl=st.decimals(D("0.001"), D("0.99"), places=3), tick=st.sampled_from([D("0.01"), D("0.001")]))
def test_exit_prices_never_leave_the_valid_range(entry, tp, sl, tick):
    tp_price, sl_price = exit_prices(entry, tp, sl, tick)
    for p in (tp_price, sl_price):
        assert tick <= p <= 1 - tick and p == p.quantize(tick)
    assert tp_price == min(price_ceiling(entry * (1 + tp), tick), 1 - tick)
    assert sl_price == max(price_floor(entry * (1 - sl), tick), tick)


def test_a_budget_keeps_room_for_the_fee_paid_on_top(tmp_path):
    from bot.fees import fee_per_usdc, taker_fee
    from bot.venue.base import MarketInfo

    t = make_trader(tmp_path)
    fee_info = MarketInfo("T", "0xc", D("0.01"), D("5"), False, D("0.05"), 1)
    # the notional asked for fits the budget with its fee: unchanged
    assert t.plan_entry(t.venue.reader.book, fee_info, D("5"), D("0.1"), D("0.1"), needs_resting_tp=False,
                        budget=D("100")).usdc == D("5")
    # a budget of $5.20 in all: notional + the fee at the worst price it may pay must fit
    plan = t.plan_entry(t.venue.reader.book, fee_info, D("10"), D("0.1"), D("0.1"), needs_resting_tp=False,
                        budget=D("5.2"))
    worst = fee_per_usdc((D("0.52"), D("0.54")), D("0.05"), 1)   # the ask and the cap two ticks above it
    assert plan.usdc * (1 + worst) <= D("5.2") < (plan.usdc + D("0.01")) * (1 + worst)
    assert plan.usdc + taker_fee(plan.usdc / D("0.52"), D("0.52"), D("0.05"), 1) <= D("5.2")

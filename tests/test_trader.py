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
        t.plan_entry(t.venue._reader.book, INFO, D("0.5"), D("0.1"), D("0.1"), needs_resting_tp=False)


def test_plan_reports_the_share_minimum_for_a_resting_tp_with_numbers(tmp_path):
    t = make_trader(tmp_path)
    with pytest.raises(OrderRejected) as err:
        t.plan_entry(t.venue._reader.book, INFO, D("2"), D("0.1"), D("0.1"), needs_resting_tp=True)
    msg = err.value.message
    assert "3.84 shares" in msg and "minimum of 5 shares" in msg and "$2.6" in msg
    # the same trade is fine when no order has to rest
    plan = t.plan_entry(t.venue._reader.book, INFO, D("2"), D("0.1"), D("0.1"), needs_resting_tp=False)
    assert plan.max_price == D("0.54") and plan.expected_shares == D("3.84")


def test_buy_with_exits_places_the_tp_for_the_shares_held(tmp_path):
    t = make_trader(tmp_path)
    plan = t.plan_entry(t.venue._reader.book, INFO, D("10.4"), D("0.1"), D("0.1"), needs_resting_tp=True)
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
    t.venue._reader.book = Book("T", bids=((D("0.41"), D("5")), (D("0.40"), D("100"))), asks=())
    fill = t.sell_marketable("T", D("20"), D("0.419"), INFO)   # floor 0.41: only the 0.41 level
    assert fill.filled_shares == D("5") and fill.usdc == D("2.05")

"""The dry-run venue: simulated orders by the venue's rules over a scripted read-only book source."""
from decimal import Decimal as D

import pytest

from bot.errors import OrderRejected
from bot.venue.base import Book, MarketInfo, OrderStatus
from bot.venue.paper import PaperVenue

INFO = MarketInfo("T", "0xc", D("0.01"), D("5"), False)


class ScriptedBooks:
    """A read-only market-data source whose book the test sets."""

    def __init__(self):
        self.book = Book("T", bids=((D("0.50"), D("100")),), asks=((D("0.52"), D("100")),))
        self.calls = 0

    def get_books(self, token_ids):
        self.calls += 1
        return {t: self.book for t in token_ids if t == "T"}

    def get_market_info(self, token_id, condition_id=""):
        return INFO

    def api_calls(self):
        return {"POST /books": self.calls}


@pytest.fixture
def venue(tmp_path):
    return PaperVenue(ScriptedBooks(), D("100"), state_file=tmp_path / "paper.json")


def test_market_buy_walks_the_asks_and_ids_are_dry_run(venue):
    fill = venue.market_buy("T", D("10.40"), D("0.53"), INFO)
    assert fill.order_id.startswith("dry_run_")
    assert fill.filled_shares == D("20") and fill.usdc == D("10.4")
    assert venue.token_balance("T") == D("20")
    assert venue.collateral_balance() == D("89.6")


def test_buy_below_one_dollar_is_refused(venue):
    with pytest.raises(OrderRejected, match=r"min size: \$1"):
        venue.market_buy("T", D("0.5"), D("0.53"), INFO)


def test_resting_tp_reserves_shares_and_fills_when_the_bid_reaches_it(venue):
    venue.market_buy("T", D("10.40"), D("0.53"), INFO)
    tp = venue.limit_sell("T", D("0.60"), D("20"), INFO)
    assert tp.filled_shares == 0 and venue.get_order(tp.order_id).status == OrderStatus.OPEN
    # A second full-size SELL on the same shares is refused, as on Polymarket.
    with pytest.raises(OrderRejected) as err:
        venue.market_sell("T", D("20"), D("0.40"), INFO)
    assert err.value.is_balance
    venue.reader.book = Book("T", bids=((D("0.61"), D("500")),), asks=((D("0.62"), D("100")),))
    venue.get_books(["T"])
    state = venue.get_order(tp.order_id)
    assert state.status == OrderStatus.FILLED and state.filled_size == D("20")
    assert venue.collateral_balance() == D("89.6") + D("12")   # filled at its own price, not the bid


def test_sell_below_the_bid_fills_at_once_at_the_bid(venue):
    venue.market_buy("T", D("10.40"), D("0.53"), INFO)
    fill = venue.limit_sell("T", D("0.40"), D("20"), INFO)
    assert fill.filled_shares == D("20") and fill.usdc == D("10")   # at the 0.50 bid


def test_cancel_after_fill_is_not_canceled(venue):
    venue.market_buy("T", D("10.40"), D("0.53"), INFO)
    tp = venue.limit_sell("T", D("0.40"), D("20"), INFO)
    res = venue.cancel(tp.order_id)
    assert not res.was_canceled(tp.order_id)
    assert res.not_canceled[tp.order_id] == "already canceled or matched"


def test_state_survives_a_restart(tmp_path):
    reader = ScriptedBooks()
    v1 = PaperVenue(reader, D("100"), state_file=tmp_path / "paper.json")
    v1.market_buy("T", D("10.40"), D("0.53"), INFO)
    tp = v1.limit_sell("T", D("0.60"), D("20"), INFO)
    v2 = PaperVenue(reader, D("100"), state_file=tmp_path / "paper.json")
    assert v2.token_balance("T") == D("20")
    assert [o.order_id for o in v2.open_orders()] == [tp.order_id]
    # after the restart the resting TP still reserves its shares and still fills from a book read
    with pytest.raises(OrderRejected):
        v2.market_sell("T", D("1"), D("0.40"), INFO)
    reader.book = Book("T", bids=((D("0.61"), D("500")),), asks=((D("0.62"), D("100")),))
    v2.get_books(["T"])
    assert v2.get_order(tp.order_id).status == OrderStatus.FILLED and v2.open_orders() == []


def test_rungs_rest_side_by_side_and_never_offer_more_than_held(venue):
    venue.market_buy("T", D("10.40"), D("0.53"), INFO)   # 20 shares
    low = venue.limit_sell("T", D("0.55"), D("10"), INFO)
    high = venue.limit_sell("T", D("0.60"), D("10"), INFO)
    with pytest.raises(OrderRejected) as err:   # a third sell: every share is reserved
        venue.limit_sell("T", D("0.70"), D("5"), INFO)
    assert err.value.is_balance
    venue.reader.book = Book("T", bids=((D("0.56"), D("500")),), asks=((D("0.57"), D("100")),))
    venue.get_books(["T"])
    assert venue.get_order(low.order_id).status == OrderStatus.FILLED
    assert [o.order_id for o in venue.open_orders()] == [high.order_id]
    assert venue.cancel(high.order_id).was_canceled(high.order_id) and venue.open_orders() == []
    assert venue.market_sell("T", D("10"), D("0.40"), INFO).filled_shares == D("10")   # no longer reserved

"""Taker fees on CLOB V2 (FACTS.md Part 0, 0.1): in USDC on both sides, by the market's curve, floored to 5
decimals; what an entry keeps aside for its fee; the paper venue charges the same."""
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.fees import fee_per_usdc, taker_fee
from bot.venue.base import Book, MarketInfo
from bot.venue.paper import PaperVenue


def test_the_live_fill_of_the_sources_is_reproduced():
    # py-clob-client-v2 issue 107: BUY 25 @ 0.13 on fd r 0.05 e 1 paid 3.25 + 0.14 (0.141375 floored)
    assert taker_fee(D(25), D("0.13"), D("0.05"), 1) == D("0.14137")
    # the old rule (fee x p, in shares on a buy) would have booked about 0.018: 1/p too small
    assert taker_fee(D(25), D("0.13"), D("0.05"), 1) > 7 * D("0.018")


@pytest.mark.parametrize("price", ["0", "1", "-0.1", "1.5"])
def test_no_fee_off_the_curve(price):
    assert taker_fee(D(10), D(price), D("0.05"), 1) == 0
    assert taker_fee(D(10), D("0.5"), D(0), 2) == 0 and taker_fee(D(0), D("0.5"), D("0.05"), 1) == 0


@given(st.decimals(min_value=D("0.01"), max_value=D("0.99"), places=3),
       st.decimals(min_value=D("0.01"), max_value=D(100000), places=2),
       st.sampled_from([(D("0.02"), 2), (D("0.05"), 1), (D("0.25"), 2), (D("0.1"), 0)]))
def test_fee_is_never_more_than_the_curve_nor_below_it_by_a_unit(price, shares, curve):
    rate, exponent = curve
    exact = shares * rate * (price * (1 - price)) ** exponent
    fee = taker_fee(shares, price, rate, exponent)
    assert fee <= exact < fee + D("0.00001") and fee == fee.quantize(D("0.00001"))
    # what a buy keeps aside per dollar covers its fee at that price
    assert fee <= shares * price * fee_per_usdc((price,), rate, exponent) + D("0.000001")


class Books:
    def __init__(self, book):
        self.book = book

    def get_books(self, token_ids):
        return {t: self.book for t in token_ids}

    def get_market_info(self, token_id, condition_id=""):
        return INFO

    def api_calls(self):
        return {}


INFO = MarketInfo("T", "0xc", D("0.01"), D(5), False, D("0.05"), 1)


def test_the_paper_venue_charges_the_venues_fees_in_usdc_per_level(tmp_path):
    book = Book("T", bids=((D("0.50"), D(10)), (D("0.49"), D(10))), asks=((D("0.13"), D(20)), (D("0.14"), D(100))))
    paper = PaperVenue(Books(book), D(100), state_file=tmp_path / "paper.json")
    buy = paper.market_buy("T", D("3.30"), D("0.14"), INFO)
    assert buy.filled_shares == 25 and paper.token_balance("T") == 25   # every share bought is held
    fee = taker_fee(D(20), D("0.13"), D("0.05"), 1) + taker_fee(D(5), D("0.14"), D("0.05"), 1)
    assert buy.fee == fee and paper.collateral_balance() == D(100) - D("2.6") - D("0.7") - fee
    before = paper.collateral_balance()
    sell = paper.market_sell("T", D(15), D("0.40"), INFO)
    sale_fee = taker_fee(D(10), D("0.50"), D("0.05"), 1) + taker_fee(D(5), D("0.49"), D("0.05"), 1)
    assert sell.fee == sale_fee and paper.collateral_balance() == before + D("7.45") - sale_fee


def test_a_paper_buy_that_cannot_pay_its_fee_is_refused(tmp_path):
    book = Book("T", bids=((D("0.50"), D(10)),), asks=((D("0.50"), D(100)),))
    paper = PaperVenue(Books(book), D(10), state_file=tmp_path / "paper.json")
    with pytest.raises(Exception, match="not enough balance"):
        paper.market_buy("T", D(10), D("0.5"), INFO)

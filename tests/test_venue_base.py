from decimal import Decimal as D

import pytest

from bot.venue.base import Book, Fill, OrderState, OrderStatus


def test_book_puts_best_levels_first_whatever_the_wire_order():
    # The venue sends bids ascending and asks descending (best LAST).
    raw = {"asset_id": "1", "bids": [{"price": "0.48", "size": "100"}, {"price": "0.50", "size": "150"}],
           "asks": [{"price": "0.53", "size": "90"}, {"price": "0.51", "size": "120"}],
           "tick_size": "0.01", "min_order_size": "5"}
    book = Book.from_venue(raw)
    assert book.best_bid == D("0.50") and book.best_ask == D("0.51")
    assert book.spread == D("0.01")
    assert book.tick_size == D("0.01") and book.min_order_size == D("5")


def test_book_rejects_malformed_levels_with_the_field_name():
    with pytest.raises(ValueError, match=r"bids\[0\].price"):
        Book.from_venue({"asset_id": "1", "bids": [{"price": "x", "size": "1"}], "asks": []})


@pytest.mark.parametrize("status,matched,expected", [
    ("LIVE", "0", OrderStatus.OPEN),
    ("LIVE", "2.5", OrderStatus.PARTIALLY_FILLED),
    ("MATCHED", "10", OrderStatus.FILLED),
    ("CANCELED", "3", OrderStatus.CANCELED),
    ("ORDER_STATUS_LIVE", "0", OrderStatus.OPEN),
    ("CANCELED_MARKET_RESOLVED", "0", OrderStatus.CANCELED),
    ("weird", "0", OrderStatus.UNKNOWN),
])
def test_order_status_normalisation(status, matched, expected):
    state = OrderState.from_venue({"id": "0xabc", "status": status, "original_size": "10", "size_matched": matched,
                                   "price": "0.7", "side": "SELL", "asset_id": "9"})
    assert state.status == expected
    assert state.filled_size == D(matched)
    assert state.remaining == D(10) - D(matched)


def test_order_without_id_is_malformed():
    with pytest.raises(ValueError):
        OrderState.from_venue({"status": "LIVE"})


def test_a_fill_keeps_the_venues_precision_and_a_six_decimal_average_price():
    # $10 FAK buy at 0.51: the venue answers 9.999999 USDC for 19.607845 shares (base units); the average
    # price used to be stored as 0.5099999525699996679899976759.
    fill = Fill("0xabc", "matched", D("19.607845"), D("9.999999"))
    assert fill.avg_price == D("0.51") and format(fill.avg_price, "f") == "0.51"
    # amounts computed by the paper venue (or any venue) are brought to base units (6 decimals) here
    odd = Fill("0xabc", "matched", D("19.60784313725490196"), D("9.99999999999"))
    assert odd.filled_shares == D("19.607843") and odd.usdc == D("10.000000")
    assert -odd.avg_price.as_tuple().exponent <= 6
    assert Fill("0xabc", "live").avg_price is None


@pytest.mark.parametrize("venue_class", ["live", "paper"])
def test_both_venues_implement_the_protocol_with_its_signatures(venue_class):
    """mypy checks the same statically (bot/venue/__init__.py); this says which method drifted."""
    import inspect

    from bot.venue.base import Venue
    from bot.venue.live import LiveVenue
    from bot.venue.paper import PaperVenue

    cls = {"live": LiveVenue, "paper": PaperVenue}[venue_class]
    methods = [name for name, member in vars(Venue).items() if inspect.isfunction(member) and not name.startswith("_")]
    assert "get_market_info" in methods and "books_seen" in methods and len(methods) == 18
    for name in methods:
        declared, implemented = inspect.signature(getattr(Venue, name)), inspect.signature(getattr(cls, name))
        assert list(declared.parameters) == list(implemented.parameters), name
        assert [p.default for p in declared.parameters.values()] == \
            [p.default for p in implemented.parameters.values()], name
    assert isinstance(cls.name, str) and isinstance(cls.log_prefix, str)

from decimal import Decimal as D

import pytest

from bot.money import (
    fmt,
    is_dust,
    price_ceiling,
    price_floor,
    round_shares,
    round_usdc,
    snap_price,
    to_decimal,
)


@pytest.mark.parametrize("price,tick,expected", [
    (D("0.456"), D("0.01"), D("0.46")),
    (D("0.454"), D("0.01"), D("0.45")),
    (D("0.0001"), D("0.01"), D("0.01")),   # clamped to the lowest valid price
    (D("1.2"), D("0.01"), D("0.99")),      # clamped to 1 - tick
    (D("0.1234"), D("0.001"), D("0.123")),
    (D("0.123"), D("0.005"), D("0.125")),  # multiples of a 0.005 tick, which the SDK does not enforce
])
def test_snap_price(price, tick, expected):
    assert snap_price(price, tick) == expected


def test_floor_and_ceiling_never_round_the_wrong_way():
    assert price_floor(D("0.419"), D("0.01")) == D("0.41")
    assert price_ceiling(D("0.411"), D("0.01")) == D("0.42")
    assert price_ceiling(D("0.42"), D("0.01")) == D("0.42")


def test_round_shares_truncates_to_venue_precision():
    assert round_shares(D("4.359")) == D("4.35")
    assert round_shares(D("-1")) == D("0")
    assert round_usdc(D("10.999")) == D("10.99")


def test_to_decimal_names_what_is_wrong():
    assert to_decimal("0.5") == D("0.5")
    assert to_decimal(0.1) == D("0.1")
    with pytest.raises(ValueError, match="book.price"):
        to_decimal("abc", "book.price")
    with pytest.raises(ValueError, match="finite"):
        to_decimal("NaN", "x")


def test_fmt_and_dust():
    assert fmt(D("1E+1")) == "10"
    assert fmt(D("0.500")) == "0.5"
    assert fmt(D("1.23456"), 2) == "1.23"
    assert fmt(None) == "-"
    assert is_dust(D("0.009")) and not is_dust(D("0.01"))


from bot.money import round_price  # noqa: E402


@pytest.mark.parametrize("raw,stored", [
    (D("0.5099999525699996679899976759"), "0.51"),
    (D("0.50999949"), "0.509999"),
    (D("0.4"), "0.4"),
    (D("0.123456789"), "0.123457"),
])
def test_stored_prices_have_at_most_six_decimals(raw, stored):
    assert format(round_price(raw), "f") == stored

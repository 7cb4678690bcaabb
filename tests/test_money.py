import math
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
    to_sdk_float,
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


@pytest.mark.parametrize("value", ["0.29", "0.57", "0.58", "8.2", "4.35", "1.13"])
def test_sdk_float_survives_the_sdks_float_truncation(value):
    # The SDK truncates with floor(x * 10**d) / 10**d on floats: 4.35 would become 4.34.
    import math
    x = to_sdk_float(D(value))
    assert math.floor(x * 100) / 100 == float(value)


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


# -- Rule 3: what the SDK encodes is exactly the value the bot meant, inside [tick, 1 - tick] ---------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from py_clob_client_v2.order_builder.builder import ROUNDING_CONFIG, OrderBuilder  # noqa: E402
from py_clob_client_v2.order_builder.helpers import round_normal  # noqa: E402
from py_clob_client_v2.utilities import price_valid  # noqa: E402

from bot.money import round_price  # noqa: E402

SDK = OrderBuilder(None)   # the amount encoders use no signer
TICKS = sorted(ROUNDING_CONFIG, key=D)   # every tick size the SDK knows, 0.01 and 0.001 included
BASE = D(10) ** 6


def sdk_limit(side, price: D, size: D, tick: str):
    """What create_order + build_order encode for a limit order: the price check, round_normal, amounts."""
    rc = ROUNDING_CONFIG[tick]
    x = to_sdk_float(price)
    assert price_valid(x, tick), f"the SDK refuses {x!r} for {price} on tick {tick}"
    _, maker, taker = SDK.get_order_amounts(side, to_sdk_float(size), round_normal(x, rc.price), rc)
    return D(maker), D(taker)


def sdk_market(side, price: D, amount: D, tick: str):
    """What create_market_order + build_market_order encode: the price check, round_down, amounts."""
    rc = ROUNDING_CONFIG[tick]
    x = to_sdk_float(price)
    assert price_valid(x, tick), f"the SDK refuses {x!r} for {price} on tick {tick}"
    _, maker, taker = SDK.get_market_order_amounts(side, to_sdk_float(amount), x, rc)
    return D(maker), D(taker)


@pytest.mark.parametrize("tick", ["0.01", "0.001"])
def test_every_grid_price_reaches_the_sdk_unchanged_and_inside_the_bounds(tick):
    # 0.99 (1 - tick) used to be handed over as 0.990000001: "invalid price, max 0.99", TP never placed.
    t = D(tick)
    for i in range(1, int(1 / t)):
        price = i * t
        x = to_sdk_float(price)
        assert price_valid(x, tick), (price, x)
        rc = ROUNDING_CONFIG[tick]
        scale = 10 ** rc.price
        assert math.floor(x * scale) == round(x * scale) == int(price * scale), (price, x)


@settings(max_examples=400, deadline=None)
@given(tick=st.sampled_from(TICKS), step=st.integers(min_value=1, max_value=9999),
       cents=st.integers(min_value=1, max_value=10**7), side=st.sampled_from(["BUY", "SELL"]))
def test_sdk_encodes_exactly_the_intended_prices_and_sizes(tick, step, cents, side):
    t = D(tick)
    price = snap_price(step * t, t)            # every price on the grid, clamped to [tick, 1 - tick]
    assert t <= price <= 1 - t
    size = D(cents) / 100                      # sizes with 2 decimals (order sizes, USDC of a market buy)
    # limit orders (the TP): shares and price exact
    maker, taker = sdk_limit(side, price, size, tick)
    shares, usdc = (taker, maker) if side == "BUY" else (maker, taker)
    assert shares == size * BASE and usdc == size * price * BASE
    # marketable SELL (exits): shares exact, the floor exactly the intended price
    maker, taker = sdk_market("SELL", price, size, tick)
    assert maker == size * BASE and taker == size * price * BASE
    # marketable BUY (entries): the USDC exact, the cap decoded by the venue as the intended price
    maker, taker = sdk_market("BUY", price, size, tick)
    assert maker == size * BASE
    if taker > 0 and size >= 1:   # (the venue refuses a marketable BUY under $1: a cent's ratio can be off by one)
        implied = maker / taker
        assert implied >= price and round(implied, ROUNDING_CONFIG[tick].price) == price


@given(value=st.decimals(min_value=D("0.000001"), max_value=D("100000"), places=6))
def test_sdk_float_never_drifts_from_a_value_with_six_decimals(value):
    x = to_sdk_float(value)
    assert abs(D(x) - value) < D("1e-9")
    for d in range(-value.as_tuple().exponent, 7):
        assert math.floor(x * 10 ** d) == int(value.scaleb(d))


@pytest.mark.parametrize("raw,stored", [
    (D("0.5099999525699996679899976759"), "0.51"),
    (D("0.50999949"), "0.509999"),
    (D("0.4"), "0.4"),
    (D("0.123456789"), "0.123457"),
])
def test_stored_prices_have_at_most_six_decimals(raw, stored):
    assert format(round_price(raw), "f") == stored

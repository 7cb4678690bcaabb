"""Prices, sizes and money: Decimal arithmetic, rounding at the venue boundary, named tolerances.

The venue wants prices on the market's tick inside [tick, 1 - tick] and share sizes with two decimals.
Everything inside the bot is ``Decimal``; floats appear only at the SDK boundary (``to_sdk_float``).
"""
from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

#: Share sizes on the venue have two decimals.
SIZE_QUANTUM = Decimal("0.01")
#: USDC has six decimals on chain (base units).
USDC_QUANTUM = Decimal("0.000001")
#: Two prices closer than this are the same price (far below any tick).
PRICE_EPSILON = Decimal("0.000000001")
#: Share counts closer than this are the same (one venue size unit is 0.01).
SHARE_EPSILON = Decimal("0.000001")
#: Smallest USDC notional of a marketable order the venue accepts.
MIN_MARKETABLE_NOTIONAL = Decimal("1")
#: Fees are taken in shares on buys; a balance this much below the expected shares is still "ours".
FEE_SHARE_TOLERANCE = Decimal("0.02")
#: The SDK's round_down works on binary floats and loses a unit for ~5% of values (FACTS §4.4);
#: nudging values already on the grid by this much upward before handing them over fixes every case.
SDK_FLOAT_NUDGE = 1e-9


def to_decimal(value: Any, what: str = "value") -> Decimal:
    """Parse a venue number (str, int, float) into a Decimal; ValueError naming ``what`` if impossible."""
    if isinstance(value, Decimal):
        return value
    if value is None or isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return d


def snap_price(price: Decimal, tick: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round a price to a multiple of ``tick`` and clamp it to [tick, 1 - tick]."""
    steps = (price / tick).to_integral_value(rounding=rounding)
    snapped = (steps * tick).quantize(tick)
    low, high = tick, Decimal(1) - tick
    return min(max(snapped, low), high.quantize(tick))


def price_floor(price: Decimal, tick: Decimal) -> Decimal:
    """Round down to the tick (a worst price for a sell must not be rounded up)."""
    return snap_price(price, tick, ROUND_FLOOR)


def price_ceiling(price: Decimal, tick: Decimal) -> Decimal:
    """Round up to the tick (a worst price for a buy must not be rounded down)."""
    return snap_price(price, tick, ROUND_CEILING)


def round_shares(shares: Decimal) -> Decimal:
    """Round a share count down to the venue's two decimals (never sell more than held)."""
    if shares <= 0:
        return Decimal("0.00")
    return shares.quantize(SIZE_QUANTUM, rounding=ROUND_DOWN)


def round_usdc(amount: Decimal) -> Decimal:
    """Round a USDC amount down to cents, as the SDK does for market-buy amounts."""
    if amount <= 0:
        return Decimal("0.00")
    return amount.quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def to_sdk_float(value: Decimal) -> float:
    """Hand a grid-aligned Decimal to the SDK so that its float truncation keeps the same value."""
    return float(value) + SDK_FLOAT_NUDGE


def same_price(a: Decimal, b: Decimal) -> bool:
    """True when two prices are equal within PRICE_EPSILON."""
    return abs(a - b) <= PRICE_EPSILON


def is_dust(shares: Decimal) -> bool:
    """True when a share count is below what any order can carry (0.01)."""
    return shares < SIZE_QUANTUM


def fmt(value: Decimal | None, places: int | None = None) -> str:
    """Human formatting without exponents: fmt(Decimal('1E+1')) == '10'."""
    if value is None:
        return "-"
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = format(value, "f")
    if "." in text and places is None:
        text = text.rstrip("0").rstrip(".") or "0"
    return text

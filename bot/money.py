"""Prices, sizes and money: Decimal arithmetic, rounding at the venue boundary, named tolerances.

The venue wants prices on the market's tick inside [tick, 1 - tick] and share sizes with two decimals.
Everything inside the bot is ``Decimal`` (the SDK takes Decimals too: tests/test_venue_sdk.py checks that what it
encodes is exactly what the bot meant), and amounts coming back from the venue are rounded to its precision once,
where they become a ``Fill``
(``round_fill_shares``, ``round_fill_usdc``, ``round_price``).
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
#: A balance read this close below a position's shares still holds them (the venue's size unit; on CLOB V2 a
#: buy's fee is paid in USDC, so the account holds exactly what it bought).
BALANCE_TOLERANCE = Decimal("0.01")
#: Shares in a fill: the venue's base units (6 decimals); order sizes have 2 (SIZE_QUANTUM).
FILL_SHARE_QUANTUM = Decimal("0.000001")
#: Prices the bot stores (average fill prices): at most 6 decimals; order prices are on the tick.
PRICE_QUANTUM = Decimal("0.000001")
#: The SDK rounds prices, sizes and amounts to at most this many decimals (its ``ROUNDING_CONFIG`` per tick size).
SDK_MAX_DECIMALS = 6


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


def round_price(price: Decimal) -> Decimal:
    """A price the bot stores (e.g. an average fill price, USDC / shares): at most 6 decimals, no
    trailing zeros. The one place where venue amounts become a stored price."""
    q = price.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP)
    return q.normalize() if q and abs(q) < 1 else q


def round_fill_shares(shares: Decimal) -> Decimal:
    """Shares of a fill in the venue's base units (6 decimals), rounded down (never more than bought)."""
    return shares.quantize(FILL_SHARE_QUANTUM, rounding=ROUND_DOWN)


def round_fill_usdc(amount: Decimal) -> Decimal:
    """USDC of a fill in the venue's base units (6 decimals)."""
    return amount.quantize(USDC_QUANTUM, rounding=ROUND_HALF_UP)


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

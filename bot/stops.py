"""Stops that follow the price: where a position's stop-loss goes as the bid rises (no network, no state).

On Polymarket nothing can rest as a stop (a SELL below the bid fills at once): every stop here is a price the bot
watches, as the fixed stop-loss is (bot/manage.py, bot/reading.py's push triggers). Two rules, each off unless set
(``strategy`` in config.json, copied onto each position when it opens):

- **trailing stop** (``trailing_stop_pct``): once the best bid has reached the entry x
  (1 + ``trailing_activation_pct``), the stop is ``trailing_stop_pct`` below the highest best bid seen since
  entry, rounded down to the tick;
- **break-even** (``break_even_at_pct``): once the best bid has reached the entry x (1 + that), the stop is the lowest
  price on the tick at which selling every share returns what the position cost, the exit's taker fee paid.

The stop is the highest of the fixed stop-loss and what these rules give, and it only ever moves up (a restart
resumes at the saved stop: bot/lifecycle.py ``StopRaised``). It stays at least one tick under the take-profit (the TP
takes the position there). Watched on the best bid, never on the last trade.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.fees import taker_fee
from bot.money import price_ceiling, price_floor


@dataclass(frozen=True)
class StopRules:
    """A position's rules (None: off)."""

    trailing_pct: Decimal | None = None
    activation_pct: Decimal = Decimal(0)
    break_even_at_pct: Decimal | None = None

    @property
    def any(self) -> bool:
        return self.trailing_pct is not None or self.break_even_at_pct is not None


def trailing_stop(entry: Decimal, high_bid: Decimal, trailing_pct: Decimal, activation_pct: Decimal,
                  tick: Decimal) -> Decimal | None:
    """The trailing stop for the highest bid seen, or None before the activation."""
    if high_bid < entry * (1 + activation_pct):
        return None
    return price_floor(high_bid * (1 - trailing_pct), tick)


def break_even_price(shares: Decimal, cost: Decimal, fee_rate: Decimal, fee_exponent: int,
                     tick: Decimal) -> Decimal | None:
    """The lowest price on the tick at which selling ``shares`` returns ``cost`` after the taker fee (None when no
    price under 1 does)."""
    if shares <= 0:
        return None
    price = price_ceiling(cost / shares, tick)
    while price < 1:
        if shares * price - taker_fee(shares, price, fee_rate, fee_exponent) >= cost:
            return price
        price += tick
    return None


def next_stop(current: Decimal | None, rules: StopRules, entry: Decimal, high_bid: Decimal, shares: Decimal,
              cost: Decimal, tp: Decimal | None, tick: Decimal, fee_rate: Decimal = Decimal(0),
              fee_exponent: int = 0) -> tuple[Decimal, str] | None:
    """The stop the rules give for the highest bid seen (and why: "trailing" or "break_even"), when it is above the
    ``current`` one; else None (a stop never moves down). Capped one tick under the take-profit."""
    candidates: list[tuple[Decimal, str]] = []
    if rules.trailing_pct is not None:
        t = trailing_stop(entry, high_bid, rules.trailing_pct, rules.activation_pct, tick)
        if t is not None:
            candidates.append((t, "trailing"))
    if rules.break_even_at_pct is not None and high_bid >= entry * (1 + rules.break_even_at_pct):
        b = break_even_price(shares, cost, fee_rate, fee_exponent, tick)
        if b is not None:
            candidates.append((b, "break_even"))
    if not candidates:
        return None
    price, why = max(candidates, key=lambda c: c[0])
    if tp is not None:
        price = min(price, tp - tick)
    if current is not None and price <= current:
        return None
    return price, why

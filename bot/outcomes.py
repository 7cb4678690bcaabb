"""Orders whose outcome the bot does not know yet, looked up by the id saved before they were sent.

Every order is signed first and its id (the EIP-712 order hash, which the venue returns as orderID) is
saved before it leaves. When an answer is lost (timeout, reset, 5xx, unparseable) or says nothing about
what matched (``delayed``, or a success without amounts), the venue is asked about exactly that id: the
order itself (``GET /data/order/{id}``) and its trades. The bot never adopts shares or sales by token
balance or by time window, so it only ever owns what it bought.

``GET /data/order/{id}`` answers only for orders that are still live (FACTS.md Part 0, 0.3): an empty answer
is never read as "never placed" or "not filled" on its own; the order's trades decide.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.money import SHARE_EPSILON
from bot.venue.base import OrderStatus, Venue

#: An order the venue does not know this soon after it was sent may still be on its way in: ask again.
LOOKUP_GRACE_S = 10.0


@dataclass(frozen=True)
class Outcome:
    """What the venue says about one order. ``known`` False: ask again later."""

    known: bool
    exists: bool = False
    resting: bool = False
    filled_shares: Decimal = Decimal(0)
    usdc: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    status: str = ""
    confirmed: bool = True


def look_up(venue: Venue, order_id: str, token_id: str, sent_at: float, now: float, marketable: bool) -> Outcome:
    """Ask the venue what order ``order_id`` did. A marketable (fill-and-kill) order is known once it is
    final and its trades account for what it matched (the trade history gives the prices, hence the USDC);
    a resting order is known as soon as the venue lists it."""
    state = venue.get_order(order_id)
    trades = venue.order_trades(order_id, token_id, sent_at) if marketable or state is None else None
    if state is None:
        # Not live (filled in full, cancelled, killed) or never placed: its trades tell which.
        if trades is not None and trades.filled_shares > 0:
            return Outcome(True, True, False, trades.filled_shares, trades.usdc, trades.fee, "matched",
                           trades.confirmed)
        if trades is not None and trades.failed_shares > 0:
            return Outcome(True, True, False, status="matched, but its trades FAILED")
        if now - sent_at < LOOKUP_GRACE_S:
            return Outcome(False, status="not found yet")
        return Outcome(True, False, status="never placed")
    if state.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
        return Outcome(False, True, status=state.status.value)
    if state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
        if marketable:   # a fill-and-kill order is never left resting: it is still being processed
            return Outcome(False, True, status=state.status.value)
        return Outcome(True, True, True, state.filled_size, status=state.status.value)
    if trades is None:
        return Outcome(True, True, False, state.filled_size, status=state.status.value)
    if trades.filled_shares + trades.failed_shares + SHARE_EPSILON < state.filled_size:
        return Outcome(False, True, status="trades not visible yet")
    return Outcome(True, True, False, trades.filled_shares, trades.usdc, trades.fee, state.status.value,
                   trades.confirmed)

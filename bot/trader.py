"""The trader: the seed's order methods, on top of a venue (live or paper).

It knows Polymarket's order rules (tick, minimum sizes, worst prices, taker fees in USDC) but
not positions or persistence; the bot's loop and the exit protocol decide what to send and when.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from bot.errors import OrderRejected, VenueError
from bot.fees import fee_per_usdc
from bot.money import (
    MIN_MARKETABLE_NOTIONAL,
    fmt,
    price_ceiling,
    price_floor,
    round_shares,
    round_usdc,
    snap_price,
)
from bot.venue.base import Book, CancelResult, Fill, MarketInfo, OrderStatus, Venue

log = logging.getLogger("bot.trader")

#: A market BUY may pay up to this many ticks above the best ask seen when deciding.
ENTRY_SLIPPAGE_TICKS = 2


@dataclass(frozen=True)
class EntryPlan:
    """A checked entry: how much to spend, the worst price, and the exit prices it implies."""

    usdc: Decimal
    max_price: Decimal
    expected_shares: Decimal
    tp_price: Decimal
    sl_price: Decimal


@dataclass(frozen=True)
class BuyResult:
    """What the entry really produced, and the take-profit placed for it (if any)."""

    fill: Fill
    shares_held: Decimal
    tp_fill: Fill | None = None
    tp_error: str | None = None


def exit_prices(entry_price: Decimal, tp_pct: Decimal, sl_pct: Decimal, tick: Decimal) -> tuple[Decimal, Decimal]:
    """TP and SL prices on the tick: TP rounded up (never take less than asked), SL rounded down
    (a stop never fires earlier than asked); both kept in [tick, 1 - tick], the venue's valid range.
    Near the edges the TP may be clamped down to the entry or below it: ``entry_problem`` says so."""
    tp = price_ceiling(entry_price * (1 + tp_pct), tick)
    sl = price_floor(entry_price * (1 - sl_pct), tick)
    return tp, sl


def entry_problem(entry: Decimal, bid: Decimal, tp: Decimal, sl: Decimal,
                  max_spread_share: Decimal | None) -> str | None:
    """Why buying at ``entry`` with the book's best bid at ``bid`` and these exit prices would lose money
    by construction (None when it would not):

    - the TP is not above the entry (clamped to 1 - tick): it can never take a profit;
    - the SL is at or above the best bid: it would fire in the next loop and sell at the bid;
    - the spread (entry - bid, what the position is worth less than it cost the moment it is bought) eats
      more than ``max_spread_share`` of the TP distance (tp - entry).
    """
    if tp <= entry:
        return (f"its take-profit {fmt(tp)} cannot be above the entry {fmt(entry)} (the highest valid price "
                "is 1 - tick)")
    if sl >= bid:
        return (f"its stop-loss {fmt(sl)} is at or above the best bid {fmt(bid)}: it would sell at once, "
                f"at a loss of at least {fmt(entry - bid)} per share")
    if max_spread_share is not None and entry - bid > max_spread_share * (tp - entry):
        return (f"the spread {fmt(entry - bid)} (entry {fmt(entry)}, bid {fmt(bid)}) is more than "
                f"{fmt(max_spread_share * 100)}% of the take-profit distance {fmt(tp - entry)} "
                "(strategy.max_spread_share_of_tp)")
    return None


class EntrySkipped(OrderRejected):
    """The market is not bought: nothing was sent, and nothing is recorded. The message says why."""


class Trader:
    """Order placement over a venue: the seed's ``execute_buy_with_exits`` and friends."""

    def __init__(self, venue: Venue):
        self.venue = venue

    # -- planning ---------------------------------------------------------------------------------

    def plan_entry(self, book: Book, info: MarketInfo, usdc: Decimal, tp_pct: Decimal, sl_pct: Decimal,
                   needs_resting_tp: bool, *, min_price: Decimal | None = None, max_price: Decimal | None = None,
                   max_spread: Decimal | None = None, max_spread_share: Decimal | None = None,
                   budget: Decimal | None = None) -> EntryPlan:
        """Check an entry against the strategy's filters and the venue's rules before anything is sent.
        ``usdc`` is the notional to spend on shares; ``budget``, when given, what may leave the wallet in all (the
        taker fee comes on top of the notional: the notional shrinks until both fit).

        Raises EntrySkipped (an OrderRejected) naming the numbers when the market must not be bought.
        The buy cap (worst price) is the highest price on the tick, at most ENTRY_SLIPPAGE_TICKS above the
        ask and at most ``max_price``, at which the entry would still pass every filter, so whatever the
        buy pays, its TP is above it and its SL below the bid.
        """
        tick = info.tick_size
        ask, bid = book.best_ask, book.best_bid
        if ask is None:
            raise EntrySkipped(f"no asks on token {book.token_id}: nothing to buy", endpoint="plan")
        if bid is None:
            raise EntrySkipped(f"no bids on token {book.token_id}: a stop-loss could never sell", endpoint="plan")
        usdc = round_usdc(usdc)
        if budget is not None:   # the fee is paid on top of the notional (CLOB V2): both must fit the budget
            fee_share = fee_per_usdc((ask, snap_price(ask + ENTRY_SLIPPAGE_TICKS * tick, tick)), info.fee_rate,
                                     info.fee_exponent)
            usdc = min(usdc, round_usdc(budget / (1 + fee_share)))
        if usdc < MIN_MARKETABLE_NOTIONAL:
            raise EntrySkipped(f"trade size ${fmt(usdc)} is below the venue's $1 minimum for a market BUY",
                               endpoint="plan")
        if (min_price is not None and ask < min_price) or (max_price is not None and ask > max_price):
            raise EntrySkipped(f"the ask {fmt(ask)} is outside strategy.min_price..max_price "
                               f"({fmt(min_price)}..{fmt(max_price)})", endpoint="plan")
        if max_spread is not None and ask - bid > max_spread:
            raise EntrySkipped(f"the spread {fmt(ask - bid)} (bid {fmt(bid)} / ask {fmt(ask)}) is above "
                               f"strategy.max_spread {fmt(max_spread)}", endpoint="plan")
        tp, sl = exit_prices(ask, tp_pct, sl_pct, tick)
        problem = entry_problem(ask, bid, tp, sl, max_spread_share)
        if problem:
            raise EntrySkipped(problem, endpoint="plan")
        highest = snap_price(ask + ENTRY_SLIPPAGE_TICKS * tick, tick)
        if max_price is not None:
            highest = min(highest, price_floor(max_price, tick))
        cap = ask
        candidate = highest
        while candidate > ask:
            if entry_problem(candidate, bid, *exit_prices(candidate, tp_pct, sl_pct, tick), max_spread_share) is None:
                cap = candidate
                break
            candidate -= tick
        expected = round_shares(usdc / ask)
        if needs_resting_tp and expected < info.min_order_size:
            smallest = (info.min_order_size * ask).quantize(Decimal("0.01"))
            raise EntrySkipped(
                f"${fmt(usdc)} buys about {fmt(expected)} shares at {fmt(ask)}, below the market's minimum of "
                f"{fmt(info.min_order_size)} shares for a resting take-profit; the smallest valid trade here is "
                f"about ${fmt(smallest)}", endpoint="plan")
        return EntryPlan(usdc, cap, expected, tp, sl)

    # -- the seed's methods -----------------------------------------------------------------------

    def execute_buy(self, token_id: str, plan: EntryPlan, info: MarketInfo, before_post=None) -> BuyResult:
        """Market BUY (fill-and-kill, capped at plan.max_price); returns what the account now holds: on CLOB V2
        every share it bought (the fee is paid in USDC: FACTS.md Part 0, 0.1), no balance read needed.
        ``before_post`` receives the order's id before it is sent. An answer that does not say what
        matched (``fill.settled`` False) holds nothing yet: the caller looks the order up by its id."""
        fill = self.venue.market_buy(token_id, plan.usdc, plan.max_price, info, before_post=before_post)
        if not fill.settled:
            return BuyResult(fill, Decimal(0))
        return BuyResult(fill, fill.filled_shares)

    def execute_buy_with_exits(self, token_id: str, plan: EntryPlan, info: MarketInfo,
                               tp_price: Decimal) -> BuyResult:
        """Market BUY, then the TP as a GTC limit SELL for the shares actually held.

        The SL is not an order: Polymarket has no stop orders and a SELL below the bid fills at once,
        so the caller arms it as a watched trigger. A failed TP comes back in ``tp_error`` (the caller
        falls back to monitoring); the buy itself is never undone.
        """
        result = self.execute_buy(token_id, plan, info)
        if result.shares_held <= 0:
            return result
        try:
            tp_fill = self._place_limit_sell(token_id, tp_price, result.shares_held, info)
        except VenueError as exc:
            return BuyResult(result.fill, result.shares_held, None, str(exc))
        return BuyResult(result.fill, result.shares_held, tp_fill, None)

    def _place_limit_sell(self, token_id: str, price: Decimal, shares: Decimal, info: MarketInfo,
                          before_post=None) -> Fill:
        """The seed's name for ``place_limit_sell``."""
        return self.place_limit_sell(token_id, price, shares, info, before_post)

    def place_limit_sell(self, token_id: str, price: Decimal, shares: Decimal, info: MarketInfo,
                         before_post=None) -> Fill:
        """A GTC limit SELL of ``shares`` (rounded down to 0.01) at ``price`` (on the tick); ``before_post``
        gets the order id before the order leaves (to save it)."""
        size = round_shares(shares)
        price = snap_price(price, info.tick_size)
        if size < info.min_order_size:
            raise OrderRejected(f"{fmt(size)} shares is below the market's minimum of {fmt(info.min_order_size)} "
                                "for a resting order", endpoint="POST /order")
        try:
            return self.venue.limit_sell(token_id, price, size, info, before_post)
        except OrderRejected as exc:
            if not exc.is_balance:
                raise
            # The venue's balance cache lags a fresh buy: refresh it and try once more.
            log.info("TP refused for balance right after the buy; refreshing the balance and retrying once")
            held = round_shares(self.venue.token_balance(token_id, refresh=True))
            if held < info.min_order_size:
                raise
            return self.venue.limit_sell(token_id, price, min(size, held), info, before_post)

    def cancel_order(self, order_id: str) -> CancelResult:
        """Cancel an order; the result says whether it was cancelled or already matched/gone."""
        return self.venue.cancel(order_id)

    def check_order_status(self, order_id: str) -> dict:
        """The seed's status dict: status (open/partially_filled/filled/canceled/unknown), filled size,
        original size and price."""
        state = self.venue.get_order(order_id)
        if state is None:
            return {"status": OrderStatus.UNKNOWN.value, "filled_size": Decimal(0), "original_size": Decimal(0),
                    "price": None}
        return {"status": state.status.value, "filled_size": state.filled_size,
                "original_size": state.original_size, "price": state.price}

    def sell_marketable(self, token_id: str, shares: Decimal, floor: Decimal, info: MarketInfo,
                        before_post=None) -> Fill:
        """Fill-and-kill SELL of ``shares`` into bids at or above ``floor`` (rounded down to the tick);
        ``before_post`` receives the order's id before it is sent."""
        return self.venue.market_sell(token_id, round_shares(shares), price_floor(floor, info.tick_size), info,
                                      before_post=before_post)

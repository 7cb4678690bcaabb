"""The exit protocol (DESIGN.md section 3): how a position gets out, one persisted step at a time.

1. mark the position ``exiting`` (save) so a crash resumes the exit instead of forgetting it;
2. cancel the resting TP and read the answer: ``not_canceled`` means it may have filled;
3. book any TP fill; only the remainder is still to be sold;
4. sell the remainder fill-and-kill, floored at a worst price, sized from what the account holds;
5. confirm; a partial sale stays ``exiting`` and the next loop sells the rest.
A position is never marked closed on an HTTP success alone, and never left without an exit armed.
"""
from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Callable

from bot.crashpoints import crashpoint
from bot.errors import OrderRejected, TemporaryVenueError, UnknownOutcome
from bot.money import FEE_SHARE_TOLERANCE, MIN_MARKETABLE_NOTIONAL, fmt, is_dust, price_floor, round_shares, to_decimal
from bot.position_manager import CloseReason, Position, PositionState, transition
from bot.trader import Trader
from bot.venue.base import Book, MarketInfo, OrderStatus

log = logging.getLogger("bot.exits")

#: Exit sells that did not fill are retried after 2, 4, 8 ... seconds, at most this long apart.
RETRY_CAP_S = 60.0
#: How many times a balance below the position's shares is re-read before the position needs a person.
BALANCE_SHORTFALL_RETRIES = 3


def book_tp_fill(pos: Position, filled_total: Decimal, price: Decimal) -> Decimal:
    """Record the TP's cumulative filled size; returns the newly booked shares (0 if nothing new)."""
    new = filled_total - pos.tp_filled_shares
    if new <= 0:
        return Decimal(0)
    pos.tp_filled_shares = filled_total
    pos.shares = max(pos.shares - new, Decimal(0))
    pos.sold_shares += new
    pos.exit_proceeds += new * price
    return new


def book_sale(pos: Position, shares: Decimal, usdc: Decimal, order_id: str) -> None:
    """Record a marketable exit sale."""
    pos.shares = max(pos.shares - shares, Decimal(0))
    pos.sold_shares += shares
    pos.exit_proceeds += usdc
    if order_id and order_id not in pos.exit_order_ids:
        pos.exit_order_ids = [*pos.exit_order_ids, order_id]


def recover_lost_sale(pos: Position, venue, known: set[str] = frozenset()) -> bool:
    """An exit sell was sent but its result was never recorded (crash, timeout): book what the trade
    history shows it sold, so the sold shares are not mistaken for missing ones; sales that ``known`` ids
    account for (this or another position on the same token) are not booked again. True if it ran."""
    if not pos.pending or pos.pending.get("kind") != "exit_sell":
        return False
    since = float(pos.pending.get("since", 0))
    for fill in venue.recent_fills(pos.token_id, since, "SELL"):
        if fill.order_id in known or fill.order_id in pos.exit_order_ids or fill.filled_shares <= 0:
            continue
        book_sale(pos, fill.filled_shares, fill.usdc, fill.order_id)
        log.warning("Exit sell %s of %s found in the trades: booked %s shares for $%s", fill.order_id[:18],
                    pos.id, fmt(fill.filled_shares), fmt(fill.usdc, 2))
    pos.pending = None
    return True


class ExitProtocol:
    """Runs exits for positions; ``save`` persists the whole state (called before every next step)."""

    def __init__(self, trader: Trader, save: Callable[[], None], max_slippage_pct: Decimal,
                 known_order_ids: Callable[[], set[str]] = set):
        self.trader = trader
        self.save = save
        self.max_slippage_pct = max_slippage_pct
        self.known_order_ids = known_order_ids   # order ids all positions account for

    def start(self, pos: Position, reason: CloseReason, book: Book | None, now: datetime) -> None:
        """Begin an exit (SL trigger, time exit, monitored TP) and run it as far as it goes now."""
        bid = book.best_bid if book else None
        pos.metrics = {**pos.metrics, "trigger_bid": str(bid) if bid is not None else None,
                       "trigger_at": now.isoformat(), "trigger_reason": reason.value}
        transition(pos, PositionState.EXITING, now, reason=reason)
        self.save()
        log.info("Exit %s for %s (%s): bid=%s tp=%s sl=%s", reason.value, pos.id, pos.question[:40] or pos.token_id[:12],
                 fmt(bid), fmt(pos.tp_price), fmt(pos.sl_price))
        self.resume(pos, book, now)

    def resume(self, pos: Position, book: Book | None, now: datetime) -> None:
        """Continue an exit from wherever it stopped (also after a restart)."""
        retry_at = pos.metrics.get("exit_retry_at")
        if retry_at is not None and now.timestamp() < float(retry_at):
            return  # backing off after a sell that did not fill
        info = self.trader.venue.get_market_info(pos.token_id, pos.condition_id)
        if recover_lost_sale(pos, self.trader.venue, self.known_order_ids()):
            self.save()
        if pos.tp_order_id and not self._retire_tp(pos, now):
            return
        if is_dust(pos.shares):
            self._close(pos, now)
            return
        self._sell_remainder(pos, info, book, now)

    # -- steps ------------------------------------------------------------------------------------

    def _retire_tp(self, pos: Position, now: datetime) -> bool:
        """Cancel the TP and book whatever it filled. False when the answer is unclear (try next loop)."""
        order_id = pos.tp_order_id
        result = self.trader.cancel_order(order_id)
        if not result.was_canceled(order_id):
            log.info("TP %s not cancelled (%s): checking whether it filled", order_id,
                     result.not_canceled.get(order_id, "no answer"))
            pos.metrics = {**pos.metrics, "cancel_race": True}
        # Either way the order's own record says how much of it filled (a cancelled TP may have filled partly).
        state = self.trader.venue.get_order(order_id)
        if state is None:
            log.warning("TP %s of %s is unknown to the venue; selling from the account balance", order_id, pos.id)
        elif state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            log.warning("TP %s of %s is still open after a cancel; retrying next loop", order_id, pos.id)
            return False
        else:
            booked = book_tp_fill(pos, state.filled_size, state.price or pos.tp_price or Decimal(0))
            if booked:
                log.info("TP %s filled %s shares @ %s before the exit", order_id, fmt(booked), fmt(state.price))
                if is_dust(pos.shares):
                    pos.close_reason = CloseReason.TAKE_PROFIT  # the TP won the race: that is why it closed
        pos.tp_order_id = None
        self.save()
        crashpoint("after_cancel")
        return True

    def _sell_remainder(self, pos: Position, info: MarketInfo, book: Book | None, now: datetime) -> None:
        venue = self.trader.venue
        held = venue.token_balance(pos.token_id, refresh=True)
        if held + pos.shares * FEE_SHARE_TOLERANCE < pos.shares:
            # Right after a buy the venue's balance cache lags: a shortfall is retried (with a refreshed
            # balance and backoff) before it is taken to mean the shares are really gone.
            seen = int(pos.metrics.get("balance_shortfalls", 0))
            if seen < BALANCE_SHORTFALL_RETRIES:
                log.warning("Account shows %s of %s's %s shares; refreshing and retrying before raising the alarm",
                            fmt(held), pos.id, fmt(pos.shares))
                pos.metrics = {**pos.metrics, "balance_shortfalls": seen + 1}
                self._back_off(pos, now, "balance_shortfall")
                return
            if held <= 0 and pos.shares > 0:
                note = (f"account holds {fmt(held)} shares but the position expects {fmt(pos.shares)}: "
                        "BOTH TP AND SL FILLED - Manual intervention needed" if pos.sold_shares > 0 else
                        f"account holds {fmt(held)} shares but the position expects {fmt(pos.shares)}")
            else:
                note = f"account holds {fmt(held)} shares but the position expects {fmt(pos.shares)}"
            self.needs_attention(pos, note, now)
            return
        size = round_shares(min(held, pos.shares))
        bid = book.best_bid if book else None
        if bid is None:
            log.warning("No bid for %s: cannot sell %s shares now; retrying next loop", pos.id, fmt(size))
            return
        if size * bid < MIN_MARKETABLE_NOTIONAL and size < info.min_order_size:
            # Too small for any order the venue takes: hold to resolution and say so.
            log.warning("Position %s: %s shares worth $%s are below the venue's minimums; held to resolution",
                        pos.id, fmt(size), fmt(size * bid, 2))
            pos.metrics = {**pos.metrics, "held_to_resolution": str(size)}
            self._close(pos, now)
            return
        # The worst price is anchored at the bid that triggered the exit, so a collapsing book is not
        # chased down: below it the position is held (still exiting) and reported.
        anchor = pos.metrics.get("trigger_bid")
        floor = price_floor((to_decimal(anchor) if anchor else bid) * (1 - self.max_slippage_pct), info.tick_size)
        if bid < floor:
            log.warning("Exit of %s held: bid %s is below the worst acceptable price %s; retrying", pos.id,
                        fmt(bid), fmt(floor))
            self._back_off(pos, now, "below_floor")
            return
        pos.pending = {"kind": "exit_sell", "since": now.timestamp(), "size": str(size)}
        self.save()  # the intent is on disk before the order leaves: a lost answer is found in the trades
        crashpoint("before_sell")
        try:
            fill = self.trader.sell_marketable(pos.token_id, size, floor, info)
        except UnknownOutcome as exc:
            log.warning("Exit sell for %s: outcome unknown (%s); the trade history will tell next loop", pos.id, exc)
            self._back_off(pos, now, "unknown_outcome")
            return
        except (OrderRejected, TemporaryVenueError) as exc:
            # 'not enough balance' right after a buy is the venue's balance cache lagging, not the
            # position being gone: refresh and retry with backoff.
            log.warning("Exit sell for %s not filled (%s); retrying with backoff", pos.id, exc)
            pos.pending = None
            self._back_off(pos, now, "rejected")
            return
        book_sale(pos, fill.filled_shares, fill.usdc, fill.order_id)
        pos.pending = None
        crashpoint("after_sell")
        log.info("SOLD %s shares of %s @ %s (floor %s)%s", fmt(fill.filled_shares), pos.id, fmt(fill.avg_price, 4),
                 fmt(floor), "" if is_dust(pos.shares) else f"; {fmt(pos.shares)} left to sell")
        if is_dust(pos.shares):
            self._close(pos, now)
        else:
            self._back_off(pos, now, "partial")

    def _back_off(self, pos: Position, now: datetime, why: str) -> None:
        """Count a failed or partial exit attempt and schedule the next one (capped exponential)."""
        tries = int(pos.metrics.get("exit_retries", 0)) + 1
        delay = min(RETRY_CAP_S, 2.0 ** tries)
        pos.metrics = {**pos.metrics, "exit_retries": tries, f"exit_{why}": int(pos.metrics.get(f"exit_{why}", 0)) + 1,
                       "exit_retry_at": now.timestamp() + delay}
        self.save()

    def _close(self, pos: Position, now: datetime) -> None:
        transition(pos, PositionState.CLOSED, now, reason=pos.close_reason)
        self.save()
        log.info("CLOSED %s %s: pnl=$%s exit=%s", pos.id, pos.close_reason.value if pos.close_reason else "",
                 fmt(pos.realized_pnl, 2), fmt(pos.exit_price, 4))

    def needs_attention(self, pos: Position, note: str, now: datetime) -> None:
        """Hand a position to a person: keep it, log loudly, and let the bot pause new trades."""
        log.error("Position %s needs attention: %s", pos.id, note)
        transition(pos, PositionState.NEEDS_ATTENTION, now, note=note)
        self.save()


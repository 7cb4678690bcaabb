"""The exit protocol: how a position gets out, one persisted step at a time.

1. the position turns ``exiting`` (saved) so a crash resumes the exit instead of forgetting it;
2. cancel the resting TP and read the answer: ``not_canceled`` means it may have filled;
3. book any TP fill; only the remainder is still to be sold;
4. sell the remainder fill-and-kill, floored at a worst price, sized from what the account holds; the
   sell is signed first and its id saved before it is sent, so a lost answer is looked up by that id;
5. confirm; a partial sale stays ``exiting`` and the next loop sells the rest.
A position is never marked closed on an HTTP success alone, and never left without an exit armed: while
an exit waits (refused sell, bid below the floor) the stop-loss and the time exit still apply, and
crossing them re-anchors the floor at the new trigger. A remainder no order can carry is held to the
market's resolution, still a position. Every change goes through ``bot.lifecycle.apply``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from bot.crashpoints import crashpoint
from bot.errors import OrderRejected, TemporaryVenueError, UnknownOutcome
from bot.lifecycle import (
    AttentionNeeded,
    BalanceShort,
    CancelRaced,
    DustHeld,
    ExitBackoff,
    ExitReanchored,
    ExitStarted,
    NothingLeft,
    OrderIntent,
    OrderNotPlaced,
    OrderSigned,
    SellFilled,
    TpFilled,
    apply,
)
from bot.money import (
    FEE_SHARE_TOLERANCE,
    MIN_MARKETABLE_NOTIONAL,
    SHARE_EPSILON,
    fmt,
    is_dust,
    price_floor,
    round_shares,
)
from bot.orders import RecordState, Role
from bot.outcomes import look_up
from bot.position_manager import CloseReason, Position
from bot.trader import Trader
from bot.venue.base import Book, Fill, MarketInfo, OrderStatus, Venue

log = logging.getLogger("bot.exits")

#: Exit sells that did not fill are retried after 2, 4, 8 ... seconds, at most this long apart.
RETRY_CAP_S = 60.0
#: How many times a balance below the position's shares is re-read before the position needs a person.
BALANCE_SHORTFALL_RETRIES = 3


def tp_fill(pos: Position, venue: Venue | None, order_id: str, filled_total: Decimal, limit_price: Decimal,
            final: bool = False, known: Fill | None = None) -> TpFilled | None:
    """The TpFilled event for TP ``order_id`` having filled ``filled_total`` shares in all, or None when
    nothing is new. Its USDC comes from the order's own trades (a TP that crossed the book when placed
    filled above its limit, as a taker, and paid the fee) or from ``known`` (the placement's answer); a
    maker fill not in the trades yet counts at the limit price."""
    rec = pos.record(order_id)
    booked = rec.filled if rec else Decimal(0)
    new = filled_total - booked
    if new <= 0:
        return TpFilled(order_id, booked, rec.usdc, rec.fee, final) if final and rec else None
    if known is not None and known.filled_shares + SHARE_EPSILON >= filled_total:
        return TpFilled(order_id, filled_total, known.usdc, known.fee, final)
    trades = venue.order_trades(order_id, pos.token_id, pos.opened_at.timestamp()) if venue else None
    if trades is not None and trades.filled_shares + SHARE_EPSILON >= filled_total:
        return TpFilled(order_id, filled_total, trades.usdc, trades.fee, final)
    usdc = (rec.usdc if rec else Decimal(0)) + new * limit_price
    return TpFilled(order_id, filled_total, usdc, rec.fee if rec else Decimal(0), final)


def book_tp(pos: Position, venue: Venue | None, order_id: str, filled_total: Decimal, limit_price: Decimal,
            now: datetime, final: bool = False, known: Fill | None = None) -> Decimal:
    """Apply what TP ``order_id`` filled; returns the newly booked shares (0 if nothing new)."""
    before = pos.tp_filled_shares
    event = tp_fill(pos, venue, order_id, filled_total, limit_price, final, known)
    if event is not None:
        apply(pos, event, now)
    return pos.tp_filled_shares - before


def resolve_exit_sell(pos: Position, venue: Venue, now: datetime) -> bool:
    """An exit sell whose outcome was not recorded (crash, lost or delayed answer): book what the venue
    says that very order sold. False while the venue does not know yet (ask again next loop)."""
    rec = pos.pending
    if rec is None or rec.role != Role.EXIT:
        return True
    if rec.state == RecordState.INTENT or not rec.order_id:   # its id is saved before it is sent: none, not sent
        apply(pos, OrderNotPlaced("never sent"), now)
        return True
    out = look_up(venue, rec.order_id, pos.token_id, rec.sent_at or 0.0, now.timestamp(), marketable=True)
    if not out.known:
        log.info("Exit sell %s of %s: outcome not known yet (%s)", rec.order_id[:18], pos.id, out.status)
        return False
    if out.filled_shares > 0:
        apply(pos, SellFilled(rec.order_id, out.filled_shares, out.usdc, out.fee), now)
        log.warning("Exit sell %s of %s looked up: sold %s shares for $%s", rec.order_id[:18], pos.id,
                    fmt(out.filled_shares), fmt(out.usdc - out.fee, 2))
    else:
        apply(pos, OrderNotPlaced(out.status), now)
    return True


def book_own_orders(pos: Position, venue: Venue, now: datetime) -> list[str]:
    """Before any "shares missing" verdict: ask the venue about every order of this position by id (each
    TP it ever had, a pending exit sell) and book what they filled. Returns what was checked, for the
    verdict's note."""
    checked = []
    for rec in [r for r in pos.orders if r.role == Role.TP and r.order_id]:
        order_id = rec.order_id or ""
        state = venue.get_order(order_id)
        if state is None:
            checked.append(f"TP {order_id[:12]}: unknown to the venue")
            continue
        final = state.status not in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING)
        book_tp(pos, venue, order_id, state.filled_size, state.price or pos.tp_price or Decimal(0), now,
                final=final and rec.state == RecordState.LIVE)
        checked.append(f"TP {order_id[:12]}: {state.status.value}, {fmt(state.filled_size)} filled")
        if not pos.is_active:
            return checked
    if pos.pending is not None and pos.pending.role == Role.EXIT:
        resolve_exit_sell(pos, venue, now)
    exits = [r for r in pos.orders if r.role == Role.EXIT and r.filled > 0]
    if exits:
        checked.append(f"{len(exits)} exit sale(s) booked")
    return checked


class ExitProtocol:
    """Runs exits for positions; ``save`` persists the whole state (called before every next step);
    ``alert(event, message)`` tells the user when an exit had to re-anchor its floor."""

    def __init__(self, trader: Trader, save: Callable[[], None], max_slippage_pct: Decimal,
                 max_hold_hours: float = float("inf"), alert: Callable[[str, str], object] | None = None):
        self.trader = trader
        self.save = save
        self.max_slippage_pct = max_slippage_pct
        self.max_hold_hours = max_hold_hours
        self.alert = alert or (lambda event, message: None)

    def start(self, pos: Position, reason: CloseReason, book: Book | None, now: datetime) -> None:
        """Begin an exit (SL trigger, time exit, monitored TP) and run it as far as it goes now."""
        bid = book.best_bid if book else None
        apply(pos, ExitStarted(reason, bid, now), now)
        self.save()
        log.info("Exit %s for %s (%s): bid=%s tp=%s sl=%s", reason.value, pos.id,
                 pos.question[:40] or pos.token_id[:12], fmt(bid), fmt(pos.tp_price), fmt(pos.sl_price))
        self.resume(pos, book, now)

    def resume(self, pos: Position, book: Book | None, now: datetime) -> None:
        """Continue an exit from wherever it stopped (also after a restart)."""
        venue = self.trader.venue
        if not resolve_exit_sell(pos, venue, now):
            return   # the last sell's outcome is not known yet: never send another before it is
        self.save()
        if not pos.is_active:
            return
        self._keep_protecting(pos, book.best_bid if book else None, now)
        if pos.retry_at is not None and now.timestamp() < pos.retry_at:
            return  # backing off after a sell that did not fill
        info = venue.get_market_info(pos.token_id, pos.condition_id)
        if pos.tp_order_id and not self.retire_tp(pos, now):
            return
        if not pos.is_active:
            return   # the TP won the race: it closed as a take-profit
        if is_dust(pos.shares):
            self._close(pos, now)
            return
        self._sell_remainder(pos, info, book, now)

    # -- steps ------------------------------------------------------------------------------------

    def _keep_protecting(self, pos: Position, bid: Decimal | None, now: datetime) -> None:
        """While an exit is held below its floor, the stop-loss and the time exit still apply: crossing
        the SL, passing the holding time (once), or a further slippage step below the floor re-anchors the
        floor at the current bid and retries at once (with a warning and an alert). Nothing is held below
        its SL without a fresh attempt, nor held past its holding time."""
        if bid is None or pos.trigger_bid is None:
            return
        floor = price_floor(pos.trigger_bid * (1 - self.max_slippage_pct), pos.tick_size)
        if bid >= floor:
            return
        reason = pos.close_reason or CloseReason.STOP_LOSS
        time_over = pos.age_hours(now) >= self.max_hold_hours and not pos.time_reanchored
        if pos.sl_price is not None and bid <= pos.sl_price and reason != CloseReason.STOP_LOSS:
            reason = CloseReason.STOP_LOSS
        elif time_over:   # the holding time is over: get out at the market once, whatever triggered the exit
            reason = reason if reason in (CloseReason.STOP_LOSS, CloseReason.TIME_EXIT) else CloseReason.TIME_EXIT
        elif bid >= floor * (1 - self.max_slippage_pct):
            return   # within one slippage step below the floor: hold and retry with backoff
        note = (f"exit of {pos.id} ({pos.close_reason.value if pos.close_reason else '-'}) was held below its "
                f"floor {fmt(floor)}; bid {fmt(bid)} ({reason.value}): floor re-anchored at {fmt(bid)}, selling "
                "again now")
        log.warning("%s", note)
        apply(pos, ExitReanchored(reason, bid, time_over), now)
        self.save()
        self.alert("exit_reanchored", note)

    def retire_tp(self, pos: Position, now: datetime) -> bool:
        """Cancel the TP and book whatever it filled. False when the answer is unclear (try next loop)."""
        order_id = pos.tp_order_id
        assert order_id is not None
        result = self.trader.cancel_order(order_id)
        if not result.was_canceled(order_id):
            log.info("TP %s not cancelled (%s): checking whether it filled", order_id,
                     result.not_canceled.get(order_id, "no answer"))
            apply(pos, CancelRaced(), now)
        # Either way the order's own record says how much of it filled (a cancelled TP may have filled partly).
        state = self.trader.venue.get_order(order_id)
        if state is not None and state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            log.warning("TP %s of %s is still open after a cancel; retrying next loop", order_id, pos.id)
            return False
        if state is None:
            log.warning("TP %s of %s is unknown to the venue; selling from the account balance", order_id, pos.id)
        rec = pos.record(order_id)
        filled = state.filled_size if state is not None else (rec.filled if rec else Decimal(0))
        booked = book_tp(pos, self.trader.venue, order_id, filled, (state.price if state else None) or
                         pos.tp_price or Decimal(0), now, final=True)
        if booked:
            log.info("TP %s filled %s shares before the exit", order_id, fmt(booked))
        self.save()
        crashpoint("after_cancel")
        return True

    def _shortfall(self, pos: Position, now: datetime) -> Decimal | None:
        """The account's shares, or None when they are fewer than the position expects even after booking
        every order of the position by id (then retried, and finally handed to a person)."""
        venue = self.trader.venue
        held = venue.token_balance(pos.token_id, refresh=True)
        if held + pos.shares * FEE_SHARE_TOLERANCE >= pos.shares:
            return held
        checked = book_own_orders(pos, venue, now)
        self.save()
        if not pos.is_active or is_dust(pos.shares) or held + pos.shares * FEE_SHARE_TOLERANCE >= pos.shares:
            return held
        # Right after a buy the venue's balance cache lags: a shortfall is retried (with a refreshed
        # balance and backoff) before it is taken to mean the shares are really gone.
        seen = pos.balance_shortfalls
        if seen < BALANCE_SHORTFALL_RETRIES:
            log.warning("Account shows %s of %s's %s shares; refreshing and retrying before raising the alarm",
                        fmt(held), pos.id, fmt(pos.shares))
            apply(pos, BalanceShort(), now)
            self._back_off(pos, now, "balance_shortfall")
            return None
        note = f"account holds {fmt(held)} shares but the position expects {fmt(pos.shares)}"
        if held <= 0 and pos.sold_shares > 0:
            note += ": BOTH TP AND SL FILLED - Manual intervention needed"
        self.needs_attention(pos, f"{note} (checked: balance refreshed {seen + 1} times; "
                                  f"{'; '.join(checked) or 'no orders of its own'})", now)
        return None

    def _sell_remainder(self, pos: Position, info: MarketInfo, book: Book | None, now: datetime) -> None:
        held = self._shortfall(pos, now)
        if held is None or not pos.is_active:
            return
        if is_dust(pos.shares):
            self._close(pos, now)
            return
        size = round_shares(min(held, pos.shares))
        bid = book.best_bid if book else None
        if bid is None:
            log.warning("No bid for %s: cannot sell %s shares now; retrying next loop", pos.id, fmt(size))
            return
        if size * bid < MIN_MARKETABLE_NOTIONAL and size < info.min_order_size:
            # Too small for any order the venue takes: still a position, held to resolution and watched.
            log.warning("Position %s: %s shares worth $%s are below the venue's minimums (5 shares or $1); held "
                        "to resolution, its payout booked then", pos.id, fmt(size), fmt(size * bid, 2))
            apply(pos, DustHeld(), now)
            self.save()
            return
        # The worst price is anchored at the bid that triggered the exit, so a collapsing book is not
        # chased down: below it the position is held (still exiting, still protected) and reported.
        floor = price_floor((pos.trigger_bid if pos.trigger_bid is not None else bid) * (1 - self.max_slippage_pct),
                            info.tick_size)
        if bid < floor:
            log.warning("Exit of %s held: bid %s is below the worst acceptable price %s; retrying", pos.id,
                        fmt(bid), fmt(floor))
            self._back_off(pos, now, "below_floor")
            return
        apply(pos, OrderIntent(Role.EXIT, floor, size), now)
        self.save()

        def record(order_id: str) -> None:   # the id is on disk before the order leaves
            apply(pos, OrderSigned(order_id, now.timestamp()), now)
            self.save()

        crashpoint("before_sell")
        try:
            fill = self.trader.sell_marketable(pos.token_id, size, floor, info, before_post=record)
        except UnknownOutcome as exc:
            log.warning("Exit sell for %s: outcome unknown (%s); looked up by its id next loop", pos.id, exc)
            self._back_off(pos, now, "unknown_outcome")
            return
        except (OrderRejected, TemporaryVenueError) as exc:
            # 'not enough balance' right after a buy is the venue's balance cache lagging, not the
            # position being gone: refresh and retry with backoff.
            log.warning("Exit sell for %s not filled (%s); retrying with backoff", pos.id, exc)
            apply(pos, OrderNotPlaced(str(exc)), now)
            self._back_off(pos, now, "rejected")
            return
        if not fill.settled:
            log.info("Exit sell %s for %s answered %s without amounts: looked up by its id", fill.order_id[:18],
                     pos.id, fill.status)
            self.save()
            return
        apply(pos, SellFilled(fill.order_id, fill.filled_shares, fill.usdc, fill.fee), now)
        crashpoint("after_sell")
        log.info("SOLD %s shares of %s @ %s (floor %s)%s", fmt(fill.filled_shares), pos.id, fmt(fill.avg_price, 4),
                 fmt(floor), "" if is_dust(pos.shares) else f"; {fmt(pos.shares)} left to sell")
        if pos.is_active:
            self._back_off(pos, now, "partial")
        else:
            self.save()
            self._log_closed(pos)

    def _back_off(self, pos: Position, now: datetime, why: str) -> None:
        """Count a failed or partial exit attempt and schedule the next one (capped exponential)."""
        tries = int(pos.metrics.get("exit_retries", 0)) + 1
        apply(pos, ExitBackoff(why, now.timestamp() + min(RETRY_CAP_S, 2.0 ** tries)), now)
        self.save()

    def _close(self, pos: Position, now: datetime) -> None:
        apply(pos, NothingLeft(), now)
        self.save()
        self._log_closed(pos)

    @staticmethod
    def _log_closed(pos: Position) -> None:
        log.info("CLOSED %s %s: pnl=$%s exit=%s", pos.id, pos.close_reason.value if pos.close_reason else "",
                 fmt(pos.realized_pnl, 2), fmt(pos.exit_price, 4))

    def needs_attention(self, pos: Position, note: str, now: datetime) -> None:
        """Hand a position to a person: keep it, log loudly, and let the bot pause new trades."""
        log.error("Position %s needs attention: %s", pos.id, note)
        apply(pos, AttentionNeeded(note), now)
        self.save()




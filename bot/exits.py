"""The exit protocol: how a position gets out, one persisted step at a time.

1. the position turns ``exiting`` (saved) so a crash resumes the exit instead of forgetting it;
2. cancel the resting TP (every rung of a take-profit ladder, in one request) and read the answer:
   ``not_canceled`` means it may have filled;
3. book any TP fill; only the remainder is still to be sold;
4. sell the remainder fill-and-kill, floored at a worst price, sized from what the account holds; the
   sell is signed first and its id saved before it is sent, so a lost answer is looked up by that id;
5. confirm; a partial sale stays ``exiting`` and the next loop sells the rest.
A monitored take-profit ladder sells only up to the rung the bid reached (``exit_rung``; bot/ladder.py): once
that is sold the position is ``open`` again, its rest under its stop-loss and its next rungs.
A position is never marked closed on an HTTP success alone, and never left without an exit armed: while
an exit waits (refused sell, bid below the floor) the stop-loss and the time exit still apply, and
crossing them re-anchors the floor at the new trigger. A remainder no order can carry is held to the
market's resolution, still a position. Every change goes through ``bot.lifecycle.apply``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TypeVar

from bot.balance_lock import BalanceLock
from bot.clock import Clock, SystemClock
from bot.crashpoints import crashpoint
from bot.errors import OrderRejected, TemporaryVenueError, UnknownOutcome, VenueError
from bot.ladder import next_target, remaining, rung_exit_done, rung_exit_size, rungs_filled
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
    RungFilled,
    SellFilled,
    SharesLeft,
    TpFilled,
    apply,
    unconfirmed,
)
from bot.money import (
    BALANCE_TOLERANCE,
    MIN_MARKETABLE_NOTIONAL,
    SHARE_EPSILON,
    fmt,
    is_dust,
    price_floor,
    round_shares,
)
from bot.orders import RecordState, Role
from bot.outcomes import look_up
from bot.position_manager import CloseReason, Position, PositionState
from bot.trader import Trader
from bot.venue.base import Book, CancelResult, Fill, MarketInfo, OrderState, OrderStatus, SellOrder, Venue

log = logging.getLogger("bot.exits")
T = TypeVar("T")
U = TypeVar("U")

#: Exit sells that did not fill are retried after 2, 4, 8 ... seconds, at most this long apart.
RETRY_CAP_S = 60.0
#: For this long after a position's entry its balance is refreshed before an exit reads it (the venue's
#: balance cache lags a fresh fill).
FRESH_FILL_S = 60.0
#: How many times a balance below the position's shares is re-read before the position needs a person.
BALANCE_SHORTFALL_RETRIES = 3


def tp_fill(pos: Position, venue: Venue | None, order_id: str, filled_total: Decimal, limit_price: Decimal,
            final: bool = False, known: Fill | None = None) -> TpFilled | None:
    """The TpFilled event for TP ``order_id`` having matched ``filled_total`` shares in all (as the venue's
    size_matched counts them: trades that FAILED included, which the record keeps apart), or None when
    nothing is new. Its USDC comes from the order's own trades (a TP that crossed the book when placed
    filled above its limit, as a taker, and paid the fee) or from ``known`` (the placement's answer); a
    maker fill not in the trades yet counts at the limit price, unconfirmed."""
    rec = pos.record(order_id)
    booked = rec.filled if rec else Decimal(0)
    failed = rec.failed if rec else Decimal(0)
    new = filled_total - booked - failed
    if new <= SHARE_EPSILON:
        return TpFilled(order_id, booked, rec.usdc, rec.fee, final) if final and rec else None
    for source in (known, None):
        if source is None:
            source = venue.order_trades(order_id, pos.token_id, _tp_since(pos, order_id)) if venue else None
        if source is not None and source.filled_shares + source.failed_shares + SHARE_EPSILON >= filled_total:
            return TpFilled(order_id, source.filled_shares, source.usdc, source.fee, final,
                            confirmed=source.confirmed, failed=source.failed_shares)
    usdc = (rec.usdc if rec else Decimal(0)) + new * limit_price
    return TpFilled(order_id, filled_total - failed, usdc, rec.fee if rec else Decimal(0), final, confirmed=False)


def _tp_since(pos: Position, order_id: str) -> float:
    rec = pos.record(order_id)
    return rec.sent_at if rec is not None and rec.sent_at else pos.opened_at.timestamp()


def gone_tp_trades(pos: Position, venue: Venue, order_id: str) -> Fill:
    """What a TP that the venue no longer answers for (GET /data/order is empty for orders no longer live:
    filled in full, cancelled; FACTS.md Part 0, 0.3) traded, from its trades."""
    return venue.order_trades(order_id, pos.token_id, _tp_since(pos, order_id))


def tp_limit(pos: Position, order_id: str) -> Decimal:
    """The limit price of TP ``order_id`` (its record's; a rung of a ladder has its own)."""
    rec = pos.record(order_id)
    return (rec.price if rec is not None and rec.price is not None else None) or pos.tp_price or Decimal(0)


def book_gone_tp(pos: Position, venue: Venue, order_id: str, now: datetime, source: str | None = None) -> Fill:
    """Book what a TP that is no longer live filled, from its trades (final); returns those trades."""
    trades = gone_tp_trades(pos, venue, order_id)
    book_tp(pos, venue, order_id, trades.filled_shares + trades.failed_shares, tp_limit(pos, order_id), now,
            final=True, known=trades, source=source)
    return trades


def needs_refresh(pos: Position, now: datetime) -> bool:
    """Whether an exit refreshes the venue's balance cache before reading it: within FRESH_FILL_S of the entry
    (the cache lags a fresh fill) and after a shortfall; an older position's cached balance is current (one
    read instead of two)."""
    return pos.balance_shortfalls > 0 or (now - pos.opened_at).total_seconds() < FRESH_FILL_S


def book_tp(pos: Position, venue: Venue | None, order_id: str, filled_total: Decimal, limit_price: Decimal,
            now: datetime, final: bool = False, known: Fill | None = None, source: str | None = None) -> Decimal:
    """Apply what TP ``order_id`` filled; returns the newly booked shares (0 if nothing new). ``source``: how
    the fill was learned (push, poll), recorded with a fill that is new."""
    before = pos.tp_filled_shares
    rec = pos.record(order_id)
    event = tp_fill(pos, venue, order_id, filled_total, limit_price, final, known)
    if event is not None:
        if source is not None and event.filled > (rec.filled if rec else Decimal(0)):
            event = replace(event, source=source)
        apply(pos, event, now)
    rec = pos.record(order_id)
    if rec is not None and rec.rung is not None and pos.status in RUNG_STATES and is_dust(remaining(rec)) \
            and rec.rung not in rungs_filled(pos) and rec.filled > 0:
        apply(pos, RungFilled(rec.rung), now)
        log.info("TP RUNG %d of %s FILLED: %s shares @ %s; %s shares left", rec.rung + 1, pos.id, fmt(rec.filled),
                 fmt(rec.price), fmt(pos.shares))
    return pos.tp_filled_shares - before


#: States in which a rung's fill is an event of its own (a fill that closes the position is its take-profit).
RUNG_STATES = (PositionState.OPEN, PositionState.EXITING, PositionState.NEEDS_ATTENTION)


def rung_sold(pos: Position, now: datetime) -> bool:
    """A monitored ladder sale (``exit_rung``) that has sold what it set out to: the position is open again
    (RungFilled). True when it is."""
    if pos.status != PositionState.EXITING or pos.exit_rung is None or not rung_exit_done(pos, pos.exit_rung):
        return False
    rung = pos.exit_rung
    apply(pos, RungFilled(rung), now)
    log.info("TP RUNG %d of %s SOLD: %s shares sold in all, %s left, protected again (SL %s, next TP %s)", rung + 1,
             pos.id, fmt(pos.sold_shares), fmt(pos.shares), fmt(pos.sl_price), fmt(next_target(pos)))
    return True


def tp_pending(pos: Position) -> bool:
    """Whether a TP's outcome is not known yet (its answer lost as the exit began): the exit waits for the look-up by
    its id (``Manager.resolve_pending_tp``, before the handlers of the next loop), then cancels it if it rests."""
    return pos.pending is not None and pos.pending.role == Role.TP


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
        apply(pos, SellFilled(rec.order_id, out.filled_shares, out.usdc, out.fee, out.confirmed), now)
        log.warning("Exit sell %s of %s looked up: sold %s shares for $%s", rec.order_id[:18], pos.id,
                    fmt(out.filled_shares), fmt(out.usdc - out.fee, 2))
    else:
        apply(pos, OrderNotPlaced(out.status), now)
    return True


def shrink_to(pos: Position, held: Decimal, checked: str, now: datetime) -> str:
    """Shares left the account outside the bot (sold by hand, moved): the position keeps what the account holds
    (the rest booked at cost, no profit or loss) and what is left stays protected. Returns the warning logged."""
    gone = pos.shares - max(held, Decimal(0))
    note = (f"{fmt(gone)} of position {pos.id}'s {fmt(pos.shares)} shares left the account outside the bot "
            f"(sold by hand?); the account holds {fmt(held)}: the position now manages those ({checked})")
    log.warning("%s", note)
    apply(pos, SharesLeft(gone, note), now)
    return note


def book_own_orders(pos: Position, venue: Venue, now: datetime) -> list[str]:
    """Before any "shares missing" verdict: ask the venue about every order of this position by id (each
    TP it ever had, a pending exit sell) and book what they filled. Returns what was checked, for the
    verdict's note."""
    checked = []
    for rec in [r for r in pos.orders if r.role == Role.TP and r.order_id]:
        order_id = rec.order_id or ""
        state = venue.get_order(order_id)
        if state is None:   # no longer live: its trades say what it filled
            trades = book_gone_tp(pos, venue, order_id, now) if rec.state == RecordState.LIVE else \
                gone_tp_trades(pos, venue, order_id)
            checked.append(f"TP {order_id[:12]}: not live, {fmt(trades.filled_shares)} filled by its trades")
            if not pos.trading:
                return checked
            continue
        final = state.status not in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING)
        book_tp(pos, venue, order_id, state.filled_size, state.price or tp_limit(pos, order_id), now,
                final=final and rec.state == RecordState.LIVE)
        checked.append(f"TP {order_id[:12]}: {state.status.value}, {fmt(state.filled_size)} filled")
        if not pos.trading:
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
                 max_hold_hours: float = float("inf"), alert: Callable[[str, str], object] | None = None,
                 clock: Clock | None = None, lock: BalanceLock | None = None):
        self.trader = trader
        self.time = (clock or SystemClock()).time   # when a sell is signed (its trigger's delay is measured to it)
        self.lock = lock or BalanceLock(clock or SystemClock(), alert)
        #: Positions whose last exit sell was refused for balance: their next attempt reads a refreshed balance,
        #: and a refusal again with the shares there is a balance lock (FACTS.md Part 0, 0.4).
        self._refused_for_balance: set[str] = set()
        self.save = save
        self.max_slippage_pct = max_slippage_pct
        self.max_hold_hours = max_hold_hours
        self.alert = alert or (lambda event, message: None)
        #: While not None, exits that start or resume are gathered here, to run together (``run_collected``).
        self.collected: list[tuple[Position, Book | None]] | None = None

    def start(self, pos: Position, reason: CloseReason, book: Book | None, now: datetime,
              seen: tuple[str, float] | None = None, rung: int | None = None) -> None:
        """Begin an exit (SL trigger, time exit, monitored TP) and run it as far as it goes now. ``seen``: the
        book's source (``push``: the market channel; ``poll``: a REST read) and the clock time it was seen,
        recorded with the exit (``status`` and ``report`` show the delay from it to the exit order). ``rung``: a
        take-profit ladder's sale up to that rung (the rest is kept)."""
        bid = book.best_bid if book else None
        price_trigger = seen is not None and reason in (CloseReason.STOP_LOSS, CloseReason.TAKE_PROFIT)
        source, seen_at = seen if seen is not None and price_trigger else (None, None)   # (a clock ends time exits)
        apply(pos, ExitStarted(reason, bid, now, source, seen_at, rung), now)
        log.info("Exit %s for %s (%s): bid=%s tp=%s sl=%s%s", reason.value, pos.id,
                 pos.question[:40] or pos.token_id[:12], fmt(bid), fmt(next_target(pos) or pos.tp_price),
                 fmt(pos.sl_price), "" if rung is None else f", selling up to TP rung {rung + 1} of "
                 f"{len(pos.tp_ladder)}: {fmt(rung_exit_size(pos, rung))} of {fmt(pos.shares)} shares")
        if self.collected is not None:   # saved, with every other exit of this loop, before anything is sent
            self.collected.append((pos, book))
            return
        self.save()
        self.resume(pos, book, now)

    def resume(self, pos: Position, book: Book | None, now: datetime) -> None:
        """Continue an exit from wherever it stopped (also after a restart)."""
        if self.collected is not None:
            self.collected.append((pos, book))
            return
        venue = self.trader.venue
        if tp_pending(pos):
            return   # a TP sent this loop whose answer was lost: its outcome is looked up first (next loop)
        looked_up = pos.pending is not None
        if not resolve_exit_sell(pos, venue, now):
            return   # the last sell's outcome is not known yet: never send another before it is
        if looked_up:
            self.save()   # (nothing to write otherwise: a save costs milliseconds on the way to a stop-loss)
        if not pos.trading:
            return
        self._keep_protecting(pos, book.best_bid if book else None, now)
        if pos.retry_at is not None and now.timestamp() < pos.retry_at:
            return  # backing off after a sell that did not fill
        info = venue.get_market_info(pos.token_id, pos.condition_id)
        if pos.live_tps and not self.retire_tps(pos, now, save=False):
            return
        if not pos.trading:
            return   # the TP won the race: it closed as a take-profit
        if is_dust(pos.shares):
            self._close(pos, now)
            return
        if rung_sold(pos, now):
            self.save()
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

    def retire_tps(self, pos: Position, now: datetime, save: bool = True) -> bool:
        """Cancel the position's TPs (every rung of a ladder in one request) and book whatever they filled. False
        when an answer is unclear (try next loop). ``save`` False: on the way to an exit's sell, whose intent is saved
        before it leaves and carries this booking with it (a kill before that save finds the TPs cancelled and their
        fills in their trades at the next start: nothing is lost, and a save is spared on the way to a stop-loss)."""
        ids = list(pos.tp_order_ids)
        if not ids:
            return True
        venue = self.trader.venue
        result = self.trader.cancel_order(ids[0]) if len(ids) == 1 else venue.cancel_many(ids)
        retired = [self._tp_retired(pos, order_id, result, partial(venue.get_order, order_id), now)
                   for order_id in ids if pos.trading]
        if not all(retired) or (pos.trading and pos.live_tps):
            if not save:
                self.save()   # (what the others filled is booked: on disk before the next loop)
            return False
        if save:
            self.save()
        crashpoint("after_cancel")
        return True

    def _tp_retired(self, pos: Position, order_id: str, result: CancelResult,
                    read_order: Callable[[], OrderState | None], now: datetime) -> bool:
        """The cancel's answer read, then the order's own record: book what the TP filled. False while it is
        still open (try next loop)."""
        if not result.was_canceled(order_id):
            log.info("TP %s not cancelled (%s): checking whether it filled", order_id,
                     result.not_canceled.get(order_id, "no answer"))
            apply(pos, CancelRaced(), now)
        # Either way the order says how much of it filled (a cancelled TP may have filled partly).
        state = read_order()
        if state is not None and state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED,
                                                  OrderStatus.PENDING):
            # (PENDING: a delayed order may refuse to be cancelled until its delay is over: FACTS.md Part 0, 0.5)
            log.warning("TP %s of %s is still open after a cancel; retrying next loop", order_id, pos.id)
            return False
        venue = self.trader.venue
        before = pos.tp_filled_shares
        if state is None:   # no longer live (cancelled or filled): its trades say what it filled
            book_gone_tp(pos, venue, order_id, now)
        else:
            book_tp(pos, venue, order_id, state.filled_size, state.price or tp_limit(pos, order_id), now, final=True)
        booked = pos.tp_filled_shares - before
        if booked:
            log.info("TP %s filled %s shares before the exit", order_id, fmt(booked))
        return True

    def _shortfall(self, pos: Position, now: datetime, held: Decimal | None = None) -> Decimal | None:
        """The account's shares (``held``: already read), or None while they are fewer than the position expects
        even after booking every order of the position by id: re-read (refreshed) with backoff, and waited for
        while a fill of the position may still fail. Shares still missing then left the account outside the
        bot (sold by hand): the position shrinks to what the account holds (warned and alerted), and the rest
        is sold as planned."""
        venue = self.trader.venue
        if held is None:
            held = venue.token_balance(pos.token_id, refresh=self.refresh_balance(pos, now))
        if held + BALANCE_TOLERANCE >= pos.shares:
            return held
        checked = book_own_orders(pos, venue, now)
        self.save()
        if not pos.trading or is_dust(pos.shares) or held + BALANCE_TOLERANCE >= pos.shares:
            return held
        if unconfirmed(pos):   # a buy that never settled shows as missing shares: its trades decide, not this read
            log.warning("Account shows %s of %s's %s shares while a fill of it is not settled yet: no verdict until "
                        "the venue's trades say; %s", fmt(held), pos.id, fmt(pos.shares),
                        "selling what the account holds" if not is_dust(held) else "waiting")
            if is_dust(held):
                self._back_off(pos, now, "unsettled")
                return None
            return held   # (the sale is sized from what the account holds: never more)
        # Right after a buy the venue's balance cache lags: a shortfall is retried (with a refreshed
        # balance and backoff) before it is taken to mean the shares are really gone.
        seen = pos.balance_shortfalls
        if seen < BALANCE_SHORTFALL_RETRIES:
            log.warning("Account shows %s of %s's %s shares; refreshing and retrying before raising the alarm",
                        fmt(held), pos.id, fmt(pos.shares))
            apply(pos, BalanceShort(), now)
            self._back_off(pos, now, "balance_shortfall")
            return None
        self.shrink(pos, held, f"checked: balance refreshed {seen + 1} times; "
                               f"{'; '.join(checked) or 'no orders of its own'}", now)
        return held if pos.trading else None

    def shrink(self, pos: Position, held: Decimal, checked: str, now: datetime) -> None:
        """``shrink_to`` what the account holds, saved and alerted."""
        note = shrink_to(pos, held, checked, now)
        self.save()
        self.alert("shares_left", note)

    def _plan_sell(self, pos: Position, info: MarketInfo, book: Book | None, now: datetime,
                   held: Decimal | None = None) -> tuple[Decimal, Decimal] | None:
        """(size, worst price) of the exit sell to send now, or None when none is (closed, held, backing off)."""
        held = self._shortfall(pos, now, held)
        if held is None or not pos.trading:
            return None
        if is_dust(pos.shares):
            self._close(pos, now)
            return None
        size = round_shares(min(held, pos.shares))
        if pos.exit_rung is not None:   # a ladder's sale up to a rung: what the rungs up to it lack, no more
            size = min(size, rung_exit_size(pos, pos.exit_rung))
        bid = book.best_bid if book else None
        if bid is None:
            log.warning("No bid for %s: cannot sell %s shares now; retrying next loop", pos.id, fmt(size))
            return None
        if size * bid < MIN_MARKETABLE_NOTIONAL and size < info.min_order_size:
            # Too small for any order the venue takes: still a position, held to resolution and watched.
            log.warning("Position %s: %s shares worth $%s are below the venue's minimums (5 shares or $1); held "
                        "to resolution, its payout booked then", pos.id, fmt(size), fmt(size * bid, 2))
            apply(pos, DustHeld(), now)
            self.save()
            return None
        # The worst price is anchored at the bid that triggered the exit, so a collapsing book is not
        # chased down: below it the position is held (still exiting, still protected) and reported.
        floor = price_floor((pos.trigger_bid if pos.trigger_bid is not None else bid) * (1 - self.max_slippage_pct),
                            info.tick_size)
        if bid < floor:
            log.warning("Exit of %s held: bid %s is below the worst acceptable price %s; retrying", pos.id,
                        fmt(bid), fmt(floor))
            self._back_off(pos, now, "below_floor")
            return None
        return size, floor

    def _sell_remainder(self, pos: Position, info: MarketInfo, book: Book | None, now: datetime) -> None:
        plan = self._plan_sell(pos, info, book, now)
        if plan is None:
            return
        size, floor = plan
        # The intent is saved together with the signed order's id, before the order leaves: signing is local,
        # so a crash before that save has sent nothing (one save fewer on the way to a stop-loss).
        apply(pos, OrderIntent(Role.EXIT, floor, size, rung=pos.exit_rung), now)

        def record(order_id: str) -> None:   # the id is on disk before the order leaves
            apply(pos, OrderSigned(order_id, self.time()), now)
            self.save()

        crashpoint("before_sell")
        try:
            fill: Fill | VenueError = self.trader.sell_marketable(pos.token_id, size, floor, info, before_post=record)
        except (UnknownOutcome, OrderRejected, TemporaryVenueError) as exc:
            fill = exc
        self._sell_answer(pos, fill, floor, now)

    def _sell_answer(self, pos: Position, fill: Fill | VenueError, floor: Decimal, now: datetime) -> None:
        """Book an exit sell's answer: a fill, a refusal (backed off), or an outcome to look up by its id."""
        if isinstance(fill, UnknownOutcome):
            log.warning("Exit sell for %s: outcome unknown (%s); looked up by its id next loop", pos.id, fill)
            self._back_off(pos, now, "unknown_outcome")
            return
        if isinstance(fill, (OrderRejected, TemporaryVenueError)):
            # 'not enough balance' right after a buy is the venue's balance cache lagging, not the
            # position being gone: refresh and retry with backoff. Refused again with the shares there (the
            # refreshed read it was sized from): a balance lock; the exit keeps retrying all the same.
            log.warning("Exit sell for %s not filled (%s); retrying with backoff", pos.id, fill)
            apply(pos, OrderNotPlaced(str(fill)), now)
            if isinstance(fill, OrderRejected) and fill.is_balance:   # (sized from the balance just read)
                self.lock.refused(f"the exit sell of {pos.id}")
                self._refused_for_balance.add(pos.id)
            self._back_off(pos, now, "balance_lock" if self.lock.active else "rejected")
            return
        if isinstance(fill, VenueError):   # an answer that cannot be read: the order is looked up by its id
            log.warning("Exit sell for %s: answer unreadable (%s); looked up by its id next loop", pos.id, fill)
            self.save()
            return
        if not fill.settled:
            log.info("Exit sell %s for %s answered %s without amounts: looked up by its id", fill.order_id[:18],
                     pos.id, fill.status)
            self.save()
            return
        apply(pos, SellFilled(fill.order_id, fill.filled_shares, fill.usdc, fill.fee, fill.confirmed), now)
        self._refused_for_balance.discard(pos.id)
        self.lock.went_through()
        crashpoint("after_sell")
        log.info("SOLD %s shares of %s @ %s (floor %s)%s", fmt(fill.filled_shares), pos.id, fmt(fill.avg_price, 4),
                 fmt(floor), "" if is_dust(pos.shares) else f"; {fmt(pos.shares)} left")
        if rung_sold(pos, now):
            self.save()
        elif pos.status == PositionState.EXITING:
            self._back_off(pos, now, "partial")
        else:
            self.save()
            if pos.status == PositionState.SETTLING:
                log.info("Everything of %s is sold; closed once the venue settles the trades", pos.id)
            else:
                self._log_closed(pos)

    # -- many exits in one loop -------------------------------------------------------------------

    def run_collected(self, now: datetime) -> list[Position]:
        """Run the exits gathered this loop (``collected``) and stop gathering; returns their positions. One
        exit runs as ever; several run as one batch (``run_batch``)."""
        items, self.collected = self.collected or [], None
        if len(items) == 1:
            self.save()
            self.resume(items[0][0], items[0][1], now)
        elif items:
            self.run_batch(items, now)
        return [pos for pos, _ in items]

    def _each(self, fn: Callable[[U], T], items: list[U]) -> list[T | VenueError]:
        """``fn`` for every item (a position, or a position's order), concurrently when the venue allows it
        (network reads only: nothing here touches a position); a venue error is that item's result."""
        def one(item: U) -> T | VenueError:
            try:
                return fn(item)
            except VenueError as exc:
                return exc
        workers = min(int(getattr(self.trader.venue, "concurrency", 1)), len(items))
        if workers <= 1:
            return [one(p) for p in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, items))

    def run_batch(self, items: list[tuple[Position, Book | None]], now: datetime) -> None:
        """Several exits at once (a gap through many stop-losses, time exits together), each under the rules
        above, in phases: the TPs of them all cancelled in ONE request (DELETE /orders) and each answer read;
        the orders and balances read concurrently; every sell signed with its id saved, then all sent together
        (POST /orders batches, concurrently). Positions change only here, in the loop's thread, in order; the
        state is saved at each point where the rules ask for it before something is sent."""
        venue = self.trader.venue
        save = self.save
        self.save = lambda: None   # the steps' saves are gathered; written at the points below
        try:
            ready: list[tuple[Position, Book | None]] = []
            for pos, book in items:
                if tp_pending(pos) or not resolve_exit_sell(pos, venue, now) or not pos.trading:
                    continue   # the last sell's outcome is not known yet: never send another before it is
                self._keep_protecting(pos, book.best_bid if book else None, now)
                if pos.retry_at is not None and now.timestamp() < pos.retry_at:
                    continue
                ready.append((pos, book))
            save()   # every exit's start on disk before any cancel or sell leaves
            infos = dict(zip([p.id for p, _ in ready], self._each(
                lambda p: venue.get_market_info(p.token_id, p.condition_id), [p for p, _ in ready]), strict=True))
            ready = [(p, b) for p, b in ready if not self._failed(p, infos[p.id], "market info")]
            with_tp = [p for p, _ in ready if p.live_tps]
            if with_tp:
                self._retire_all(with_tp, now)
                save()
                crashpoint("after_cancel")
            left = [(p, b) for p, b in ready if p.trading and not p.live_tps]
            for pos in [p for p, _ in left if is_dust(p.shares)]:
                self._close(pos, now)
            left = [(p, b) for p, b in left if p.trading and not rung_sold(p, now)]
            # The venue's balance cache lags a fresh fill by seconds: refreshed only for a recent entry or a
            # shortfall seen before (a stale read elsewhere is refused by the venue and retried, never lost).
            held = self._each(lambda p: venue.token_balance(p.token_id, refresh=self.refresh_balance(p, now)),
                              [p for p, _ in left])
            sells: list[tuple[Position, Decimal, Decimal, MarketInfo]] = []
            for (pos, book), h in zip(left, held, strict=True):
                info = infos[pos.id]
                if self._failed(pos, h, "balance") or not isinstance(info, MarketInfo) or isinstance(h, VenueError):
                    continue
                plan = self._plan_sell(pos, info, book, now, h)
                if plan is not None and pos.trading:
                    sells.append((pos, plan[0], plan[1], info))
            if not sells:
                return
            for pos, size, floor, _ in sells:
                apply(pos, OrderIntent(Role.EXIT, floor, size, rung=pos.exit_rung), now)
            save()
            crashpoint("before_sell")

            def record(ids: list[str | None]) -> None:   # every id on disk before any order leaves
                for (pos, *_), order_id in zip(sells, ids, strict=True):
                    if order_id:
                        apply(pos, OrderSigned(order_id, self.time()), now)
                save()

            orders = [SellOrder(p.token_id, size, floor, info) for p, size, floor, info in sells]
            answers = venue.market_sell_many(orders, before_post=record)
            log.info("Mass exit: %d sells sent together", len(sells))
            for (pos, _, floor, _), answer in zip(sells, answers, strict=True):
                self._sell_answer(pos, answer, floor, now)
        finally:
            self.save = save
            save()

    def _retire_all(self, positions: list[Position], now: datetime) -> None:
        """Cancel the TPs of ``positions`` (every rung) in one request, then read each order (concurrently) and
        book what it filled. A TP not retired stays live (tried again next loop)."""
        venue = self.trader.venue
        pairs = [(p, order_id) for p in positions for order_id in p.tp_order_ids]
        try:
            result = venue.cancel_many([order_id for _, order_id in pairs])
        except VenueError as exc:
            log.warning("Cancelling %d TPs in one request failed (%s); their exits go on next loop", len(pairs), exc)
            return
        states = self._each(lambda pair: venue.get_order(pair[1]), pairs)
        for (pos, order_id), state in zip(pairs, states, strict=True):
            if self._failed(pos, state, "TP order") or not pos.trading:
                continue
            st = state if isinstance(state, OrderState) else None
            self._tp_retired(pos, order_id, result, lambda st=st: st, now)   # type: ignore[misc]

    @staticmethod
    def _failed(pos: Position, outcome: object, what: str) -> bool:
        if isinstance(outcome, VenueError):
            log.warning("Exit of %s: reading its %s failed (%s); retrying next loop", pos.id, what, outcome)
            return True
        return False

    def refresh_balance(self, pos: Position, now: datetime) -> bool:
        """Whether the exit's balance read refreshes the venue's cache first (``needs_refresh``, or after a sell
        refused for balance)."""
        return needs_refresh(pos, now) or pos.id in self._refused_for_balance

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




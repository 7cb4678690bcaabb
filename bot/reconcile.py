"""Start-up reconciliation: before trading, every stored position is checked against the venue.

- an entry left ``opening`` by a crash is resolved by its saved order id (never by the token balance);
- a pending TP or exit sell is looked up by its saved id; a TP that filled while the bot was down closes
  (or shrinks) the position, in ``open`` and ``exiting`` positions alike;
- before any "shares missing" verdict every order of the position is looked up again by id (an order the
  venue no longer answers for by its trades); shares still missing left the account outside the bot: the
  position shrinks to what the account holds (unless a fill of it is not settled yet: then it waits);
- a TP that vanished is placed again; an ``exiting`` position resumes in the first loop;
- a position that needed attention and now agrees with the venue goes back to being managed;
- open orders and token balances that no position accounts for are reported, never adopted (open
  orders are cancelled only if configured).
Each position is checked on its own: one that cannot be checked goes to ``needs_attention`` with the
reason (or, on a temporary error, is checked again next loop) and never blocks the others.
An SL or time exit crossed while the bot was down fires in the first loop, before any new trade.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.errors import MalformedResponse, OrderRejected, TemporaryVenueError
from bot.exits import book_gone_tp, book_own_orders, book_tp, resolve_exit_sell, shrink_to, tp_limit
from bot.ladder import tps_missing
from bot.lifecycle import (
    AgreesAgain,
    AttentionNeeded,
    NothingLeft,
    OrderNotPlaced,
    TpResting,
    apply,
    unconfirmed,
)
from bot.money import BALANCE_TOLERANCE, SIZE_QUANTUM, fmt, is_dust
from bot.orders import RecordState, Role
from bot.outcomes import look_up
from bot.position_manager import BotState, ExitMode, Position, PositionState
from bot.venue.base import OrderState, OrderStatus, Venue

log = logging.getLogger("bot.reconcile")

#: Tokens of closed positions whose balances start-up looks at (the most recent ones).
UNACCOUNTED_TOKENS_CHECKED = 50


@dataclass
class ReconcileReport:
    """What start-up reconciliation found, in counts and notes."""

    checked: int = 0
    adopted_entries: int = 0
    unfilled_entries: int = 0
    tp_filled: int = 0
    tp_rearmed: int = 0
    needs_attention: int = 0
    restored: int = 0
    sales_recovered: int = 0
    tp_adopted: int = 0
    shrunk: list[str] = field(default_factory=list)
    unknown_orders: list[str] = field(default_factory=list)
    cancelled_unknown: int = 0
    unaccounted: list[str] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"Reconciled {self.checked} position(s): {self.adopted_entries} entries adopted, "
                f"{self.unfilled_entries} unfilled, {self.tp_filled} TP filled while down, "
                f"{self.tp_rearmed} TP re-armed, {self.tp_adopted} TP adopted, {self.sales_recovered} exit sales "
                f"recovered, {self.needs_attention} need attention, {self.restored} back under management, "
                f"{len(self.unknown_orders)} unknown open order(s)"
                + (f" ({self.cancelled_unknown} cancelled)" if self.cancelled_unknown else "")
                + (f", {len(self.unaccounted)} token balance(s) no position accounts for (left alone)"
                   if self.unaccounted else "")
                + (f", {len(self.shrunk)} position(s) shrunk to what the account holds (shares left outside the bot:"
                   f" {'; '.join(self.shrunk)})" if self.shrunk else "")
                + (f", {len(self.retry)} to check again" if self.retry else ""))

    @property
    def found_anything(self) -> bool:
        return bool(self.adopted_entries or self.unfilled_entries or self.tp_filled or self.tp_rearmed
                    or self.tp_adopted or self.sales_recovered or self.needs_attention or self.unknown_orders
                    or self.unaccounted or self.restored or self.shrunk)


def reconcile(state: BotState, venue: Venue, now: datetime, arm_tp: Callable[[Position], None],
              finish_opening: Callable[[Position], None], cancel_unknown: bool = False,
              only: set[str] | None = None) -> ReconcileReport:
    """Check every active position (or those in ``only``) against the venue. ``arm_tp(pos)`` places a TP
    (or falls back), ``finish_opening(pos)`` resolves an entry by its saved order id."""
    report = ReconcileReport()
    open_orders = {o.order_id: o for o in venue.open_orders()}
    for pos in state.active_positions():
        if only is not None and pos.id not in only:
            continue
        report.checked += 1
        try:
            _reconcile_position(pos, venue, open_orders, now, report, arm_tp, finish_opening)
        except TemporaryVenueError as exc:
            log.warning("Position %s could not be checked yet (%s); checking it again next loop", pos.id, exc)
            report.retry.append(pos.id)
        except (OrderRejected, MalformedResponse) as exc:
            note = f"could not be checked against the venue at start-up: {exc}"
            log.error("Position %s needs attention: %s", pos.id, note)
            apply(pos, AttentionNeeded(note), now)
            report.needs_attention += 1
    if only is None:
        _report_unknown_orders(state, venue, open_orders, report, cancel_unknown)
        _report_unaccounted_balances(state, venue, report)
    return report


def _reconcile_position(pos: Position, venue: Venue, open_orders: dict[str, OrderState], now: datetime,
                        report: ReconcileReport, arm_tp, finish_opening) -> None:
    if pos.status == PositionState.OPENING:
        finish_opening(pos)
        if pos.status == PositionState.OPEN:
            report.adopted_entries += 1
        elif pos.status == PositionState.CLOSED:
            report.unfilled_entries += 1
        return
    if pos.status in (PositionState.HELD, PositionState.SETTLING):
        return   # (a settling position's trades are checked by the loop's settle phase)
    pending = pos.pending
    if pending is not None and pending.role == Role.EXIT and pending.state == RecordState.SENT:
        if resolve_exit_sell(pos, venue, now):
            report.sales_recovered += 1
    elif pending is not None and pending.role == Role.EXIT:
        resolve_exit_sell(pos, venue, now)
    if pending is not None and pending.role == Role.TP:
        _adopt_pending_tp(pos, venue, now, report)
    for order_id in pos.tp_order_ids:
        if pos.trading:
            _check_tp(pos, order_id, venue, open_orders, now, report)
    if not pos.trading:
        return
    if not is_dust(pos.shares):
        held = venue.token_balance(pos.token_id, refresh=True)
        if held + BALANCE_TOLERANCE < pos.shares:
            # The open-orders snapshot is seconds old: a TP may have filled since. Ask about every order of
            # the position by id before any verdict.
            checked = book_own_orders(pos, venue, now)
            if pos.trading and not is_dust(pos.shares) and held + BALANCE_TOLERANCE < pos.shares:
                if unconfirmed(pos):   # a fill that may still fail: the loop's settle phase decides first
                    log.warning("Position %s: the account holds %s of its %s shares while a fill of it is not "
                                "settled yet; waiting for the venue's trades", pos.id, fmt(held), fmt(pos.shares))
                    return
                venue.get_market_info(pos.token_id, pos.condition_id)   # (a token the venue does not know: a person)
                if pos.status == PositionState.NEEDS_ATTENTION:
                    apply(pos, AgreesAgain(), now)
                    report.restored += 1
                report.shrunk.append(f"{pos.id}: -{fmt(pos.shares - held)}")
                shrink_to(pos, held, f"found at start-up; checked: {'; '.join(checked) or 'no orders of its own'}",
                          now)
                if not pos.trading:
                    return
        elif held > pos.shares + SIZE_QUANTUM:
            report.unaccounted.append(
                f"{fmt(held - pos.shares)} shares of {pos.token_id[:12]} beyond position {pos.id}")
    if not pos.trading:
        return
    if pos.status == PositionState.NEEDS_ATTENTION:
        apply(pos, AgreesAgain(), now)
        report.restored += 1
        log.warning("Position %s agrees with the venue again: back to %s", pos.id, pos.status.value)
    if is_dust(pos.shares) and pos.status == PositionState.OPEN:
        apply(pos, NothingLeft(), now)
        log.info("TP of %s filled while the bot was down: closed, pnl=$%s", pos.id, fmt(pos.realized_pnl, 2))
        return
    if (pos.status == PositionState.OPEN and pos.exit_mode == ExitMode.LIMIT_ORDERS and pos.pending is None
            and tps_missing(pos)):
        report.tp_rearmed += 1
        arm_tp(pos)


def _adopt_pending_tp(pos: Position, venue: Venue, now: datetime, report: ReconcileReport) -> None:
    """A crash between sending the TP and recording its answer: its id was saved before it was sent, so
    the venue says whether it exists (resting, or filled while the bot was down); never place a second."""
    rec = pos.pending
    assert rec is not None
    out = look_up(venue, rec.order_id, pos.token_id, rec.sent_at or 0.0, now.timestamp(), marketable=False) \
        if rec.order_id and rec.state == RecordState.SENT else None
    if out is not None and out.exists:   # (an order the venue forgot is known by its trades: FACTS.md 0.3)
        order_id = rec.order_id or ""
        apply(pos, TpResting(order_id), now)
        report.tp_adopted += 1
        log.warning("TP %s of %s was sent before a crash: adopted", order_id[:18], pos.id)
        if not out.resting:   # filled (or cancelled) since: the loop's next check of it must not place another
            book_gone_tp(pos, venue, order_id, now)
    else:
        apply(pos, OrderNotPlaced("never placed"), now)
        log.info("TP of %s was never placed", pos.id)


def _check_tp(pos: Position, order_id: str, venue: Venue, open_orders: dict[str, OrderState], now: datetime,
              report: ReconcileReport) -> None:
    listed = open_orders.get(order_id)
    if listed is not None:
        book_tp(pos, venue, order_id, listed.filled_size, listed.price or tp_limit(pos, order_id), now)
        return
    state = venue.get_order(order_id)
    resting = state is not None and state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED,
                                                     OrderStatus.PENDING)
    before = pos.tp_filled_shares
    if state is None:   # not live any more (filled, cancelled): its trades say what it filled (FACTS.md 0.3)
        book_gone_tp(pos, venue, order_id, now)
    else:
        book_tp(pos, venue, order_id, state.filled_size, state.price or tp_limit(pos, order_id), now,
                final=not resting)
    if pos.tp_filled_shares > before:
        report.tp_filled += 1
    if not pos.trading:
        log.info("TP of %s filled while the bot was down: closed, pnl=$%s", pos.id, fmt(pos.realized_pnl, 2))


def _report_unknown_orders(state: BotState, venue: Venue, open_orders: dict[str, OrderState],
                           report: ReconcileReport, cancel_unknown: bool) -> None:
    for order_id, order in open_orders.items():
        if state.is_known_order(order_id):   # closed positions' orders: the history's order-id index
            continue
        report.unknown_orders.append(order_id)
        if cancel_unknown:
            if venue.cancel(order_id).was_canceled(order_id):
                report.cancelled_unknown += 1
        else:
            log.warning("Open order %s (%s %s @ %s on %s) belongs to no position; left alone "
                        "(set trading.cancel_unknown_orders to cancel such orders)", order_id, order.side,
                        fmt(order.remaining), fmt(order.price), order.token_id[:12])


def _report_unaccounted_balances(state: BotState, venue: Venue, report: ReconcileReport) -> None:
    """Shares on tokens the bot traded that no active position accounts for: the user's own, or left by a
    crash in an older version. Reported, never adopted: the bot only ever owns what it bought."""
    active = {p.token_id for p in state.active_positions()}
    recent: list[str] = []
    history = state.history.recent_tokens(UNACCOUNTED_TOKENS_CHECKED) if state.history is not None else []
    for token in [p.token_id for p in reversed(state.positions)] + history:   # most recently closed first
        if token not in active and token not in recent:
            recent.append(token)
        if len(recent) >= UNACCOUNTED_TOKENS_CHECKED:
            break
    for token in recent:
        try:
            held = venue.token_balance(token)
        except (TemporaryVenueError, OrderRejected, MalformedResponse) as exc:
            log.debug("Balance of %s not read: %s", token[:12], exc)
            continue
        if held >= SIZE_QUANTUM:
            report.unaccounted.append(f"{fmt(held)} shares of {token[:12]}")
            log.warning("The account holds %s shares of token %s that no position accounts for; the bot leaves "
                        "them alone (they are not its own)", fmt(held), token)

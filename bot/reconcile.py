"""Start-up reconciliation: before trading, every stored position is checked against the venue.

- an entry left ``opening`` by a crash is adopted from the account's balance, or closed as unfilled;
- a TP that filled while the bot was down closes (or shrinks) the position;
- a TP that vanished is placed again; an ``exiting`` position resumes in the first loop;
- an account holding fewer shares than a position expects goes to ``needs_attention``;
- open orders on the account that no position knows are reported (cancelled only if configured).
An SL or time exit crossed while the bot was down fires in the first loop, before any new trade.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from bot.exits import book_tp_fill, recover_lost_sale
from bot.money import FEE_SHARE_TOLERANCE, fmt, is_dust, round_shares
from bot.position_manager import BotState, CloseReason, ExitMode, Position, PositionState, transition
from bot.venue.base import OrderStatus, Venue

log = logging.getLogger("bot.reconcile")


@dataclass
class ReconcileReport:
    """What start-up reconciliation found, in counts and notes."""

    checked: int = 0
    adopted_entries: int = 0
    unfilled_entries: int = 0
    tp_filled: int = 0
    tp_rearmed: int = 0
    needs_attention: int = 0
    sales_recovered: int = 0
    tp_adopted: int = 0
    unknown_orders: list[str] = field(default_factory=list)
    cancelled_unknown: int = 0

    def summary(self) -> str:
        return (f"Reconciled {self.checked} position(s): {self.adopted_entries} entries adopted, "
                f"{self.unfilled_entries} unfilled, {self.tp_filled} TP filled while down, "
                f"{self.tp_rearmed} TP re-armed, {self.tp_adopted} TP adopted, {self.sales_recovered} exit sales "
                "recovered, "
                f"{self.needs_attention} need attention, "
                f"{len(self.unknown_orders)} unknown open order(s)"
                + (f" ({self.cancelled_unknown} cancelled)" if self.cancelled_unknown else ""))

    @property
    def found_anything(self) -> bool:
        return bool(self.adopted_entries or self.unfilled_entries or self.tp_filled or self.tp_rearmed
                    or self.tp_adopted or self.sales_recovered or self.needs_attention or self.unknown_orders)


def reconcile(state: BotState, venue: Venue, now: datetime, arm_tp, cancel_unknown: bool = False) -> ReconcileReport:
    """Check every active position against the venue; ``arm_tp(pos)`` places a TP (or falls back)."""
    report = ReconcileReport()
    open_orders = {o.order_id: o for o in venue.open_orders()}
    for pos in state.active_positions():
        report.checked += 1
        if pos.status == PositionState.OPENING:
            resolve_opening(pos, venue, now, report, state.known_order_ids())
        if recover_lost_sale(pos, venue, state.known_order_ids()):
            report.sales_recovered += 1
        if pos.status == PositionState.OPEN and pos.exit_mode == ExitMode.LIMIT_ORDERS:
            _check_tp(pos, venue, open_orders, now, report, arm_tp)
        if pos.status in (PositionState.OPEN, PositionState.EXITING) and not is_dust(pos.shares):
            held = venue.token_balance(pos.token_id, refresh=True)
            if held + pos.shares * FEE_SHARE_TOLERANCE < pos.shares:
                note = f"account holds {fmt(held)} shares but the position expects {fmt(pos.shares)} (found at start-up)"
                log.error("Position %s needs attention: %s", pos.id, note)
                transition(pos, PositionState.NEEDS_ATTENTION, now, note=note)
                report.needs_attention += 1
    known = {p.tp_order_id for p in state.positions if p.tp_order_id}
    for order_id, order in open_orders.items():
        if order_id in known:
            continue
        report.unknown_orders.append(order_id)
        if cancel_unknown:
            if venue.cancel(order_id).was_canceled(order_id):
                report.cancelled_unknown += 1
        else:
            log.warning("Open order %s (%s %s @ %s on %s) belongs to no position; left alone "
                        "(set trading.cancel_unknown_orders to cancel such orders)", order_id, order.side,
                        fmt(order.remaining), fmt(order.price), order.token_id[:12])
    return report


def resolve_opening(pos: Position, venue: Venue, now: datetime, report: ReconcileReport | None = None,
                    known: set[str] = frozenset()) -> None:
    """An entry whose outcome was not recorded (crash, timeout): the trade history says whether the buy
    happened (the balance cache may lag a fresh fill, the trades do not). Buys that ``known`` ids account
    for (an earlier position on the same token) are not this entry's."""
    fills = [f for f in venue.recent_fills(pos.token_id, pos.opened_at.timestamp(), "BUY")
             if f.order_id not in known]
    bought = sum((f.filled_shares for f in fills), Decimal(0))
    cost = sum((f.usdc for f in fills), Decimal(0))
    if len(fills) == 1:
        pos.entry_order_id = fills[0].order_id
    held = round_shares(venue.token_balance(pos.token_id, refresh=True))
    if bought <= 0 and held <= 0:
        transition(pos, PositionState.CLOSED, now, reason=CloseReason.ENTRY_UNFILLED)
        pos.pending = None
        if report:
            report.unfilled_entries += 1
        log.info("Entry of %s never filled: closed", pos.id)
        return
    shares = round_shares(min(held, bought)) if bought > 0 and held > 0 else round_shares(max(held, bought))
    pos.shares = pos.entry_shares = shares
    if bought > 0:
        pos.entry_cost = cost.quantize(Decimal("0.000001"))
        pos.entry_price = (cost / bought).quantize(Decimal("0.000001"))
    else:  # no trade visible yet: the worst price it could have paid is a conservative cost basis
        pos.entry_price = Decimal(str((pos.pending or {}).get("max_price", "0")))
        pos.entry_cost = (shares * pos.entry_price).quantize(Decimal("0.000001"))
    pos.pending = None
    transition(pos, PositionState.OPEN, now)
    if report:
        report.adopted_entries += 1
    log.warning("Entry of %s filled but was not recorded (crash or timeout): adopted %s shares @ %s", pos.id,
                fmt(shares), fmt(pos.entry_price, 4))


def _check_tp(pos: Position, venue: Venue, open_orders, now: datetime, report: ReconcileReport, arm_tp) -> None:
    pending = pos.pending or {}
    if not pos.tp_order_id and pending.get("kind") == "tp":
        # A crash between sending the TP and recording its answer: its id was saved before it was sent, so
        # the venue says whether it exists (resting, or filled while the bot was down); never place a second.
        pos.pending = None
        order_id = pending.get("order_id")
        if order_id and venue.get_order(order_id) is not None:
            pos.tp_order_id = order_id
            report.tp_adopted += 1
            log.warning("TP %s of %s was sent before a crash: adopted", order_id[:18], pos.id)
    listed = open_orders.get(pos.tp_order_id) if pos.tp_order_id else None
    if listed is not None:
        book_tp_fill(pos, listed.filled_size, listed.price or pos.tp_price)
        return
    state = venue.get_order(pos.tp_order_id) if pos.tp_order_id else None
    if state is not None:
        if book_tp_fill(pos, state.filled_size, state.price or pos.tp_price):
            report.tp_filled += 1
        if state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            return
    if is_dust(pos.shares):
        pos.tp_order_id = None
        transition(pos, PositionState.CLOSED, now, reason=CloseReason.TAKE_PROFIT)
        log.info("TP of %s filled while the bot was down: closed, pnl=$%s", pos.id, fmt(pos.realized_pnl, 2))
        return
    pos.tp_order_id = None
    report.tp_rearmed += 1
    arm_tp(pos)

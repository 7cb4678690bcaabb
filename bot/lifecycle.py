"""A position's whole life in one table: what the bot learns (events), and what each does to a position
in each state (the next state and the bookkeeping). Every change of a position goes through ``apply``.

Read top to bottom, ``TABLE`` is the life of a position:

    opening --EntryFilled--> open --ExitStarted--> exiting --SellFilled (nothing left)--> closed
    open --TpFilled (nothing left)--> closed (take_profit)
    open --ExitStarted (a take-profit ladder's rung)--> exiting --RungFilled--> open (the rest stays protected)
    (a close whose fills the venue has not settled yet goes to ``settling`` instead; there FillsChecked
     closes it once every trade settled, or, when one FAILED, takes the shares back: exiting (sell again)
     or open (the TP's fill failed))
    open | exiting --DustHeld--> held_to_resolution --MarketResolved--> closed
    any active --AttentionNeeded--> needs_attention --AgreesAgain--> open | exiting
                                                   --ClosedByHand--> closed (manual)

Handlers (the two exit modes in bot/manage.py, the exit protocol in bot/exits.py, start-up reconciliation
in bot/reconcile.py) talk to the venue and turn its answers into these events; they never edit a position.
Why a position closed (take_profit, stop_loss, time_exit, market_resolved, manual, entry_unfilled) is kept
apart from its state.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.errors import BotError
from bot.ladder import rung_exit_done, rungs_filled
from bot.money import SHARE_EPSILON, is_dust
from bot.orders import OPEN_STATES, OrderRecord, RecordState, Role
from bot.position_manager import CloseReason, ExitMode, Position, PositionState, Rung

S = PositionState


class IllegalTransition(BotError):
    """An event the table has no row for in the position's state."""


# -- events: what the bot learns -------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderIntent:
    """An order is about to be signed (saved first: a crash now means nothing was sent)."""
    role: Role
    price: Decimal | None = None
    size: Decimal | None = None
    rung: int | None = None   # the take-profit ladder's rung the sell is for


@dataclass(frozen=True)
class OrderSigned:
    """The pending order is signed: its id (the EIP-712 hash the venue returns) is saved before it leaves."""
    order_id: str
    sent_at: float


@dataclass(frozen=True)
class OrderNotPlaced:
    """The pending order was refused, or the venue never got it: nothing happened."""
    why: str


@dataclass(frozen=True)
class EntryFilled:
    """The buy is known: ``shares`` received for ``cost`` USDC plus ``fee`` USDC (CLOB V2: the fee is paid in USDC
    on top); ``confirmed``: its trades are settled (else the settle check confirms or un-books it)."""
    order_id: str
    shares: Decimal
    cost: Decimal
    fee: Decimal
    price: Decimal
    tp_price: Decimal
    sl_price: Decimal
    confirmed: bool = True
    ladder: tuple[Rung, ...] = ()   # a take-profit ladder's rungs (bot/ladder.py; tp_price is the last one's)
    ladder_notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntryUnfilled:
    why: str


@dataclass(frozen=True)
class TpResting:
    """The TP is on the book (what crossed at once, as a taker, is in ``filled``/``usdc``/``fee``)."""
    order_id: str
    filled: Decimal = Decimal(0)
    usdc: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    confirmed: bool = True


@dataclass(frozen=True)
class TpFilled:
    """TP ``order_id`` has filled ``filled`` shares in all, bringing ``usdc`` (fee ``fee``); ``final``: it is
    no longer on the book (filled, cancelled, or gone)."""
    order_id: str
    filled: Decimal
    usdc: Decimal
    fee: Decimal = Decimal(0)
    final: bool = False
    source: str | None = None   # how the bot learned it: push (the user channel) or poll (a REST read)
    confirmed: bool = True
    failed: Decimal = Decimal(0)   # matched shares whose trades FAILED (never booked; not to be booked again)


@dataclass(frozen=True)
class FellBack:
    """Concurrent orders failed (or the user converted it): the position is monitored from now on."""
    why: str


@dataclass(frozen=True)
class ExitStarted:
    """``source``: what showed the trigger (``push``: the market channel, ``poll``: a REST read), ``seen_at``
    when (clock seconds); the delay from then to the exit's first order is recorded when it is signed."""
    reason: CloseReason
    bid: Decimal | None
    at: datetime
    source: str | None = None
    seen_at: float | None = None
    rung: int | None = None   # a take-profit ladder's sale up to this rung (the rest is kept); None: everything


@dataclass(frozen=True)
class ExitReanchored:
    """An exit held below its floor re-anchors at ``bid`` (SL crossed, holding time over, another step down)."""
    reason: CloseReason
    bid: Decimal
    time_over: bool = False


@dataclass(frozen=True)
class ExitBackoff:
    """An exit attempt did not sell everything: try again at ``retry_at`` (unix seconds)."""
    why: str
    retry_at: float


@dataclass(frozen=True)
class BalanceShort:
    """The account showed fewer shares than the position expects; counted before any verdict."""


@dataclass(frozen=True)
class SellFilled:
    order_id: str
    shares: Decimal
    usdc: Decimal
    fee: Decimal = Decimal(0)
    confirmed: bool = True


@dataclass(frozen=True)
class FillsChecked:
    """The venue's trades for order ``order_id``: ``shares``/``usdc``/``fee`` of those not FAILED, ``failed`` shares
    of those that FAILED, ``confirmed`` when all the others are settled. A failed trade takes back what it booked
    (FACTS.md Part 0, 0.2: a match is not a settlement)."""
    order_id: str
    shares: Decimal
    usdc: Decimal
    fee: Decimal
    failed: Decimal
    confirmed: bool


@dataclass(frozen=True)
class SharesLeft:
    """``shares`` left the account outside the bot (sold by hand, moved): booked at their cost, so they add
    neither profit nor loss (what they brought went to the account, not through the bot)."""
    shares: Decimal
    note: str


@dataclass(frozen=True)
class NothingLeft:
    """Everything is sold: the position closes (why: as its exit, or take_profit)."""


@dataclass(frozen=True)
class DustHeld:
    """What is left is below every order minimum (5 shares and $1): held to the market's resolution."""


@dataclass(frozen=True)
class BidSeen:
    """The last bid of a position held to resolution (its value, shown in ``status``)."""
    bid: Decimal


@dataclass(frozen=True)
class StopRaised:
    """A new highest bid since entry (saved: a restart resumes from it); with ``stop``, the stop-loss moves up to it
    (bot/stops.py: trailing or break-even, ``why``). A stop never moves down."""
    high_bid: Decimal
    stop: Decimal | None = None
    why: str | None = None


@dataclass(frozen=True)
class RungFilled:
    """Rung ``rung`` of the take-profit ladder has sold its shares (a resting rung filled, or a monitored sale
    up to it went through): a sale for it returns the position to ``open``, the rest still protected."""
    rung: int


@dataclass(frozen=True)
class MarketResolved:
    payout: Decimal


@dataclass(frozen=True)
class AttentionNeeded:
    note: str


@dataclass(frozen=True)
class AgreesAgain:
    """A position that needed attention agrees with the venue again: back under management."""


@dataclass(frozen=True)
class ClosedByHand:
    """A person closes a position that needs attention (its shares are gone)."""


@dataclass(frozen=True)
class TpChecked:
    at: datetime


@dataclass(frozen=True)
class CancelRaced:
    """The TP's cancel came back "not canceled": it may have filled meanwhile (a measurement for the report)."""


@dataclass(frozen=True)
class ExitPricesSet:
    """A position from an older file without TP/SL prices gets them from the config."""
    tp_price: Decimal
    sl_price: Decimal


@dataclass(frozen=True)
class VenueRecorded:
    """Where the position lives (paper or live, and the wallet), for a position that did not say."""
    venue: str
    wallet: str | None


Event = (OrderIntent | OrderSigned | OrderNotPlaced | EntryFilled | EntryUnfilled | TpResting | TpFilled | FellBack
         | ExitStarted | ExitReanchored | ExitBackoff | BalanceShort | SellFilled | FillsChecked | SharesLeft
         | NothingLeft | DustHeld | BidSeen | StopRaised | RungFilled | MarketResolved | AttentionNeeded | AgreesAgain
         | ClosedByHand | TpChecked
         | CancelRaced | ExitPricesSet | VenueRecorded)


# -- actions: the bookkeeping each event does (records, never quantities directly) --------------------------

def _pending(pos: Position) -> OrderRecord:
    rec = pos.pending
    if rec is None:
        raise IllegalTransition(f"position {pos.id}: no pending order to update")
    return rec


def _intent(pos: Position, e: OrderIntent, now: datetime) -> None:
    if pos.pending is not None:
        raise IllegalTransition(f"position {pos.id}: an order is still pending ({pos.pending.role.value})")
    pos.orders = [*pos.orders, OrderRecord(role=e.role, price=e.price, size=e.size, rung=e.rung)]


def _signed(pos: Position, e: OrderSigned, now: datetime) -> None:
    rec = _pending(pos)
    rec.order_id, rec.sent_at, rec.state = e.order_id, e.sent_at, RecordState.SENT
    pos.orders = list(pos.orders)
    seen_at = pos.metrics.get("trigger_seen_at")
    if rec.role == Role.EXIT and seen_at is not None and "trigger_delay_ms" not in pos.metrics:
        pos.metrics = {**pos.metrics, "trigger_delay_ms": round(max(0.0, e.sent_at - float(seen_at)) * 1000, 1)}


def _not_placed(pos: Position, e: OrderNotPlaced, now: datetime) -> None:
    _pending(pos).state = RecordState.FAILED
    pos.orders = list(pos.orders)


def _entry_filled(pos: Position, e: EntryFilled, now: datetime) -> None:
    rec = pos.pending if pos.pending is not None and pos.pending.role == Role.ENTRY else None
    if rec is None:
        rec = OrderRecord(role=Role.ENTRY)
        pos.orders = [*pos.orders, rec]
    rec.order_id, rec.state, rec.filled, rec.usdc, rec.fee = e.order_id, RecordState.DONE, e.shares, e.cost, e.fee
    rec.fee_in, rec.confirmed = "usdc", e.confirmed
    pos.orders = list(pos.orders)
    pos.entry_price = e.price.quantize(Decimal("0.000001"))
    pos.tp_price, pos.sl_price = e.tp_price, e.sl_price
    if e.ladder:
        pos.tp_ladder, pos.ladder_notes = list(e.ladder), list(e.ladder_notes)


def _entry_unfilled(pos: Position, e: EntryUnfilled, now: datetime) -> CloseReason:
    if pos.pending is not None:
        pos.pending.state = RecordState.FAILED
        pos.orders = list(pos.orders)
    return CloseReason.ENTRY_UNFILLED


def _tp_resting(pos: Position, e: TpResting, now: datetime) -> CloseReason | None:
    """(A TP found resting for a position that is exiting or needs a person is recorded; the exit cancels it.)"""
    rec = pos.pending if pos.pending is not None and pos.pending.role == Role.TP else pos.record(e.order_id)
    if rec is None:
        rec = OrderRecord(role=Role.TP, price=pos.tp_price)
        pos.orders = [*pos.orders, rec]
    rec.order_id, rec.state = e.order_id, RecordState.LIVE
    if e.filled > rec.filled:
        rec.confirmed = e.confirmed
    rec.filled, rec.usdc, rec.fee = max(rec.filled, e.filled), max(rec.usdc, e.usdc), max(rec.fee, e.fee)
    if rec.size is not None and rec.filled + rec.failed >= rec.size - SHARE_EPSILON:
        rec.state = RecordState.DONE   # it took its whole size at once, as a taker: nothing of it rests
    pos.orders = list(pos.orders)
    return CloseReason.TAKE_PROFIT if is_dust(pos.shares) and pos.status == S.OPEN else None


def _tp_filled(pos: Position, e: TpFilled, now: datetime) -> CloseReason | None:
    rec = pos.record(e.order_id)
    if rec is None:
        rec = OrderRecord(role=Role.TP, order_id=e.order_id, price=pos.tp_price)
        pos.orders = [*pos.orders, rec]
    if e.filled >= rec.filled:   # fills only grow here (only FillsChecked takes back what FAILED)
        if e.filled > rec.filled:
            rec.confirmed = e.confirmed
        rec.filled, rec.usdc, rec.fee = e.filled, e.usdc, e.fee
        rec.failed = max(rec.failed, e.failed)   # (what is booked does not count them: e.filled covers it)
    if e.final:
        rec.state = RecordState.DONE
    pos.orders = list(pos.orders)
    if e.source is not None and pos.status == S.OPEN:   # (an exit's own trigger is the exit's)
        pos.metrics = {**pos.metrics, "trigger_source": e.source}
    if is_dust(pos.shares) and pos.status != S.NEEDS_ATTENTION:
        return CloseReason.TAKE_PROFIT   # the TP took it all (also when it won the race against an exit)
    return None


def _fell_back(pos: Position, e: FellBack, now: datetime) -> None:
    pos.exit_mode = ExitMode.MONITOR
    pos.fallback_reason = e.why


def _exit_started(pos: Position, e: ExitStarted, now: datetime) -> None:
    pos.close_reason, pos.exit_rung = e.reason, e.rung
    pos.trigger_bid, pos.retry_at, pos.balance_shortfalls = e.bid, None, 0
    pos.metrics = {**pos.metrics, "trigger_bid": str(e.bid) if e.bid is not None else None,
                   "trigger_at": e.at.isoformat(), "trigger_reason": e.reason.value}
    if e.source is not None:
        pos.metrics = {**pos.metrics, "trigger_source": e.source, "trigger_seen_at": e.seen_at}


def _reanchored(pos: Position, e: ExitReanchored, now: datetime) -> None:
    pos.close_reason = e.reason
    if e.reason != CloseReason.TAKE_PROFIT or e.time_over:
        pos.exit_rung = None   # a stop-loss or the holding time sells everything
    pos.trigger_bid, pos.retry_at = e.bid, None
    pos.time_reanchored = pos.time_reanchored or e.time_over
    pos.metrics = {**pos.metrics, "exit_reanchored": int(pos.metrics.get("exit_reanchored", 0)) + 1}


def _backoff(pos: Position, e: ExitBackoff, now: datetime) -> None:
    tries = int(pos.metrics.get("exit_retries", 0)) + 1
    pos.retry_at = e.retry_at
    pos.metrics = {**pos.metrics, "exit_retries": tries,
                   f"exit_{e.why}": int(pos.metrics.get(f"exit_{e.why}", 0)) + 1}


def _short(pos: Position, e: BalanceShort, now: datetime) -> None:
    pos.balance_shortfalls += 1


def _sell_filled(pos: Position, e: SellFilled, now: datetime) -> CloseReason | None:
    rec = pos.record(e.order_id) if e.order_id else None
    if rec is None:
        rec = pos.pending if pos.pending is not None and pos.pending.role == Role.EXIT else None
    if rec is None:
        rec = OrderRecord(role=Role.EXIT)
        pos.orders = [*pos.orders, rec]
    rec.order_id = e.order_id or rec.order_id
    rec.state, rec.filled, rec.usdc, rec.fee = RecordState.DONE, e.shares, e.usdc, e.fee
    rec.confirmed = e.confirmed
    pos.orders = list(pos.orders)
    return (pos.close_reason or CloseReason.MANUAL) if is_dust(pos.shares) else None


def _fills_checked(pos: Position, e: FillsChecked, now: datetime) -> CloseReason | PositionState | None:
    rec = pos.record(e.order_id)
    if rec is None:
        return None
    failed_now = e.failed > rec.failed + SHARE_EPSILON
    if failed_now or (e.confirmed and abs(e.shares - rec.filled) <= SHARE_EPSILON):
        # The trades are the truth: what FAILED is taken back, and a settled fill takes their exact amounts
        # (the venue floors each trade's fee; an answer's average price only approximates them).
        rec.filled, rec.usdc, rec.fee, rec.failed = e.shares, e.usdc, e.fee, max(rec.failed, e.failed)
        rec.confirmed = e.confirmed
        pos.orders = list(pos.orders)
    if pos.sold_shares > pos.entry_shares + SHARE_EPSILON:
        pos.attention_reason = (f"the venue's trades show {pos.entry_shares} shares bought but {pos.sold_shares} "
                                f"sold (order {e.order_id[:18]}): fills beyond what the account held")
        return S.NEEDS_ATTENTION
    if failed_now:
        pos.metrics = {**pos.metrics, "failed_fills": int(pos.metrics.get("failed_fills", 0)) + 1}
        if rec.role == Role.ENTRY and pos.entry_shares <= 0 and pos.sold_shares <= 0 and pos.live_tp is None:
            return CloseReason.ENTRY_UNFILLED   # a buy that never settled: nothing was ever owned
        if pos.status in (S.SETTLING, S.HELD) and not is_dust(pos.shares):
            # Shares came back: sold again (an exit's sale failed), or protected again (a TP's fill failed).
            if rec.role == Role.TP and pos.close_reason == CloseReason.TAKE_PROFIT:
                pos.close_reason = None
            pos.retry_at = None
            return S.EXITING if pos.close_reason else S.OPEN
    if pos.status == S.SETTLING and is_dust(pos.shares) and not unconfirmed(pos):
        return pos.close_reason or CloseReason.TAKE_PROFIT
    return None


def _shares_left(pos: Position, e: SharesLeft, now: datetime) -> CloseReason | None:
    cost = pos.entry_cost / pos.entry_shares * e.shares if pos.entry_shares > 0 else Decimal(0)
    pos.orders = [*pos.orders, OrderRecord(role=Role.OUTSIDE, state=RecordState.DONE, filled=e.shares,
                                           usdc=cost.quantize(Decimal("0.000001")))]
    pos.metrics = {**pos.metrics, "shares_left_outside": str(e.shares), "shares_left_note": e.note}
    return CloseReason.SOLD_OUTSIDE if is_dust(pos.shares) else None


def unconfirmed(pos: Position) -> bool:
    """Whether some fill of the position may still fail (its trades are not settled yet)."""
    return any(not r.confirmed and r.filled > 0 for r in pos.orders)


def _nothing_left(pos: Position, e: NothingLeft, now: datetime) -> CloseReason:
    return pos.close_reason or CloseReason.TAKE_PROFIT


def _stop_raised(pos: Position, e: StopRaised, now: datetime) -> None:
    pos.high_bid = max(pos.high_bid or e.high_bid, e.high_bid)
    if e.stop is not None and (pos.sl_price is None or e.stop > pos.sl_price):
        if "sl_initial" not in pos.metrics:
            pos.metrics = {**pos.metrics, "sl_initial": str(pos.sl_price) if pos.sl_price is not None else None}
        pos.sl_price, pos.stop_why = e.stop, e.why


def _rung_filled(pos: Position, e: RungFilled, now: datetime) -> PositionState | None:
    done = rungs_filled(pos)
    if e.rung not in done:
        pos.metrics = {**pos.metrics, "rungs_filled": sorted([*done, e.rung])}
    if pos.status == S.EXITING and pos.exit_rung is not None and rung_exit_done(pos, pos.exit_rung):
        # The ladder's sale is done: the position is open again, the rest under its stop and its next rungs.
        pos.close_reason, pos.exit_rung, pos.trigger_bid, pos.retry_at, pos.balance_shortfalls = (None, None, None,
                                                                                                   None, 0)
        return S.OPEN
    return None


def _bid_seen(pos: Position, e: BidSeen, now: datetime) -> None:
    pos.metrics = {**pos.metrics, "last_bid": str(e.bid)}


def _resolved(pos: Position, e: MarketResolved, now: datetime) -> CloseReason:
    for rec in pos.orders:   # the venue cancels open orders of a resolved market
        if rec.state == RecordState.LIVE:
            rec.state = RecordState.DONE
    held = pos.shares
    pos.orders = [*pos.orders, OrderRecord(role=Role.PAYOUT, state=RecordState.DONE, price=e.payout, filled=held,
                                           usdc=held * e.payout)]
    return pos.close_reason if pos.status == S.HELD and pos.close_reason else CloseReason.MARKET_RESOLVED


def _attention(pos: Position, e: AttentionNeeded, now: datetime) -> None:
    pos.attention_reason = e.note


def _agrees(pos: Position, e: AgreesAgain, now: datetime) -> PositionState:
    pos.attention_reason = None
    return S.EXITING if pos.close_reason else S.OPEN


def _by_hand(pos: Position, e: ClosedByHand, now: datetime) -> CloseReason:
    for rec in pos.orders:
        if rec.state in (RecordState.LIVE, *OPEN_STATES):
            rec.state = RecordState.DONE
    pos.orders = list(pos.orders)
    return CloseReason.MANUAL


def _tp_checked(pos: Position, e: TpChecked, now: datetime) -> None:
    pos.last_tp_check_at = e.at


def _cancel_raced(pos: Position, e: CancelRaced, now: datetime) -> None:
    pos.metrics = {**pos.metrics, "cancel_race": True}


def _exit_prices(pos: Position, e: ExitPricesSet, now: datetime) -> None:
    pos.tp_price, pos.sl_price = pos.tp_price or e.tp_price, pos.sl_price or e.sl_price


def _venue(pos: Position, e: VenueRecorded, now: datetime) -> None:
    pos.venue, pos.wallet = e.venue, e.wallet


def _nothing(pos: Position, e: Event, now: datetime) -> None:
    return None


# -- the table ---------------------------------------------------------------------------------------------

#: An action gets the position, its event (of the row's type) and the time; it returns None, a CloseReason
#: (the position closes) or another state.
Action = Callable[[Position, Any, datetime], object]


@dataclass(frozen=True)
class Row:
    """``next``: the state after the event (None: unchanged); the action may close it (a CloseReason) or
    name another state instead."""
    next: PositionState | None
    action: Action = field(default=_nothing)


ACTIVE = (S.OPENING, S.OPEN, S.EXITING, S.HELD, S.SETTLING, S.NEEDS_ATTENTION)
TRADING = (S.OPENING, S.OPEN, S.EXITING)

TABLE: dict[tuple[PositionState, type], Row] = {
    # entry
    **{(s, OrderIntent): Row(None, _intent) for s in TRADING},
    **{(s, OrderSigned): Row(None, _signed) for s in TRADING},
    **{(s, OrderNotPlaced): Row(None, _not_placed) for s in (*TRADING, S.NEEDS_ATTENTION)},
    (S.OPENING, EntryFilled): Row(S.OPEN, _entry_filled),
    (S.OPENING, EntryUnfilled): Row(S.CLOSED, _entry_unfilled),
    # the take-profit (resting in limit_orders mode; watched in monitor mode)
    **{(s, TpResting): Row(None, _tp_resting) for s in (S.OPEN, S.EXITING, S.NEEDS_ATTENTION)},
    **{(s, TpFilled): Row(None, _tp_filled) for s in (S.OPEN, S.EXITING, S.NEEDS_ATTENTION)},
    (S.OPEN, FellBack): Row(None, _fell_back),
    **{(s, TpChecked): Row(None, _tp_checked) for s in (S.OPEN, S.EXITING)},
    # exits: SL crossed, TP crossed while monitored, holding time over
    (S.OPEN, ExitStarted): Row(S.EXITING, _exit_started),
    (S.EXITING, ExitReanchored): Row(None, _reanchored),
    (S.EXITING, ExitBackoff): Row(None, _backoff),
    (S.EXITING, BalanceShort): Row(None, _short),
    **{(s, SellFilled): Row(None, _sell_filled) for s in (S.EXITING, S.NEEDS_ATTENTION)},
    # settlement: a match is not a settlement (FACTS.md Part 0, 0.2)
    **{(s, FillsChecked): Row(None, _fills_checked) for s in (S.OPEN, S.EXITING, S.HELD, S.SETTLING,
                                                                S.NEEDS_ATTENTION)},
    **{(s, SharesLeft): Row(None, _shares_left) for s in (S.OPEN, S.EXITING)},
    **{(s, NothingLeft): Row(S.CLOSED, _nothing_left) for s in (S.OPEN, S.EXITING)},
    **{(s, DustHeld): Row(S.HELD) for s in (S.OPEN, S.EXITING)},
    (S.HELD, BidSeen): Row(None, _bid_seen),
    (S.OPEN, StopRaised): Row(None, _stop_raised),
    **{(s, RungFilled): Row(None, _rung_filled) for s in (S.OPEN, S.EXITING, S.NEEDS_ATTENTION)},
    **{(s, MarketResolved): Row(S.CLOSED, _resolved) for s in (S.OPEN, S.EXITING, S.HELD, S.SETTLING)},
    # a person
    **{(s, AttentionNeeded): Row(S.NEEDS_ATTENTION, _attention) for s in ACTIVE},
    (S.NEEDS_ATTENTION, AgreesAgain): Row(None, _agrees),
    (S.NEEDS_ATTENTION, ClosedByHand): Row(S.CLOSED, _by_hand),
    (S.NEEDS_ATTENTION, FellBack): Row(None, _fell_back),
    # bookkeeping that moves nothing
    **{(s, CancelRaced): Row(None, _cancel_raced) for s in (S.OPEN, S.EXITING, S.NEEDS_ATTENTION)},
    **{(s, ExitPricesSet): Row(None, _exit_prices) for s in ACTIVE},
    **{(s, VenueRecorded): Row(None, _venue) for s in (*ACTIVE, S.CLOSED)},
}


#: Closes that do not wait for the venue to settle the position's trades: nothing was bought, the market paid out,
#: a person closed it.
UNSETTLED_CLOSES_OK = (CloseReason.ENTRY_UNFILLED, CloseReason.MARKET_RESOLVED, CloseReason.MANUAL)


def apply(pos: Position, event: Event, now: datetime) -> Position:
    """The one way a position changes: look up (state, event) in TABLE, do its bookkeeping, move its state.
    An event with no row in the position's state is refused (IllegalTransition), leaving it untouched."""
    row = TABLE.get((pos.status, type(event)))
    if row is None:
        raise IllegalTransition(f"position {pos.id}: {type(event).__name__} is not allowed in state "
                                f"{pos.status.value}")
    outcome = row.action(pos, event, now)
    new = row.next or pos.status
    if isinstance(outcome, CloseReason):
        pos.close_reason, new = outcome, S.CLOSED
        if outcome not in UNSETTLED_CLOSES_OK and unconfirmed(pos):
            new = S.SETTLING   # closed only once the venue has settled every trade (FillsChecked)
    elif isinstance(outcome, PositionState):
        new = outcome
    if new == S.CLOSED and pos.status != S.CLOSED:
        _close(pos, now)
    pos.status = new
    pos.updated_at = now
    return pos


def _close(pos: Position, now: datetime) -> None:
    pos.closed_at = now
    if pos.sold_shares > 0:
        pos.exit_price = (pos.exit_proceeds / pos.sold_shares).quantize(Decimal("0.000001"))
    pos.realized_pnl = (pos.exit_proceeds - pos.entry_cost).quantize(Decimal("0.000001"))

"""Order records: every order a position sends, as one typed record, and the quantities derived from them.

A record is saved before its order is signed (``intent``), gets its id before it leaves (``sent``: the
outcome is not known until the venue answers or is asked), and is updated from the venue's answers
(``live`` while a TP rests, ``done`` once final, ``failed`` when refused or never placed). What a
position holds, sold, paid, received and paid in fees is computed from its records in ``quantities``,
and nowhere else.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_serializer


class Role(enum.StrEnum):
    ENTRY = "entry"     # the buy
    TP = "tp"           # a resting take-profit SELL
    EXIT = "exit"       # a marketable exit SELL (stop-loss, time exit, monitored TP)
    PAYOUT = "payout"   # the market resolved: shares paid out at the winning price (not an order)
    OUTSIDE = "outside"  # shares that left the account outside the bot (sold by hand): booked at their cost


class RecordState(enum.StrEnum):
    INTENT = "intent"   # saved before signing: if the bot dies now, nothing was sent
    SENT = "sent"       # its id saved before it left; the outcome is not known yet: ask the venue by id
    LIVE = "live"       # resting on the book (a TP)
    DONE = "done"       # final, filled as recorded (maybe partly, maybe nothing)
    FAILED = "failed"   # refused, or never reached the venue: nothing happened


OPEN_STATES = (RecordState.INTENT, RecordState.SENT)
SELLS = (Role.TP, Role.EXIT, Role.PAYOUT)


class OrderRecord(BaseModel):
    """One order of a position. ``filled`` is shares (for an entry: the shares the account received); ``usdc``
    what the fills cost (entry) or brought (sells), before fees; ``fee`` the taker fee in USDC.

    On CLOB V2 a BUY's fee is paid in USDC on top of its cost (``fee_in`` "usdc"); records written before that
    rule was known (no ``fee_in``) took it in shares: their ``filled`` is already net of it and their ``fee`` is
    not part of the cost. A match is not a settlement: a fill is ``confirmed`` once the venue's trades for it
    are settled (MINED or CONFIRMED); ``failed`` counts the shares of its trades that FAILED (taken back from
    ``filled``: the venue may still report them in the order's size_matched)."""

    model_config = ConfigDict(validate_assignment=True)

    role: Role
    order_id: str | None = None
    state: RecordState = RecordState.INTENT
    price: Decimal | None = None   # the TP's limit, the entry's cap, the exit's floor, or the payout per share
    size: Decimal | None = None    # shares for a sell, USDC for an entry
    filled: Decimal = Decimal(0)
    usdc: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    sent_at: float | None = None
    fee_in: Literal["shares", "usdc"] = "shares"
    confirmed: bool = True
    failed: Decimal = Decimal(0)
    rung: int | None = None   # the take-profit ladder's rung this sell is for (bot/ladder.py), if any

    @field_serializer("price", "size", "filled", "usdc", "fee", "failed")
    def _decimal_as_string(self, value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")


@dataclass(frozen=True)
class Quantities:
    """What a position's records add up to."""

    entry_shares: Decimal   # shares received by the entries
    entry_cost: Decimal     # USDC paid for them, with the fee paid in USDC
    sold_shares: Decimal    # shares gone by TP fills, exit sales and payouts
    tp_filled_shares: Decimal
    exit_proceeds: Decimal  # USDC received for them, net of fees
    fees: Decimal           # every taker fee paid (USDC; already inside the cost and the proceeds)

    @property
    def shares(self) -> Decimal:
        return max(self.entry_shares - self.sold_shares, Decimal(0))


def quantities(records: Iterable[OrderRecord]) -> Quantities:
    """The one place quantities come from: sums over the records."""
    entry_shares = entry_cost = sold = tp = proceeds = fees = Decimal(0)
    for r in records:
        fees += r.fee
        if r.role == Role.ENTRY:
            entry_shares += r.filled
            entry_cost += r.usdc + (r.fee if r.fee_in == "usdc" else 0)
        else:
            sold += r.filled
            proceeds += r.usdc - r.fee
            if r.role == Role.TP:
                tp += r.filled
    return Quantities(entry_shares, entry_cost, sold, tp, proceeds, fees)

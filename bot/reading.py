"""Phase 1 of the loop: what the bot knows of the venue, and where it came from.

Without push feeds: one batched REST book read for every held token each loop, and the open-orders list when
``TpChecks`` says. With feeds (bot/feeds.py): a token whose feed is fresh takes its book from the feed; the
others (stale, just (re)subscribed, or due for the safety-net check) are read over REST in one batch, and each
REST book is compared with the feed's (``Feeds.verify``). The open-orders list is read when the user channel
is not fresh, after it reconnected (the venue replays nothing), when a book shows a TP trading that the user
channel did not report, and otherwise only every ``feeds.orders_check_seconds``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from bot.clock import Clock
from bot.config import BotConfig
from bot.errors import MalformedResponse, TemporaryVenueError
from bot.ladder import next_target, remaining
from bot.metrics import CallMeter
from bot.money import SHARE_EPSILON, round_shares
from bot.position_manager import ExitMode, Position, PositionState
from bot.venue.base import Book, OrderState, Venue

if TYPE_CHECKING:
    from bot.feeds import Feeds, OrderFeed

log = logging.getLogger("bot")

#: Even when every book shows the TPs intact, the open-orders list is read every this many check intervals.
FULL_CHECK_EVERY = 10
PUSH, POLL = "push", "poll"
#: A check falls due at this share of its interval: the loop's own jitter (a read that took a few ms less
#: than the last) must not skip a whole loop when the interval equals the loop's.
INTERVAL_SLACK = 0.95


@dataclass
class Snapshot:
    """What the bot read from the venue: books of held tokens (``seen``: token -> (``push`` | ``poll``, clock
    time it was seen)), open orders when they were due, and what the user channel said of the bot's orders."""

    books: dict[str, Book] = field(default_factory=dict)
    open_orders: dict[str, OrderState] | None = None
    seen: dict[str, tuple[str, float]] = field(default_factory=dict)
    feed_orders: dict[str, OrderFeed] = field(default_factory=dict)
    resolved: set[str] = field(default_factory=set)   # tokens whose market the market channel says resolved


def tp_visibly_intact(pos: Position, book: Book | None) -> bool:
    """True when the book shows none of the position's resting TPs (each rung of a ladder) can have traded: no
    bid reaches its price and the ask level at its price holds at least what it offers."""
    if book is None or not pos.live_tps:
        return False
    for rec in pos.live_tps:
        price = rec.price or pos.tp_price
        if price is None or (book.best_bid is not None and book.best_bid >= price):
            return False
        level = next((size for p, size in book.asks if p == price), Decimal(0))
        if level + SHARE_EPSILON < (remaining(rec) if rec.size is not None else round_shares(pos.shares)):
            return False
    return True


class TpChecks:
    """When the loop reads the open-orders list: every ``interval`` seconds, unless this loop's books show
    every TP still resting untouched; then only every FULL_CHECK_EVERY intervals, as a safety net. With a
    fresh user channel (``push_interval``): when forced, when a book shows a TP trading that the channel did
    not report, or every ``push_interval``."""

    def __init__(self, interval: float, push_interval: float | None = None):
        self.interval = interval
        self.push_interval = push_interval
        self.last: float | None = None
        self.last_full: float | None = None
        self.forced = False

    def force(self) -> None:
        """Read the list at the next loop (the user channel reconnected: it replays nothing)."""
        self.forced = True

    def due(self, resting: list[Position], books: dict[str, Book], t: float, push: bool = False,
            reported: set[str] | None = None) -> bool:
        if self.forced:
            self.forced = False
            self.last = self.last_full = t
            return True
        if self.last is not None and t - self.last < self.interval * INTERVAL_SLACK:
            return False
        if push and self.push_interval is not None:
            told = reported or set()
            untold = any(not tp_visibly_intact(p, books.get(p.token_id)) and not set(p.tp_order_ids) & told
                         for p in resting)
            if not untold and self.last_full is not None and t - self.last_full < self.push_interval:
                return False
            self.last = self.last_full = t
            return True
        self.last = t
        if self.last_full is None or t - self.last_full >= FULL_CHECK_EVERY * self.interval \
                or any(not tp_visibly_intact(p, books.get(p.token_id)) for p in resting):
            self.last_full = t
            return True
        return False


def triggers(positions: list[Position]) -> dict[str, tuple[Decimal | None, Decimal | None]]:
    """Per held token, the bids that must wake the loop at once: at or below the stop-loss, at or above a
    watched take-profit (monitor mode, or no TP resting), at or above the bid that would raise a stop that follows
    the price (bot/stops.py); an exiting position's every bid change."""
    out: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    for p in positions:
        if p.status == PositionState.OPEN:
            watch_tp = p.exit_mode == ExitMode.MONITOR or not p.live_tps
            low, high = p.sl_price, next_target(p) if watch_tp else None
            rise = stop_rise(p)
            if rise is not None:
                high = rise if high is None else min(high, rise)
        elif p.status == PositionState.EXITING:
            low, high = Decimal(1), None
        else:
            continue
        old_low, old_high = out.get(p.token_id, (None, None))
        out[p.token_id] = (max((x for x in (low, old_low) if x is not None), default=None),
                           min((x for x in (high, old_high) if x is not None), default=None))
    return out


def stop_rise(p: Position) -> Decimal | None:
    """The lowest bid that may raise the position's following stop (a new high a tick up once trailing is active,
    or the break-even level not reached yet); None without such rules."""
    levels: list[Decimal] = []
    seen = p.high_bid if p.high_bid is not None else Decimal(0)
    if p.trail_pct is not None:
        levels.append(max(seen + p.tick_size, p.entry_price * (1 + p.trail_activation_pct)))
    if p.break_even_at_pct is not None and p.stop_why is None:
        levels.append(max(seen + p.tick_size, p.entry_price * (1 + p.break_even_at_pct)))
    return min(levels) if levels else None


class Reader:
    """Reads the venue for the loop (see the module's doc); ``feeds`` None: REST only, as without feeds."""

    def __init__(self, venue: Venue, config: BotConfig, clock: Clock, meter: CallMeter, feeds: Feeds | None = None):
        self.venue, self.clock, self.meter, self.feeds = venue, clock, meter, feeds
        self.tp_checks = TpChecks(config.trading.order_check_interval_seconds,
                                  config.feeds.orders_check_seconds if feeds is not None else None)
        self._expected: set[str] | None = None   # TPs known at the last sync (None: not synced yet)

    def read(self, active: list[Position], now: datetime) -> Snapshot:
        """The loop's read: books of every held token (batched), open orders when due."""
        snap = Snapshot()
        if self.feeds is not None:
            self._take_changes(snap)
        if not active:
            return snap
        tokens = list(dict.fromkeys(p.token_id for p in active))
        rest = tokens
        if self.feeds is not None:
            t = self.clock.time()
            for token in tokens:
                book = self.feeds.book(token) if self.feeds.fresh(token) else None
                if book is not None:
                    snap.books[token] = book
                    snap.seen[token] = (PUSH, self.feeds.seen_at(token) or t)
            # One token due for its check reads them all: the same request, and their checks stay in step.
            due = bool(self.feeds.due_for_check(t))
            rest = tokens if due else [tok for tok in tokens if tok not in snap.books]
            if snap.books:
                self.venue.books_seen(dict(snap.books))
        if rest:
            started = self.clock.time()
            try:
                with self.meter.attribute(active, now):
                    books = self.venue.get_books(rest)
            except (TemporaryVenueError, MalformedResponse) as exc:
                if not snap.books:
                    raise   # nothing to go on: the loop is retried (as without feeds)
                # The feed's books still protect their positions (a busy /books must not stop their SLs).
                log.warning("REST book read failed (%s): %d position(s) go on with the push feed's books, %d "
                            "without a book this loop", exc, len(snap.books), len(set(rest) - set(snap.books)))
                books = {}
            for token, book in books.items():
                snap.books[token] = book
                snap.seen[token] = (POLL, started)
                if self.feeds is not None:
                    self.feeds.verify(token, book, started)
        resting = [p for p in active if p.exit_mode == ExitMode.LIMIT_ORDERS and p.live_tps]
        push = self.feeds is not None and self.feeds.user_fresh()
        if resting and self.tp_checks.due(resting, snap.books, self.clock.time(), push,
                                          self._reported(resting) if push else None):
            with self.meter.attribute(resting, now):
                snap.open_orders = {o.order_id: o for o in self.venue.open_orders()}
            if self.feeds is not None:
                self.feeds.user_verified()   # the REST read covers whatever the channel missed before
        elif not resting and self.feeds is not None:
            self.feeds.user_verified()   # no resting order: nothing the channel could have missed
        return snap

    def _reported(self, resting: list[Position]) -> set[str]:
        """TPs whose fills the user channel reported (a book showing them trade is then no news)."""
        assert self.feeds is not None
        out = set()
        for p in resting:
            for order_id in p.tp_order_ids:
                known = self.feeds.order(order_id)
                if known is not None and known.size_matched > 0:
                    out.add(order_id)
        return out

    def _take_changes(self, snap: Snapshot) -> set[str]:
        """What the feeds said since the last take: the bot's orders into ``snap``; a user channel that
        reconnected forces the open-orders read. Returns the tokens whose trigger was crossed."""
        assert self.feeds is not None
        changes = self.feeds.take_changes()
        snap.feed_orders.update(changes.orders)
        snap.resolved |= changes.resolved
        if changes.user_reconnected:
            self.tp_checks.force()
        return changes.tokens

    def on_events(self, active: list[Position]) -> tuple[Snapshot, list[Position], list[Position]]:
        """Between loops: the snapshot of what the feeds pushed, the positions whose trigger was crossed (with
        a fresh book), and the positions with news of their TP."""
        snap = Snapshot()
        if self.feeds is None:
            return snap, [], []
        crossed = self._take_changes(snap)
        moved = []
        for p in active:
            book = self.feeds.book(p.token_id) if p.token_id in crossed and self.feeds.fresh(p.token_id) else None
            if book is not None:
                snap.books[p.token_id] = book
                snap.seen[p.token_id] = (PUSH, self.feeds.seen_at(p.token_id) or self.clock.time())
                moved.append(p)
        if snap.books:
            self.venue.books_seen(dict(snap.books))
        routed = {p.id for p in moved}   # (their TP news reaches them through the snapshot)
        told = [p for p in active if p.id not in routed and any(i in snap.feed_orders for i in p.tp_order_ids)]
        return snap, moved, told

    def sync(self, active: list[Position]) -> None:
        """Tell the feeds what the bot holds now: tokens and their triggers, the bot's TP orders (a TP new
        since the last sync must show up on the user channel, or the channel is stale)."""
        if self.feeds is None:
            return
        live = [p for p in active if p.status != PositionState.CLOSED]
        self.feeds.watch({p.token_id: p.condition_id for p in live}, triggers(live))
        tps = {order_id for p in live for order_id in p.tp_order_ids}
        self.feeds.watch_orders(tps)
        for order_id in tps - self._expected if self._expected is not None else ():
            self.feeds.expect_order(order_id)   # (the TPs found at start-up have nothing new to say)
        self._expected = tps

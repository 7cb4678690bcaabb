"""What the bot does for each position between two reads of the venue: the handlers of both exit modes,
entries, lost answers, market resolution, and the user's commands. They ask the venue, turn what they
learn into events, and apply them (bot/lifecycle.py); nothing here edits a position directly.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from bot.alerts import Alerter
from bot.balance_lock import BalanceLock
from bot.clock import Clock
from bot.config import BotConfig, ConfigError, check_trade_size, unexitable_trade_size
from bot.crashpoints import crashpoint
from bot.doctor import smallest_trade
from bot.errors import (
    MalformedResponse,
    OrderRejected,
    StateFileError,
    TemporaryVenueError,
    UnknownOutcome,
    VenueError,
)
from bot.exits import RUNG_STATES, ExitProtocol, book_gone_tp, book_tp, tp_limit
from bot.ladder import (
    RungOrder,
    ladder_text,
    next_target,
    plan_ladder,
    reached_rung,
    remaining,
    rungs_to_place,
    tps_missing,
)
from bot.lifecycle import (
    AttentionNeeded,
    BidSeen,
    ClosedByHand,
    EntryFilled,
    EntryUnfilled,
    ExitPricesSet,
    FellBack,
    FillsChecked,
    MarketResolved,
    NothingLeft,
    OrderIntent,
    OrderNotPlaced,
    OrderSigned,
    RungFilled,
    StopRaised,
    TpChecked,
    TpResting,
    apply,
    unconfirmed,
)
from bot.metrics import CallMeter
from bot.money import BALANCE_TOLERANCE, fmt, is_dust, round_shares
from bot.orders import RecordState, Role
from bot.outcomes import look_up
from bot.position_manager import BotState, CloseReason, ExitMode, Position, PositionState
from bot.reading import Snapshot
from bot.reconcile import ReconcileReport, reconcile
from bot.scanner import Candidate, MarketScanner
from bot.status import record_bid
from bot.stops import StopRules, next_stop
from bot.trader import EntryPlan, EntrySkipped, Trader, exit_prices
from bot.venue.base import Book, MarketInfo, OrderState, OrderStatus, Venue

if TYPE_CHECKING:
    from bot.feeds import OrderFeed

log = logging.getLogger("bot")

#: A position whose book is empty, or that is held to resolution, asks Gamma about its market this often.
RESOLUTION_CHECK_SECONDS = 60
#: A scan tries at most this many candidates (best first) before giving up until the next scan.
MAX_CANDIDATES_PER_SCAN = 5
#: After this many loops in a row that failed on one position, it needs a person.
MAX_POSITION_FAILURES = 5
#: Fills whose trades are not settled yet are checked again at most this often (a new fill: at once).
SETTLE_CHECK_SECONDS = 5.0


class Manager:
    """The per-position handlers. ``save`` persists the whole state; ``pause(reason)`` stops new entries."""

    def __init__(self, config: BotConfig, venue: Venue, scanner: MarketScanner, state: BotState, clock: Clock,
                 alerter: Alerter, save: Callable[[], None], rng: random.Random | None = None):
        self.config = config
        self.venue = venue
        self.scanner = scanner
        self.state = state
        self.clock = clock
        self.alerter = alerter
        self.save = save
        self.rng = rng or random.Random(config.trading.ab_test_seed)
        self.trader = Trader(venue)
        alert = lambda event, message: self.alerter.send(event, message)   # noqa: E731
        self.lock = BalanceLock(clock, alert)
        #: Whether Polymarket's auto-redeem operator may redeem this account's winning shares (FACTS.md Part 0, 0.8):
        #: read once at start for a live account (None: unknown, or paper orders).
        self.auto_redeem: bool | None = None
        self.exits = ExitProtocol(self.trader, save, config.trading.exit_max_slippage_pct,
                                  max_hold_hours=config.strategy.max_hold_hours, alert=alert, clock=clock,
                                  lock=self.lock)
        self.once = False   # --live-once: the one entry is of the smallest valid size
        self._resolution_checked: dict[str, float] = {}
        self._resolution_news: set[str] = set()   # tokens the market channel says resolved: asked about at once
        self._warned_no_bid: set[str] = set()
        self._last_logged_bid: dict[str, Decimal] = {}
        self._failures: dict[str, int] = {}
        self._last_settle = float("-inf")
        self._settle_seen: set[str] = set()   # unsettled fills checked once already (a new one is checked at once)

    def pause(self, reason: str) -> None:
        """Stop opening positions (existing ones are still managed) and tell the user."""
        if self.state.paused:
            return
        self.state.pause(reason)
        log.error("Pausing new trades: %s", reason)
        self.save()
        self.alerter.send("pause", reason)

    def guarded(self, pos: Position, now: datetime, step: Callable[[], None]) -> None:
        """Run one position's step; an error in it is logged (a venue that is busy, refused or unclear: the
        next loop tries again; anything else MAX_POSITION_FAILURES loops in a row: it needs a person) and never
        reaches the other positions."""
        try:
            step()
            self._failures.pop(pos.id, None)
        except (TemporaryVenueError, MalformedResponse, OrderRejected, UnknownOutcome) as exc:
            log.warning("Position %s: %s; retrying next loop", pos.id, exc)
        except StateFileError:
            raise   # never go on without being able to record what the bot owns
        except Exception as exc:  # a bug or something unforeseen in one position: the others go on
            log.exception("Position %s: unexpected error: %s", pos.id, exc)
            failures = self._failures[pos.id] = self._failures.get(pos.id, 0) + 1
            if failures >= MAX_POSITION_FAILURES and pos.is_active:
                apply(pos, AttentionNeeded(f"{failures} loops in a row failed on it; last: "
                                           f"{type(exc).__name__}: {exc}"), now)
                self.save()
        self.after(pos, now)

    def collect_exits(self) -> None:
        """From now until ``run_exits``, exits that start or resume are gathered to run together."""
        self.exits.collected = []

    def run_exits(self, now: datetime, meter: CallMeter | None = None) -> None:
        """Run the exits gathered this loop: several at once as one batch (one cancel request for all their TPs,
        their sells sent together; bot/exits.py ``run_batch``). An error leaves them exiting, retried next loop."""
        items = self.exits.collected or []
        positions = [p for p, _ in items]
        if len(items) <= 1:   # one exit runs on its own, as ever
            self.exits.collected = None
            for pos, book in items:
                with meter.attribute(pos, now) if meter else nullcontext():
                    self.guarded(pos, now, partial(self._resume_one, pos, book, now))
            return
        try:
            with meter.attribute(positions, now) if meter else nullcontext():
                self.exits.run_collected(now)
        except (TemporaryVenueError, MalformedResponse, OrderRejected, UnknownOutcome) as exc:
            log.warning("Mass exit of %d positions: %s; retrying next loop", len(positions), exc)
        except StateFileError:
            raise
        except Exception as exc:  # a bug: the positions stay exiting, each retried next loop
            log.exception("Mass exit of %d positions: unexpected error: %s", len(positions), exc)
        for pos in positions:
            self.after(pos, now, save=False)
        self.save()

    def _resume_one(self, pos: Position, book: Book | None, now: datetime) -> None:
        self.save()   # its start on disk first
        self.exits.resume(pos, book, now)

    # -- before either exit mode ------------------------------------------------------------------

    def prepare(self, pos: Position, book: Book | None, now: datetime) -> bool:
        """What comes before the exit modes: a resolved market, an entry or a TP whose outcome is being looked
        up, a remainder held to resolution. True when the position goes on to its exit mode's handler."""
        record_bid(pos, book.best_bid if book else None, now)   # (for ``status``: no request of its own)
        if self.market_resolved(pos, book, now):
            return False
        if pos.status == PositionState.OPENING:
            self.finish_opening(pos, now)
            return False
        if pos.status == PositionState.HELD:
            bid = book.best_bid if book else None
            if bid is not None and pos.metrics.get("last_bid") != str(bid):
                apply(pos, BidSeen(bid), now)
                self.save()
            return False
        return self.resolve_pending_tp(pos, now)

    def after(self, pos: Position, now: datetime, save: bool = True) -> None:
        """A position that needs a person pauses new entries; a stop-loss blacklists its market (``save``: at
        once; a mass exit saves its blacklistings together)."""
        if pos.status == PositionState.NEEDS_ATTENTION:
            self.alerter.send("needs_attention", f"position {pos.id}: {pos.attention_reason}")
            self.pause(f"position {pos.id} needs attention: {pos.attention_reason}")
        if pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS \
                and not self.state.is_blacklisted(pos.condition_id, now):
            until = now + timedelta(hours=self.config.strategy.blacklist_hours)
            self.state.blacklist_market(pos.condition_id, until)
            if save:
                self.save()
            log.info("Blacklisted market %s until %s after a stop-loss", pos.condition_id[:12], until.isoformat())
            self.alerter.send("stop_loss", f"{pos.question or pos.token_id}: sold {fmt(pos.sold_shares)} @ "
                                           f"{fmt(pos.exit_price, 4)}, pnl ${fmt(pos.realized_pnl, 2)}")

    def resolution_news(self, tokens: set[str]) -> None:
        """The market channel said these tokens' markets resolved (it may never say so: the empty book and
        Gamma remain the rule): their positions ask Gamma at their next update."""
        self._resolution_news |= tokens

    def market_resolved(self, pos: Position, book: Book | None, now: datetime) -> bool:
        """An empty book may mean the market resolved (a position held to resolution is asked about even
        with a book): ask Gamma (at most once per RESOLUTION_CHECK_SECONDS) and, if so, close the position
        at its payout. The winning shares redeem by themselves when the auto-redeem operator is approved, else by hand
        on polymarket.com (the log says which)."""
        held, news = pos.status == PositionState.HELD, pos.token_id in self._resolution_news
        if pos.status == PositionState.OPENING or (not held and not news and book is not None
                                                   and (book.bids or book.asks)):
            return False
        t = self.clock.time()
        if not news and t - self._resolution_checked.get(pos.id, 0.0) < RESOLUTION_CHECK_SECONDS:
            return False
        self._resolution_news.discard(pos.token_id)
        self._resolution_checked[pos.id] = t
        payout = self.scanner.resolution(pos.market_id, pos.outcome) if pos.market_id and pos.outcome else None
        if payout is None:
            return False
        apply(pos, MarketResolved(payout), now)
        self.save()
        redeem = {True: "Polymarket's auto-redeem operator redeems the winning shares by itself",
                  False: "redeem the winning shares on polymarket.com (the auto-redeem operator is not approved)",
                  None: "redeem the winning shares on polymarket.com unless Polymarket's auto-redeem operator is "
                        "approved (python main_bot.py doctor says)"}[self.auto_redeem]
        log.info("MARKET RESOLVED %s: %s pays %s per share, pnl=$%s (%s)", pos.id, pos.outcome, fmt(payout),
                 fmt(pos.realized_pnl, 2), redeem)
        return True

    # -- entries ----------------------------------------------------------------------------------

    def finish_opening(self, pos: Position, now: datetime) -> None:
        """An entry whose outcome is not recorded (lost or delayed answer, crash): look the order up by the
        id saved before it was sent, and own exactly what that order bought (never the token balance)."""
        rec = pos.pending
        if rec is None or rec.role != Role.ENTRY or not rec.order_id:
            self._unfilled(pos, now, "no order was sent")   # its id is saved before it leaves: none, not sent
            return
        out = look_up(self.venue, rec.order_id, pos.token_id, rec.sent_at or pos.opened_at.timestamp(),
                      now.timestamp(), marketable=True)
        if not out.known:
            log.info("Entry %s of %s: outcome not known yet (%s); looking again next loop", rec.order_id[:18],
                     pos.id, out.status)
            return
        if out.filled_shares <= 0:
            self._unfilled(pos, now, f"order {rec.order_id[:18]} {out.status}, nothing bought")
            return
        price = out.usdc / out.filled_shares   # (CLOB V2: the account received every share it bought)
        self._opened(pos, rec.order_id, out.filled_shares, price, out.usdc, out.fee, now, out.confirmed)

    def _unfilled(self, pos: Position, now: datetime, why: str) -> None:
        apply(pos, EntryUnfilled(why), now)
        self.save()
        log.info("Entry of %s never filled (%s): closed", pos.id, why)

    def _opened(self, pos: Position, order_id: str, shares: Decimal, price: Decimal, cost: Decimal, fee: Decimal,
                now: datetime, confirmed: bool = True) -> None:
        """The entry is known: TP/SL derive from the price really paid; the exits are armed."""
        s = self.config.strategy
        entry = price.quantize(Decimal("0.000001"))
        tp, sl = exit_prices(entry, s.take_profit_pct, s.stop_loss_pct, pos.tick_size)
        ladder = plan_ladder(s.take_profit_ladder, entry, shares, pos.tick_size, pos.min_order_size) \
            if s.take_profit_ladder else None
        if ladder is not None:   # (its last rung: a stop that follows the price stays under it, as under any TP)
            tp = ladder.rungs[-1].price
        apply(pos, EntryFilled(order_id, shares, cost, fee, price, tp, sl, confirmed,
                               tuple(ladder.rungs) if ladder else (), tuple(ladder.notes) if ladder else ()), now)
        self.save()
        log.info("%sBOUGHT %s shares @ %s for $%s (%s): TP=%s, SL armed at %s (watched: Polymarket has no stop "
                 "orders)", self.venue.log_prefix, fmt(pos.shares), fmt(pos.entry_price, 4), fmt(pos.entry_cost, 2),
                 pos.id, ladder_text(pos) if ladder else fmt(tp), fmt(sl))
        for note in pos.ladder_notes:
            log.warning("TP ladder of %s: %s", pos.id, note)
        if pos.exit_mode == ExitMode.LIMIT_ORDERS:
            self.arm_tp(pos, now)
            for rec in pos.live_tps:
                log.info("TP %s resting: SELL %s @ %s", (rec.order_id or "")[:18], fmt(remaining(rec)), fmt(rec.price))

    def choose_exit_mode(self) -> ExitMode:
        ratio = self.config.trading.ab_test_ratio
        if ratio is not None:
            return ExitMode.LIMIT_ORDERS if self.rng.random() < ratio else ExitMode.MONITOR
        return ExitMode.LIMIT_ORDERS if self.config.trading.use_concurrent_orders else ExitMode.MONITOR

    def deployed(self) -> Decimal:
        return sum((p.entry_cost for p in self.managed()), Decimal(0))

    def managed(self) -> list[Position]:
        """Active positions that take a slot and capital (a remainder held to resolution takes neither)."""
        return [p for p in self.state.active_positions() if p.status != PositionState.HELD]

    def pick_entry(self, now: datetime) -> tuple[Candidate, MarketInfo, Book, EntryPlan, ExitMode] | None:
        """The first of the scan's best candidates (at most MAX_CANDIDATES_PER_SCAN, their books read in one
        batch) whose entry passes every filter; each one skipped is logged with its reason. Nothing is sent
        and nothing is recorded for a skipped market."""
        cfg, s = self.config, self.config.strategy
        # (with a take-profit ladder, the entry's checks of the spread against the target use its average profit,
        # each rung weighed by its share)
        tp_pct = sum((pct * share for pct, share in s.take_profit_ladder), Decimal(0)) if s.take_profit_ladder \
            else s.take_profit_pct
        cands = self.scanner.candidates(
            now, skip=lambda cid: self.state.holds_market(cid) or self.state.is_blacklisted(cid, now))
        cands = cands[:MAX_CANDIDATES_PER_SCAN]
        if not cands:
            log.debug("No market passes the filters")
            return None
        books = self.venue.get_books([c.token_id for c in cands])
        mode: ExitMode | None = None
        available: Decimal | None = None
        for cand in cands:
            book = books.get(cand.token_id) or Book(cand.token_id)
            info = self.venue.get_market_info(cand.token_id, cand.condition_id)
            if mode is None:
                mode = self.choose_exit_mode()   # one draw per scan: a skipped market does not skew the A/B split
            if available is None:
                cash = self.venue.collateral_balance()
                self.state.counters["cash"] = {"usdc": str(cash), "at": now.isoformat(timespec="seconds")}
                available = min(cfg.capital.total - self.deployed(), cash)
            size = cfg.capital.max_trade_size
            if self.once and book.best_ask is not None:
                size = smallest_trade(book.best_ask, info.min_order_size, mode == ExitMode.LIMIT_ORDERS)
            try:
                plan = self.trader.plan_entry(book, info, size, tp_pct, s.stop_loss_pct,
                                              needs_resting_tp=mode == ExitMode.LIMIT_ORDERS, min_price=s.min_price,
                                              max_price=s.max_price, max_spread=s.max_spread,
                                              max_spread_share=s.max_spread_share_of_tp, budget=available)
            except EntrySkipped as exc:
                log.info("Skipping %s: %s", cand.question[:50] or cand.token_id, exc.message)
                continue
            return cand, info, book, plan, mode
        return None

    def open_new(self, now: datetime) -> Position | None:
        """Scan, pick one market, buy, and arm its exits. Returns the position when one was opened."""
        picked = self.pick_entry(now)
        if picked is None:
            return None
        cand, info, book, plan, mode = picked
        s = self.config.strategy
        pos = Position(token_id=cand.token_id, condition_id=cand.condition_id, market_id=cand.market_id,
                       question=cand.question, outcome=cand.outcome, exit_mode=mode, status=PositionState.OPENING,
                       tp_price=plan.tp_price, sl_price=plan.sl_price, tick_size=info.tick_size,
                       min_order_size=info.min_order_size, neg_risk=info.neg_risk, market_version=cand.version,
                       trail_pct=s.trailing_stop_pct, trail_activation_pct=s.trailing_activation_pct,
                       break_even_at_pct=s.break_even_at_pct, opened_at=now, updated_at=now,
                       metrics={"ab_mode": mode.value, "fee_curve": [str(info.fee_rate), info.fee_exponent]})
        apply(pos, OrderIntent(Role.ENTRY, plan.max_price, plan.usdc), now)
        self.state.add(pos)
        self.save()  # the intent is on disk before the order is signed
        if mode == ExitMode.LIMIT_ORDERS:
            log.info("Placing BUY %s @ %s with concurrent TP/SL (%s)", fmt(plan.expected_shares), fmt(book.best_ask),
                     cand.question[:60])
        else:
            log.info("Placing BUY %s @ %s TP=%s SL=%s (%s)", fmt(plan.expected_shares), fmt(book.best_ask),
                     fmt(plan.tp_price), fmt(plan.sl_price), cand.question[:60])

        def record(order_id: str) -> None:   # signed first: the order's id is on disk before it leaves
            apply(pos, OrderSigned(order_id, self.clock.time()), now)
            self.save()

        try:
            result = self.trader.execute_buy(cand.token_id, plan, info, before_post=record)
        except UnknownOutcome as exc:
            log.warning("BUY answer lost (%s): the order is looked up by its id before anything else", exc)
            return pos
        except (OrderRejected, TemporaryVenueError) as exc:   # refused: nothing happened, nothing is owned
            log.warning("BUY refused: %s", exc)
            if isinstance(exc, OrderRejected) and exc.is_balance and self._enough_collateral(plan.usdc, info):
                self.lock.refused(f"an entry BUY of ${fmt(plan.usdc)}")   # the USDC was there (FACTS.md Part 0, 0.4)
            self._unfilled(pos, now, f"refused: {exc}")
            return pos
        crashpoint("after_buy")
        self.lock.went_through()
        fill = result.fill
        if not fill.settled:
            log.info("BUY %s answered %s without amounts (a market with a matching delay?): looked up by its id",
                     fill.order_id[:18], fill.status)
        elif result.shares_held <= 0:
            self._unfilled(pos, now, f"order {fill.order_id[:18]} {fill.status or 'unmatched'}")
        else:
            self._opened(pos, fill.order_id, result.shares_held, fill.avg_price or plan.max_price, fill.usdc, fill.fee,
                         now, fill.confirmed)
        return pos

    def _enough_collateral(self, usdc: Decimal, info: MarketInfo) -> bool:
        """Whether the account's USDC covers ``usdc`` and the largest fee it could cost (a balance read)."""
        try:
            return self.venue.collateral_balance() >= usdc * (1 + info.fee_rate)
        except VenueError:
            return False

    # -- concurrent mode: the TP rests -------------------------------------------------------------

    def limit_orders(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        """Concurrent mode: the TP rests on the book (checked every order_check_interval); the SL is
        watched from the batched book every loop; time exit by real elapsed time."""
        book = snap.books.get(pos.token_id)
        if pos.status == PositionState.EXITING:
            self.exits.resume(pos, book, now)
            return
        if pos.status != PositionState.OPEN:
            return   # (settling: it waits for the venue's trades, which the settle phase reads)
        self.tps_from_feed(pos, snap.feed_orders, now)
        if snap.open_orders is not None and pos.live_tps:
            self.check_tp(pos, snap.open_orders, now)
        if pos.status != PositionState.OPEN:
            return
        if pos.pending is None and tps_missing(pos) and self.lock.may_place_tp():
            self.arm_tp(pos, now)   # a TP whose fill failed, or that waited out a balance lock: rests again
            if pos.status != PositionState.OPEN:
                return
        self._warn_if_no_bid(pos, book)
        bid = book.best_bid if book else None
        reason = self._exit_trigger(pos, bid, now, watch_tp=not pos.live_tps)
        if reason is not None:
            self.exits.start(pos, reason, book, now, snap.seen.get(pos.token_id), self._tp_rung(pos, reason, bid))
        elif snap.open_orders is not None:
            log.info("Position %s TP=%s SL=armed@%s bid=%s", pos.id, f"{len(pos.live_tps)} open" if pos.tp_ladder
                     else "open" if pos.live_tps else "none", fmt(pos.sl_price), fmt(bid))

    def tps_from_feed(self, pos: Position, feed_orders: dict[str, OrderFeed], now: datetime) -> None:
        """What the user channel said of the position's resting TPs (``tp_from_feed`` for each)."""
        for order_id in pos.tp_order_ids:
            if order_id in feed_orders:
                self.tp_from_feed(pos, feed_orders[order_id], now)

    def tp_from_feed(self, pos: Position, told: OrderFeed, now: datetime) -> None:
        """What the user channel said of the position's resting TP: its fills are booked at once, from the
        channel's own trades when they account for all of it (maker fills: no fee), else from the order's
        trades over REST. A TP the channel says was cancelled, or whose trade failed, is checked over REST
        (``check_tp``: the venue's word before a new TP is placed)."""
        if pos.status != PositionState.OPEN or told.order_id not in pos.tp_order_ids:
            return   # an exit retires its own TP; an older TP's news is its own
        if told.canceled or told.failed:
            self.check_tp(pos, {}, now)
            return
        new = book_tp(pos, self.venue, told.order_id, told.size_matched, tp_limit(pos, told.order_id), now,
                      final=told.final, known=told.maker_fill, source="push")
        if new <= 0:
            return
        self.save()
        if pos.trading:
            log.info("TP %s of %s partly filled (user channel): %s shares left", told.order_id[:18], pos.id,
                     fmt(pos.shares))
        else:
            log.info("TAKE PROFIT %s (user channel): sold %s @ %s, pnl=$%s", pos.id, fmt(pos.sold_shares),
                     fmt(pos.exit_price, 4), fmt(pos.realized_pnl, 2))

    def check_tp(self, pos: Position, open_orders: dict[str, OrderState], now: datetime) -> None:
        """Book TP fills (each rung of a ladder) from the open-orders list; one follow-up read for a TP that left
        it: the order, and when the venue no longer answers for it (it forgets orders that are not live: FACTS.md
        Part 0, 0.3), its trades. Filled: the position closes with its profit (a rung: the rest stays protected);
        gone unfilled with shares left: a resolved market (which cancels resting orders) closes with its payout,
        else the TP is placed again."""
        apply(pos, TpChecked(now), now)
        gone: list[tuple[str, OrderState | None]] = []
        for order_id in pos.tp_order_ids:
            if not pos.trading:
                break
            listed = open_orders.get(order_id)
            if listed is not None:
                if book_tp(pos, self.venue, order_id, listed.filled_size, listed.price or tp_limit(pos, order_id),
                           now, source="poll"):
                    log.info("TP %s of %s partly filled: %s shares left", order_id, pos.id, fmt(pos.shares))
                    self.save()
                continue
            state = self.venue.get_order(order_id)
            resting = state is not None and state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED,
                                                             OrderStatus.PENDING)
            if state is None:
                book_gone_tp(pos, self.venue, order_id, now, source="poll")
            else:
                book_tp(pos, self.venue, order_id, state.filled_size, state.price or tp_limit(pos, order_id), now,
                        final=not resting, source="poll")
            self.save()
            rec = pos.record(order_id)
            if not resting and (not pos.tp_ladder or rec is None or rec.size is None or not is_dust(remaining(rec))):
                gone.append((order_id, state))   # left the book (a rung: without filling in full)
        if not gone and pos.status == PositionState.OPEN:
            return
        if pos.status != PositionState.OPEN:
            log.info("TAKE PROFIT %s: sold %s @ %s, pnl=$%s%s", pos.id, fmt(pos.sold_shares), fmt(pos.exit_price, 4),
                     fmt(pos.realized_pnl, 2), " (settling: the venue confirms the trades)"
                     if pos.status == PositionState.SETTLING else "")
            return
        self._resolution_news.add(pos.token_id)   # a resolution cancels resting orders (FACTS.md Part 0, 0.5)
        if self.market_resolved(pos, None, now):
            return
        # The TP is gone (cancelled by the venue, or unknown) with shares left: place it again.
        for order_id, state in gone:
            log.warning("TP %s of %s is %s with %s shares left; placing it again", order_id, pos.id,
                        state.status.value if state else "no longer live", fmt(pos.shares))
        self.arm_tp(pos, now)

    def arm_tp(self, pos: Position, now: datetime) -> None:
        """Place the TP for the position's shares; on a refusal fall back to monitoring. The TP is signed
        first and its id saved before it is sent, so a lost answer or a crash never leads to a second TP:
        an unknown outcome is looked up by that id (``resolve_pending_tp``), never taken as a refusal."""
        if pos.exit_mode != ExitMode.LIMIT_ORDERS:
            return   # (fell back to monitoring meanwhile, e.g. a TP refused earlier in this loop: nothing rests)
        if is_dust(pos.shares):
            apply(pos, NothingLeft(), now)
            self.save()
            return
        orders = rungs_to_place(pos) if pos.tp_ladder else [RungOrder(-1, pos.tp_price or Decimal(0),
                                                                        round_shares(pos.shares))]
        if not orders:
            return
        info = self.venue.get_market_info(pos.token_id, pos.condition_id)
        for order in orders:
            if not self._place_tp(pos, order, info, now) or pos.status != PositionState.OPEN:
                return

    def _place_tp(self, pos: Position, order: RungOrder, info: MarketInfo, now: datetime) -> bool:
        """Place one TP (``order.rung`` -1: the single TP); False when it is not resting (refused: the position
        falls back to monitoring, its other rungs cancelled first; or its outcome is unknown)."""
        rung = order.rung if order.rung >= 0 else None
        apply(pos, OrderIntent(Role.TP, order.price, order.size, rung=rung), now)
        self.save()

        def record(order_id: str) -> None:
            apply(pos, OrderSigned(order_id, self.clock.time()), now)
            self.save()

        try:
            fill = self.trader.place_limit_sell(pos.token_id, order.price, order.size, info, before_post=record)
        except UnknownOutcome as exc:
            log.warning("TP of %s: outcome unknown (%s); looking its id up before anything else", pos.id, exc)
            self.save()
            return False
        except VenueError as exc:
            apply(pos, OrderNotPlaced(str(exc)), now)
            if isinstance(exc, OrderRejected) and exc.is_balance and not unconfirmed(pos) and self._holds(pos):
                # The shares are there, settled, and the venue still says "not enough balance": a balance lock
                # (FACTS.md Part 0, 0.4). The TP is watched meanwhile and placed again once orders go through.
                # (Right after a buy whose trades are not settled yet, the refusal is the settlement's lag.)
                self.lock.refused(f"the TP of {pos.id} for {fmt(order.size)} shares")
                self.save()
                return False
            if pos.live_tps and not self.exits.retire_tps(pos, now):
                # (a ladder's other rungs come off the book before it is monitored; unclear: tried next loop)
                log.warning("TP rung of %s refused (%s); its other rungs are not cancelled yet: next loop", pos.id,
                            exc)
                self.save()
                return False
            if pos.status == PositionState.OPEN:
                self.fall_back(pos, str(exc), now)
            return False
        self.lock.went_through()
        crashpoint("after_tp")
        # What crossed at once filled as a taker (fee); the rest rests and fills later as a maker (no fee).
        # (That taker part is not settled yet: booked unconfirmed, so that a FAILED trade gives the shares back.)
        apply(pos, TpResting(fill.order_id, fill.filled_shares, fill.usdc, fill.fee, confirmed=fill.confirmed), now)
        rec = pos.record(fill.order_id)
        if rung is not None and rec is not None and rec.state == RecordState.DONE and pos.status in RUNG_STATES:
            apply(pos, RungFilled(rung), now)   # (it crossed the book in full as it was placed)
        self.save()
        return True

    def _holds(self, pos: Position) -> bool:
        """Whether the account holds the position's shares (a refreshed balance read)."""
        try:
            held = self.venue.token_balance(pos.token_id, refresh=True)
        except VenueError:
            return False
        return held + BALANCE_TOLERANCE >= round_shares(pos.shares)

    def settle(self, now: datetime, meter: CallMeter | None = None) -> None:
        """Fills whose trades the venue has not settled yet (a match is not a settlement: FACTS.md Part 0, 0.2)
        are checked from the account's trades (one read per token, together): settled, they are confirmed (a
        position waiting in ``settling`` closes); FAILED, what they booked is taken back (the shares come back
        under protection, a sale is sold again, a buy that never settled closes as entry_unfilled). A new fill is
        checked at once, the others at most every SETTLE_CHECK_SECONDS."""
        todo: dict[str, str] = {}
        waiting: list[Position] = []
        since: float | None = None
        for pos in self.state.active_positions():
            recs = [r for r in pos.orders if r.order_id and r.filled > 0 and not r.confirmed]
            if recs:
                waiting.append(pos)
            for rec in recs:
                todo[rec.order_id or ""] = pos.token_id
                t = rec.sent_at or pos.opened_at.timestamp()
                since = t if since is None else min(since, t)
        if not todo or since is None:
            self._settle_seen.clear()
            return
        t = self.clock.time()
        if set(todo) <= self._settle_seen and t - self._last_settle < SETTLE_CHECK_SECONDS:
            return
        self._last_settle, self._settle_seen = t, set(todo)
        with meter.attribute(waiting, now) if meter else nullcontext():
            fills = self.venue.orders_trades(todo, since)
        for pos in waiting:
            self.guarded(pos, now, partial(self._settle_one, pos, fills, now))
        self.save()

    def _settle_one(self, pos: Position, fills: dict, now: datetime) -> None:
        for rec in [r for r in pos.orders if r.order_id and r.filled > 0 and not r.confirmed]:
            f = fills.get(rec.order_id or "")
            if f is None:
                continue
            before, status, failed_before = pos.shares, pos.status, rec.failed
            apply(pos, FillsChecked(rec.order_id or "", f.filled_shares, f.usdc, f.fee, f.failed_shares, f.confirmed),
                  now)
            newly_failed = f.failed_shares > failed_before
            if newly_failed and pos.shares > before:
                note = (f"{rec.role.value} order {(rec.order_id or '')[:18]} of {pos.id}: {fmt(f.failed_shares)} "
                        f"shares matched but the venue's trades FAILED (a match is not a settlement): taken back, "
                        f"{fmt(pos.shares)} shares held again, {pos.status.value}")
                log.warning("%s", note)
                self.alerter.send("failed_fill", note)
            elif newly_failed:
                log.warning("%s order %s of %s: %s shares matched but FAILED on the venue: not booked (%s)",
                            rec.role.value, (rec.order_id or "")[:18], pos.id, fmt(f.failed_shares), pos.status.value)
            if status == PositionState.SETTLING and pos.status == PositionState.CLOSED:
                log.info("CLOSED %s %s (trades settled): pnl=$%s", pos.id, pos.close_reason.value
                         if pos.close_reason else "", fmt(pos.realized_pnl, 2))

    def resolve_pending_tp(self, pos: Position, now: datetime) -> bool:
        """A TP whose answer was lost: the venue says, by its saved id, whether it rests (adopt it) or was
        never placed (place it again). False while that is not known: nothing else is sent meanwhile."""
        rec = pos.pending
        if rec is None or rec.role != Role.TP:
            return True
        if rec.state == RecordState.SENT and rec.order_id:
            out = look_up(self.venue, rec.order_id, pos.token_id, rec.sent_at or 0.0, now.timestamp(),
                          marketable=False)
            if not out.known:
                log.info("TP %s of %s: outcome not known yet (%s)", rec.order_id[:18], pos.id, out.status)
                return False
            if out.exists:
                order_id = rec.order_id
                apply(pos, TpResting(order_id), now)
                if out.filled_shares > 0 and pos.trading:
                    book_tp(pos, self.venue, order_id, out.filled_shares, tp_limit(pos, order_id), now,
                            final=not out.resting)
                self.save()
                log.warning("TP %s of %s was placed although its answer was lost: adopted", order_id[:18], pos.id)
                return pos.trading
        apply(pos, OrderNotPlaced("never placed"), now)
        log.info("TP of %s was never placed; placing it now", pos.id)
        if pos.status == PositionState.OPEN and pos.exit_mode == ExitMode.LIMIT_ORDERS:
            self.arm_tp(pos, now)
        else:
            self.save()
        return pos.trading

    def fall_back(self, pos: Position, why: str, now: datetime) -> None:
        log.warning("Limit orders failed, using legacy monitoring (%s): %s", pos.id, why)
        apply(pos, FellBack(why), now)
        self.save()

    # -- legacy monitoring: the bot watches TP and SL ------------------------------------------------

    def monitor(self, pos: Position, book: Book | None, now: datetime, seen: tuple[str, float] | None = None) -> None:
        """Monitor mode: bid >= TP or bid <= SL -> marketable sell; time exit by real elapsed time. ``seen``:
        where the book came from (push or poll) and when (recorded with an exit it triggers)."""
        if pos.status == PositionState.EXITING:
            self.exits.resume(pos, book, now)
            return
        if pos.status != PositionState.OPEN:
            return
        self._warn_if_no_bid(pos, book)
        bid = book.best_bid if book else None
        if bid is not None and self._last_logged_bid.get(pos.id) != bid:
            self._last_logged_bid[pos.id] = bid
            log.info("Position %s price=%s tp=%s sl=%s", pos.id, fmt(bid), fmt(next_target(pos)), fmt(pos.sl_price))
        reason = self._exit_trigger(pos, bid, now, watch_tp=True)
        if reason is not None:
            self.exits.start(pos, reason, book, now, seen, self._tp_rung(pos, reason, bid))

    def _exit_trigger(self, pos: Position, bid: Decimal | None, now: datetime, watch_tp: bool) -> CloseReason | None:
        """Barriers in fixed priority: stop-loss, then a watched take-profit, then the holding time. A stop that
        follows the price (bot/stops.py) is raised first, on this bid."""
        if bid is not None and pos.status == PositionState.OPEN and (pos.trail_pct or pos.break_even_at_pct):
            self.follow(pos, bid, now)
        if bid is not None and pos.sl_price is not None and bid <= pos.sl_price:
            return CloseReason.STOP_LOSS
        target = next_target(pos)
        if watch_tp and bid is not None and target is not None and bid >= target:
            return CloseReason.TAKE_PROFIT
        if pos.age_hours(now) >= self.config.strategy.max_hold_hours:
            return CloseReason.TIME_EXIT
        return None

    @staticmethod
    def _tp_rung(pos: Position, reason: CloseReason, bid: Decimal | None) -> int | None:
        """A watched take-profit of a ladder sells up to the highest rung the bid reached and keeps the rest (None:
        the exit sells everything, as at the last rung)."""
        if reason != CloseReason.TAKE_PROFIT or not pos.tp_ladder or bid is None:
            return None
        rung = reached_rung(pos, bid)
        return rung if rung is not None and rung < len(pos.tp_ladder) - 1 else None

    def follow(self, pos: Position, bid: Decimal, now: datetime) -> None:
        """A new highest bid, and the stop raised when its rules say so (never lowered: bot/stops.py); saved with the
        loop's (or the event phase's) save, as every other change of the update phase."""
        if pos.high_bid is not None and bid <= pos.high_bid:
            return
        rules = StopRules(pos.trail_pct, pos.trail_activation_pct, pos.break_even_at_pct)
        fee = pos.metrics.get("fee_curve") or ["0", 0]
        try:
            fee_rate, fee_exponent = Decimal(str(fee[0])), int(fee[1])
        except (ArithmeticError, ValueError, TypeError, IndexError):
            fee_rate, fee_exponent = Decimal(0), 0
        # (break-even: what the shares left must still bring back, a part of the TP having sold already)
        moved = next_stop(pos.sl_price, rules, pos.entry_price, bid, pos.shares, pos.entry_cost - pos.exit_proceeds,
                          next_target(pos), pos.tick_size, fee_rate, fee_exponent)
        apply(pos, StopRaised(bid, *(moved or (None, None))), now)
        if moved is not None:
            log.info("STOP RAISED %s: stop %s (%s; highest bid %s)", pos.id, fmt(moved[0]),
                     moved[1].replace("_", "-"), fmt(bid))

    def _warn_if_no_bid(self, pos: Position, book: Book | None) -> None:
        """Without a bid the stop-loss cannot fire: say so once per position (and again after bids came back)."""
        if book is not None and book.best_bid is None and pos.status == PositionState.OPEN:
            if pos.id not in self._warned_no_bid:
                self._warned_no_bid.add(pos.id)
                log.warning("Position %s: the book has no bids, so its stop-loss at %s cannot fire until a bid "
                            "appears", pos.id, fmt(pos.sl_price))
        else:
            self._warned_no_bid.discard(pos.id)

    # -- start-up, the user's commands, the loop's summary ------------------------------------------------

    def check_trade_size(self) -> None:
        """Warn about a trade size that cannot rest a TP on typical markets; refuse one that could not get
        out of a position at all (ConfigError)."""
        for problem in check_trade_size(self.config):
            log.warning("%s", problem)
        unexitable = unexitable_trade_size(self.config)
        if unexitable:
            raise ConfigError(unexitable)

    def fill_missing_exit_prices(self) -> None:
        """Positions from older files may lack TP/SL prices: derive them from the config."""
        s = self.config.strategy
        for pos in self.state.active_positions():
            if (pos.tp_price is None or pos.sl_price is None) and pos.entry_price > 0:
                tp, sl = exit_prices(pos.entry_price, s.take_profit_pct, s.stop_loss_pct, pos.tick_size)
                apply(pos, ExitPricesSet(tp, sl), pos.updated_at)

    def reconcile(self, now: datetime, meter: CallMeter, only: set[str] | None) -> set[str] | None:
        """Start-up reconciliation: the stored positions (or ``only`` these) checked against the venue, one by one
        (bot/reconcile.py). Returns the positions to check again next loop (a temporary error; empty: done), or
        None when the venue did not answer at all (everything is tried again next loop)."""
        self.fill_missing_exit_prices()
        try:
            with meter.attribute(None, now):
                report = reconcile(self.state, self.venue, now, lambda p: self.arm_tp(p, now),
                                   lambda p: self.finish_opening(p, now),
                                   cancel_unknown=self.config.trading.cancel_unknown_orders, only=only)
        except VenueError as exc:   # the venue is not answering yet: positions are still managed this loop
            log.warning("Start-up reconciliation could not run (%s); trying again next loop, no new trades until "
                        "it has", exc)
            return None
        self.reconciled(report)
        return set(report.retry)

    def reconciled(self, report: ReconcileReport) -> None:
        """After start-up reconciliation: a position that needs a person pauses new entries (and alerts); a
        pause for such positions ends once they all agree with the venue again; one line says what it found."""
        attention = [p for p in self.state.positions if p.status == PositionState.NEEDS_ATTENTION]
        for pos in attention:
            self.alerter.send("needs_attention", f"position {pos.id}: {pos.attention_reason}")
        if attention:
            self.pause("a position needs attention (found at start-up): " + "; ".join(
                f"{p.id}: {p.attention_reason}" for p in attention)[:500])
        elif report.restored and self.state.paused and "needs attention" in (self.state.pause_reason or ""):
            self.state.resume()
            log.warning("Every position agrees with the venue again: new trades allowed")
        self.save()
        (log.warning if report.found_anything else log.info)(report.summary())
        if report.found_anything:
            self.alerter.send("reconciliation", report.summary())

    def command(self, cmd: dict, now: datetime) -> None:
        """One command given while the bot runs (see PositionStore.send_control)."""
        what = cmd.get("command")
        try:
            if what == "resume":
                was = self.state.pause_reason if self.state.paused else None
                self.state.resume()
                self.save()
                log.warning("Resumed by the user: new trades allowed again%s",
                            f" (was paused: {was})" if was else "")
            elif what in ("convert", "close"):
                for line in (self.convert_to_monitor(now, cmd.get("id")) if what == "convert"
                             else self.close_by_hand(now, cmd.get("id"))):
                    log.warning("%s (asked by the user): %s", what, line)
            else:
                log.warning("Ignoring an unknown command: %r", what)
        except VenueError as exc:
            log.error("%s (asked by the user) failed: %s; run it again", what, exc)

    def summary(self) -> str:
        """The loop's line: open positions by mode, closed ones and their P&L, the pause."""
        active = self.state.active_positions()
        closed, pnl = self.state.closed_totals()   # the history's running totals: no walk over it
        modes = {m: sum(1 for p in active if p.exit_mode == m) for m in ExitMode}
        return (f"{len(active)} open ({modes[ExitMode.LIMIT_ORDERS]} limit_orders, {modes[ExitMode.MONITOR]} monitor), "
                f"{closed} closed, pnl ${fmt(pnl, 2)}" + (" [PAUSED]" if self.state.paused else ""))

    # -- the user's commands -------------------------------------------------------------------------

    def convert_to_monitor(self, now: datetime, position_id: str | None = None) -> list[str]:
        """The seed's rollback: open limit_orders positions (or one) go to monitoring. Each TP is cancelled
        by the exit protocol's rules (a TP that filled meanwhile is booked, not forgotten). Returns lines."""
        out = []
        targets = [p for p in self.state.active_positions() if p.exit_mode == ExitMode.LIMIT_ORDERS
                   and (position_id is None or p.id == position_id)]
        if position_id is not None and not targets:
            return [f"no open limit_orders position with id {position_id}"]
        for pos in targets:
            if pos.live_tps and not self.exits.retire_tps(pos, now):
                out.append(f"{pos.id}: TP still open after the cancel; try again")
                continue
            if not pos.trading:
                out.append(f"{pos.id}: its TP had filled: closed with pnl ${fmt(pos.realized_pnl, 2)}")
            elif pos.status in (PositionState.OPEN, PositionState.NEEDS_ATTENTION):
                apply(pos, FellBack("converted to monitor by the user"), now)
                out.append(f"{pos.id}: now monitored (TP {fmt(pos.tp_price)}, SL {fmt(pos.sl_price)}), "
                           f"{fmt(pos.shares)} shares")
            self.save()
        return out or ["no open limit_orders positions"]

    def close_by_hand(self, now: datetime, position_id: str | None) -> list[str]:
        """A person closes a position that needs attention (its shares were sold or moved by hand): its TP is
        cancelled by the exit protocol's rules, and it closes as ``manual`` with what the bot booked. Only
        for positions the bot cannot manage any more; the others it manages itself."""
        pos = self.state.get(position_id or "")
        if pos is None or pos.status != PositionState.NEEDS_ATTENTION:
            return [f"no position needing attention with id {position_id}: `status` lists them"]
        if pos.live_tps and not self.exits.retire_tps(pos, now):
            return [f"{pos.id}: its TP is still open after the cancel; try again"]
        apply(pos, ClosedByHand(), now)
        self.save()
        return [f"{pos.id}: closed by hand ({fmt(pos.shares)} shares the bot no longer manages; booked pnl "
                f"${fmt(pos.realized_pnl, 2)}); `resume` allows new trades again"]

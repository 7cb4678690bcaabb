#!/usr/bin/env python3
"""Polymarket TP/SL bot: buys, protects every position with a take-profit and a stop-loss, and exits
after a maximum holding time. See README.md.

    python main_bot.py [--config config.json] [--loops N]     run (dry-run unless the config says otherwise)
    python main_bot.py --sim [--loops N]                      run against the embedded simulated exchange
    python main_bot.py status [--json]                        show positions, blacklist and pause
    python main_bot.py report | doctor | convert | resume     A/B report, pre-flight checks, rollback, unpause
    python main_bot.py --live-once [--yes]                    one smallest valid position, to its end
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from bot.alerts import Alerter
from bot.clock import Clock, SystemClock
from bot.config import (
    BotConfig,
    ConfigError,
    check_trade_size,
    load_bot_config,
    load_secrets,
    require_live_secrets,
)
from bot.crashpoints import crashpoint
from bot.doctor import Doctor, as_json, format_checks, smallest_trade
from bot.errors import (
    BotError,
    MalformedResponse,
    OrderRejected,
    StateFileError,
    TemporaryVenueError,
    UnknownOutcome,
    VenueError,
)
from bot.exits import ExitProtocol, book_sale, book_tp_fill
from bot.logger import get_logger, register_secret
from bot.metrics import CallMeter
from bot.money import SHARE_EPSILON, fmt, is_dust, round_shares
from bot.position_manager import (
    BotState,
    CloseReason,
    ExitMode,
    Position,
    PositionState,
    PositionStore,
    transition,
)
from bot.reconcile import reconcile, resolve_opening
from bot.scanner import Candidate, MarketScanner
from bot.trader import EntryPlan, EntrySkipped, Trader, exit_prices
from bot.venue.base import Book, MarketInfo, OrderState, OrderStatus, Venue

log = logging.getLogger("bot")

#: Metrics-only changes (API call counts) are written at most this often.
METRICS_FLUSH_SECONDS = 60
#: Even when every book shows the TPs intact, the open-orders list is read every this many check intervals.
FULL_CHECK_EVERY = 10
#: After this many loops in a row that failed with unexpected errors the bot stops opening positions.
MAX_CONSECUTIVE_FAILURES = 5
#: A scan tries at most this many candidates (best first) before giving up until the next scan.
MAX_CANDIDATES_PER_SCAN = 5


@dataclass
class Snapshot:
    """What one loop read from the venue: books of held tokens, and open orders when they were due."""

    books: dict[str, Book] = field(default_factory=dict)
    open_orders: dict[str, OrderState] | None = None


def tp_visibly_intact(pos: Position, book: Book | None) -> bool:
    """True when the book shows the position's TP cannot have traded: no bid reaches its price and the
    ask level at its price holds at least its size."""
    if book is None or pos.tp_price is None:
        return False
    if book.best_bid is not None and book.best_bid >= pos.tp_price:
        return False
    level = next((size for price, size in book.asks if price == pos.tp_price), Decimal(0))
    return level + SHARE_EPSILON >= round_shares(pos.shares)


class Bot:
    """The loop: read the venue in batches, update positions, open new ones, save."""

    def __init__(self, config: BotConfig, venue: Venue, scanner: MarketScanner, store: PositionStore,
                 clock: Clock | None = None, rng: random.Random | None = None, alerter: Alerter | None = None,
                 once: bool = False):
        self.config = config
        self.venue = venue
        self.scanner = scanner
        self.store = store
        self.clock = clock or SystemClock()
        seed = config.trading.ab_test_seed
        self.rng = rng or random.Random(seed)
        self.trader = Trader(venue)
        self.state: BotState = store.load()
        self.exits = ExitProtocol(self.trader, self.save, config.trading.exit_max_slippage_pct,
                                  known_order_ids=lambda: self.state.known_order_ids())
        self.meter = CallMeter([venue, scanner], self.state)
        self.alerter = alerter or Alerter(config.alerts.webhook_url)
        self.once = once   # --live-once: one position of the smallest valid size, managed to its end
        self.opened_once = False
        self.stop_requested = False
        self.loops_done = 0
        self.consecutive_failures = 0
        self._last_order_check: float | None = None
        self._last_full_check: float | None = None
        self._last_scan: float | None = None
        self._last_logged_bid: dict[str, Decimal] = {}
        self._reconciled = False
        self._last_loop_at: float | None = None
        self._last_flush: float | None = None
        self._resolution_checked: dict[str, float] = {}

    # -- helpers ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), tz=timezone.utc)

    def save(self) -> None:
        self.store.save(self.state)

    def _fill_missing_exit_prices(self) -> None:
        """Positions from older files may lack TP/SL prices: derive them from the config."""
        s = self.config.strategy
        for pos in self.state.active_positions():
            if (pos.tp_price is None or pos.sl_price is None) and pos.entry_price > 0:
                tp, sl = exit_prices(pos.entry_price, s.take_profit_pct, s.stop_loss_pct, pos.tick_size)
                pos.tp_price = pos.tp_price or tp
                pos.sl_price = pos.sl_price or sl

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, loops: int | None = None) -> int:
        """Run until stopped (or ``loops`` iterations); returns the process exit code."""
        for problem in check_trade_size(self.config):
            log.warning("%s", problem)
        active = self.state.active_positions()
        log.info("Bot started (%s venue): %d active position(s)%s", self.venue.name, len(active),
                 "; PAUSED: " + (self.state.pause_reason or "") if self.state.paused else "")
        while not self.stop_requested and (loops is None or self.loops_done < loops):
            started = self.clock.time()
            if self._last_loop_at is not None:
                self.meter.add_run_time(started - self._last_loop_at)
            self._last_loop_at = started
            self._run_guarded()
            self.loops_done += 1
            if self.once and self.opened_once and not self.state.active_positions():
                log.info("The one position is closed: stopping (--live-once)")
                break
            if self.stop_requested or (loops is not None and self.loops_done >= loops):
                break
            self.clock.sleep(max(0.0, self.config.bot.loop_interval_seconds - (self.clock.time() - started)))
        self.save()
        log.info("Bot stopped after %d loop(s)", self.loops_done)
        return 0

    def _run_guarded(self) -> None:
        """One loop with every exception classified here, so none escapes the loop."""
        try:
            self.run_once()
            self.consecutive_failures = 0
        except StateFileError:
            raise  # never trade on without being able to record what we own
        except TemporaryVenueError as exc:
            log.warning("Venue busy, will retry next loop: %s", exc)
        except MalformedResponse as exc:
            log.error("Malformed venue response, skipped: %s", exc)
        except VenueError as exc:
            log.error("Venue error: %s", exc)
            self._count_failure(str(exc))
        except Exception as exc:  # a bug or something unforeseen: keep the positions safe, say so
            log.exception("Unexpected error in the loop: %s", exc)
            self._count_failure(f"{type(exc).__name__}: {exc}")

    def _count_failure(self, what: str) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            self._pause(f"{self.consecutive_failures} loops in a row failed; last: {what}")

    def _pause(self, reason: str) -> None:
        """Stop opening positions (existing ones are still managed) and tell the user."""
        if self.state.paused:
            return
        self.state.pause(reason)
        log.error("Pausing new trades: %s", reason)
        self.save()
        self.alerter.send("pause", reason)

    def run_once(self) -> None:
        """One iteration in fixed phases (reconciliation first, until it has succeeded once)."""
        now = self.now()
        if not self._reconciled:
            self._reconcile(now)
        snap = self._read_venue(now)
        self._update_positions(snap, now)
        if self._may_open(now):
            # The entry's calls (candidate book, buy, TP) belong to the position it opens, if any.
            before = len(self.state.positions)
            calls_before = self.meter.snapshot()
            try:
                self._place_new_trade(now)
            finally:
                self.meter.charge(self.state.positions[before:], self.meter.snapshot() - calls_before, now)
        self._flush_metrics()
        self._log_loop_summary()

    def _flush_metrics(self) -> None:
        """Every change to a position is saved where it happens; what is left at the end of a loop is
        metrics and counters, written at most every METRICS_FLUSH_SECONDS (a crash loses under a minute
        of call counts, never a position)."""
        t = self.clock.time()
        if self._last_flush is None or t - self._last_flush >= METRICS_FLUSH_SECONDS:
            self.save()
            self._last_flush = t

    def _reconcile(self, now: datetime) -> None:
        self._fill_missing_exit_prices()
        with self.meter.attribute(None, now):
            report = reconcile(self.state, self.venue, now, self._arm_tp,
                               cancel_unknown=self.config.trading.cancel_unknown_orders)
        self._reconciled = True
        for pos in self.state.positions:
            if pos.status == PositionState.NEEDS_ATTENTION:
                self.alerter.send("needs_attention", f"position {pos.id}: {pos.attention_reason}")
        if any(p.status == PositionState.NEEDS_ATTENTION for p in self.state.positions):
            self._pause("a position needs attention (found at start-up)")
        self.save()
        (log.warning if report.found_anything else log.info)(report.summary())
        if report.found_anything:
            self.alerter.send("reconciliation", report.summary())

    # -- phase 1: read ----------------------------------------------------------------------------

    def _read_venue(self, now: datetime) -> Snapshot:
        """One batched book read for every held token; the open-orders list when a TP check is due."""
        active = self.state.active_positions()
        snap = Snapshot()
        if not active:
            return snap
        with self.meter.attribute(active, now):
            snap.books = self.venue.get_books([p.token_id for p in active])
        resting = [p for p in active if p.exit_mode == ExitMode.LIMIT_ORDERS and p.tp_order_id]
        if resting and self._order_check_due(resting, snap.books):
            with self.meter.attribute(resting, now):
                snap.open_orders = {o.order_id: o for o in self.venue.open_orders()}
            self._last_order_check = self._last_full_check = self.clock.time()
        return snap

    def _order_check_due(self, resting: list[Position], books: dict[str, Book]) -> bool:
        """Every order_check_interval, unless this loop's books show every TP still resting untouched
        (its price level holds at least its size and no bid reaches it); then only every
        FULL_CHECK_EVERY intervals, as a safety net. Keeps API calls flat in the number of positions."""
        interval = self.config.trading.order_check_interval_seconds
        t = self.clock.time()
        if self._last_order_check is not None and t - self._last_order_check < interval:
            return False
        if self._last_full_check is None or t - self._last_full_check >= FULL_CHECK_EVERY * interval:
            return True
        self._last_order_check = t
        return any(not tp_visibly_intact(p, books.get(p.token_id)) for p in resting)

    # -- phase 2: update --------------------------------------------------------------------------

    def _update_positions(self, snap: Snapshot, now: datetime) -> None:
        """Route each active position to the handler of its own exit mode."""
        for pos in self.state.active_positions():
            if pos.status == PositionState.NEEDS_ATTENTION:
                continue
            try:
                with self.meter.attribute(pos, now):
                    if self._market_resolved(pos, snap.books.get(pos.token_id), now):
                        continue
                    if pos.status == PositionState.OPENING:
                        self._finish_opening(pos, now)
                    elif pos.exit_mode == ExitMode.LIMIT_ORDERS:
                        self._update_position_with_limit_orders(pos, snap, now)
                    else:
                        self._update_position_legacy_monitoring(pos, snap, now)
            except (TemporaryVenueError, MalformedResponse, OrderRejected) as exc:
                log.warning("Position %s: %s; retrying next loop", pos.id, exc)
            if pos.status == PositionState.NEEDS_ATTENTION:
                self.alerter.send("needs_attention", f"position {pos.id}: {pos.attention_reason}")
                self._pause(f"position {pos.id} needs attention: {pos.attention_reason}")
            if pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS:
                until = now + timedelta(hours=self.config.strategy.blacklist_hours)
                self.state.blacklist_market(pos.condition_id, until)
                self.save()
                log.info("Blacklisted market %s until %s after a stop-loss", pos.condition_id[:12], until.isoformat())
                self.alerter.send("stop_loss", f"{pos.question or pos.token_id}: sold {fmt(pos.sold_shares)} @ "
                                               f"{fmt(pos.exit_price, 4)}, pnl ${fmt(pos.realized_pnl, 2)}")

    def _market_resolved(self, pos: Position, book: Book | None, now: datetime) -> bool:
        """An empty book may mean the market resolved: ask Gamma (at most once per scan interval) and, if so,
        close the position at its payout. Redeeming the winning shares is done on polymarket.com."""
        if pos.status == PositionState.OPENING or (book is not None and (book.bids or book.asks)):
            return False
        t = self.clock.time()
        if t - self._resolution_checked.get(pos.id, 0.0) < self.config.strategy.scan_interval_seconds:
            return False
        self._resolution_checked[pos.id] = t
        payout = self.scanner.resolution(pos.market_id, pos.outcome) if pos.market_id and pos.outcome else None
        if payout is None:
            return False
        pos.tp_order_id = None   # the venue cancels open orders of a resolved market
        book_sale(pos, pos.shares, pos.shares * payout, "")
        transition(pos, PositionState.CLOSED, now, reason=CloseReason.MARKET_RESOLVED)
        self.save()
        log.info("MARKET RESOLVED %s: %s pays %s per share, pnl=$%s (redeem on polymarket.com)", pos.id,
                 pos.outcome, fmt(payout), fmt(pos.realized_pnl, 2))
        return True

    def _finish_opening(self, pos: Position, now: datetime) -> None:
        """An entry whose answer never arrived (timeout, crash): adopt what the venue says it bought."""
        resolve_opening(pos, self.venue, now, known=self.state.known_order_ids())
        self.save()
        if pos.status == PositionState.OPEN and pos.exit_mode == ExitMode.LIMIT_ORDERS and not pos.tp_order_id:
            self._arm_tp(pos)

    def _exit_trigger(self, pos: Position, bid: Decimal | None, now: datetime, watch_tp: bool) -> CloseReason | None:
        if bid is not None and pos.sl_price is not None and bid <= pos.sl_price:
            return CloseReason.STOP_LOSS
        if watch_tp and bid is not None and pos.tp_price is not None and bid >= pos.tp_price:
            return CloseReason.TAKE_PROFIT
        if pos.age_hours(now) >= self.config.strategy.max_hold_hours:
            return CloseReason.TIME_EXIT
        return None

    def _update_position_with_limit_orders(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        """Concurrent mode: the TP rests on the book (checked every order_check_interval); the SL is
        watched from the batched book every loop; time exit by real elapsed time."""
        book = snap.books.get(pos.token_id)
        if pos.status == PositionState.EXITING:
            self.exits.resume(pos, book, now)
            return
        if snap.open_orders is not None and pos.tp_order_id:
            if self._check_tp(pos, snap.open_orders, now):
                return
        if pos.status != PositionState.OPEN:
            return
        bid = book.best_bid if book else None
        reason = self._exit_trigger(pos, bid, now, watch_tp=pos.tp_order_id is None)
        if reason is not None:
            self.exits.start(pos, reason, book, now)
        elif snap.open_orders is not None:
            log.info("Position %s TP=%s SL=armed@%s bid=%s", pos.id, "open" if pos.tp_order_id else "none",
                     fmt(pos.sl_price), fmt(bid))

    def _check_tp(self, pos: Position, open_orders: dict[str, OrderState], now: datetime) -> bool:
        """Book TP fills from the open-orders list; one follow-up read for a TP that left it.
        Returns True when the position closed."""
        listed = open_orders.get(pos.tp_order_id)
        pos.last_tp_check_at = now
        if listed is not None:
            if book_tp_fill(pos, listed.filled_size, listed.price or pos.tp_price):
                log.info("TP %s of %s partly filled: %s shares left", pos.tp_order_id, pos.id, fmt(pos.shares))
                self.save()
            return False
        state = self.venue.get_order(pos.tp_order_id)
        if state is not None and state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            book_tp_fill(pos, state.filled_size, state.price or pos.tp_price)
            return False
        if state is not None:
            book_tp_fill(pos, state.filled_size, state.price or pos.tp_price)
        if is_dust(pos.shares):
            pos.tp_order_id = None
            transition(pos, PositionState.CLOSED, now, reason=CloseReason.TAKE_PROFIT)
            self.save()
            log.info("TAKE PROFIT %s: sold %s @ %s, pnl=$%s", pos.id, fmt(pos.sold_shares), fmt(pos.exit_price, 4),
                     fmt(pos.realized_pnl, 2))
            return True
        # The TP is gone (cancelled by the venue, or unknown) with shares left: re-arm it.
        log.warning("TP %s of %s is %s with %s shares left; placing it again", pos.tp_order_id, pos.id,
                    state.status.value if state else "unknown", fmt(pos.shares))
        pos.tp_order_id = None
        self._arm_tp(pos)
        return False

    def _arm_tp(self, pos: Position) -> None:
        """Place the TP for the position's shares; on failure fall back to monitoring. The TP's id is saved
        before it is sent, so a lost answer or a crash never leads to a second TP."""
        info = self.venue.get_market_info(pos.token_id, pos.condition_id)
        pos.pending = {"kind": "tp", "price": str(pos.tp_price)}
        self.save()

        def record(order_id: str) -> None:
            pos.pending = {**pos.pending, "order_id": order_id}
            self.save()

        try:
            fill = self.trader._place_limit_sell(pos.token_id, pos.tp_price, pos.shares, info, before_post=record)
        except UnknownOutcome as exc:
            order_id = pos.pending.get("order_id")
            found = self.venue.get_order(order_id) if order_id else None
            pos.pending = None
            if found is None:
                self._fall_back(pos, f"TP placement outcome unknown and the venue does not know the order ({exc})")
                return
            log.warning("TP of %s was placed although its answer was lost: adopted %s", pos.id, order_id)
            pos.tp_order_id = order_id
            self.save()
            return
        except VenueError as exc:
            pos.pending = None
            self._fall_back(pos, str(exc))
            return
        crashpoint("after_tp")
        pos.tp_order_id, pos.pending = fill.order_id, None
        book_tp_fill(pos, fill.filled_shares, fill.avg_price or pos.tp_price)
        self.save()

    def _fall_back(self, pos: Position, why: str) -> None:
        log.warning("Limit orders failed, using legacy monitoring (%s): %s", pos.id, why)
        pos.exit_mode = ExitMode.MONITOR
        pos.fallback_reason = why
        self.save()

    def _update_position_legacy_monitoring(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        """Monitor mode: bid >= TP or bid <= SL -> marketable sell; time exit by real elapsed time."""
        book = snap.books.get(pos.token_id)
        if pos.status == PositionState.EXITING:
            self.exits.resume(pos, book, now)
            return
        if pos.status != PositionState.OPEN:
            return
        bid = book.best_bid if book else None
        if bid is not None and self._last_logged_bid.get(pos.id) != bid:
            self._last_logged_bid[pos.id] = bid
            log.info("Position %s price=%s tp=%s sl=%s", pos.id, fmt(bid), fmt(pos.tp_price), fmt(pos.sl_price))
        reason = self._exit_trigger(pos, bid, now, watch_tp=True)
        if reason is not None:
            self.exits.start(pos, reason, book, now)

    # -- phase 3: open ----------------------------------------------------------------------------

    def _deployed(self) -> Decimal:
        return sum((p.entry_cost for p in self.state.active_positions()), Decimal(0))

    def _may_open(self, now: datetime) -> bool:
        if self.state.paused or self.stop_requested or (self.once and self.opened_once):
            return False
        if len(self.state.active_positions()) >= self.config.capital.max_positions:
            return False
        if self.config.capital.total - self._deployed() < Decimal(1):
            return False
        t = self.clock.time()
        if self._last_scan is not None and t - self._last_scan < self.config.strategy.scan_interval_seconds:
            return False
        self._last_scan = t
        return True

    def _choose_exit_mode(self) -> ExitMode:
        ratio = self.config.trading.ab_test_ratio
        if ratio is not None:
            return ExitMode.LIMIT_ORDERS if self.rng.random() < ratio else ExitMode.MONITOR
        return ExitMode.LIMIT_ORDERS if self.config.trading.use_concurrent_orders else ExitMode.MONITOR

    def _pick_entry(self, now: datetime) -> tuple[Candidate, MarketInfo, Book, EntryPlan, ExitMode] | None:
        """The first of the scan's best candidates (at most MAX_CANDIDATES_PER_SCAN, their books read in one
        batch) whose entry passes every filter; each one skipped is logged with its reason. Nothing is sent
        and nothing is recorded for a skipped market."""
        cfg = self.config
        s = cfg.strategy
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
                mode = self._choose_exit_mode()   # one draw per scan: a skipped market does not skew the A/B split
            if available is None:
                available = min(cfg.capital.total - self._deployed(), self.venue.collateral_balance())
            size = cfg.capital.max_trade_size
            if self.once and book.best_ask is not None:
                size = smallest_trade(book.best_ask, info.min_order_size, mode == ExitMode.LIMIT_ORDERS)
            try:
                plan = self.trader.plan_entry(book, info, min(size, available), s.take_profit_pct, s.stop_loss_pct,
                                              needs_resting_tp=mode == ExitMode.LIMIT_ORDERS, min_price=s.min_price,
                                              max_price=s.max_price, max_spread=s.max_spread,
                                              max_spread_share=s.max_spread_share_of_tp)
            except EntrySkipped as exc:
                log.info("Skipping %s: %s", cand.question[:50] or cand.token_id, exc.message)
                continue
            return cand, info, book, plan, mode
        return None

    def _place_new_trade(self, now: datetime) -> bool:
        """Scan, pick one market, buy, and arm its exits. Returns True when a position was opened."""
        cfg = self.config
        picked = self._pick_entry(now)
        if picked is None:
            return False
        cand, info, book, plan, mode = picked
        pos = Position(token_id=cand.token_id, condition_id=cand.condition_id, market_id=cand.market_id,
                       question=cand.question, outcome=cand.outcome, exit_mode=mode, status=PositionState.OPENING,
                       tp_price=plan.tp_price, sl_price=plan.sl_price, tick_size=info.tick_size,
                       min_order_size=info.min_order_size, neg_risk=info.neg_risk, opened_at=now, updated_at=now,
                       pending={"kind": "entry", "usdc": str(plan.usdc), "max_price": str(plan.max_price)},
                       metrics={"ab_mode": mode.value})
        self.state.add(pos)
        self.opened_once = True
        self.save()  # the intent is on disk before the order leaves
        if mode == ExitMode.LIMIT_ORDERS:
            log.info("Placing BUY %s @ %s with concurrent TP/SL (%s)", fmt(plan.expected_shares), fmt(book.best_ask),
                     cand.question[:60])
        else:
            log.info("Placing BUY %s @ %s TP=%s SL=%s (%s)", fmt(plan.expected_shares), fmt(book.best_ask),
                     fmt(plan.tp_price), fmt(plan.sl_price), cand.question[:60])
        try:
            result = self.trader.execute_buy(cand.token_id, plan, info)
        except UnknownOutcome as exc:
            log.warning("BUY answer lost (%s): the next loop reads the venue before doing anything else", exc)
            return False
        except OrderRejected as exc:
            log.warning("BUY refused: %s", exc)
            transition(pos, PositionState.CLOSED, now, reason=CloseReason.ENTRY_UNFILLED)
            pos.pending = None
            self.save()
            return False
        crashpoint("after_buy")
        fill = result.fill
        pos.entry_order_id = fill.order_id
        pos.entry_shares = result.shares_held
        pos.shares = result.shares_held
        pos.entry_cost = fill.usdc
        pos.entry_price = fill.avg_price or book.best_ask
        pos.pending = None
        if result.shares_held <= 0:
            transition(pos, PositionState.CLOSED, now, reason=CloseReason.ENTRY_UNFILLED)
            self.save()
            return False
        tp, sl = exit_prices(pos.entry_price, cfg.strategy.take_profit_pct, cfg.strategy.stop_loss_pct, info.tick_size)
        pos.tp_price, pos.sl_price = tp, sl
        transition(pos, PositionState.OPEN, now)
        self.save()
        log.info("%sBOUGHT %s shares @ %s for $%s (%s): TP=%s, SL armed at %s (watched: Polymarket has no stop "
                 "orders)", self.venue.log_prefix, fmt(pos.shares), fmt(pos.entry_price, 4), fmt(pos.entry_cost, 2),
                 pos.id, fmt(tp), fmt(sl))
        if mode == ExitMode.LIMIT_ORDERS:
            self._arm_tp(pos)
            if pos.tp_order_id:
                log.info("TP %s resting: SELL %s @ %s", pos.tp_order_id[:18], fmt(round_shares(pos.shares)), fmt(tp))
        return True

    # -- rollback ---------------------------------------------------------------------------------

    def convert_to_monitor(self, position_id: str | None = None) -> list[str]:
        """The seed's rollback: open limit_orders positions (or one) go to monitoring. Each TP is cancelled
        by the exit protocol's rules (a TP that filled meanwhile is booked, not forgotten). Returns lines."""
        now = self.now()
        out = []
        targets = [p for p in self.state.active_positions() if p.exit_mode == ExitMode.LIMIT_ORDERS
                   and (position_id is None or p.id == position_id)]
        if position_id is not None and not targets:
            return [f"no open limit_orders position with id {position_id}"]
        for pos in targets:
            if pos.tp_order_id and not self.exits._retire_tp(pos, now):
                out.append(f"{pos.id}: TP still open after the cancel; try again")
                continue
            if is_dust(pos.shares):
                transition(pos, PositionState.CLOSED, now, reason=CloseReason.TAKE_PROFIT)
                out.append(f"{pos.id}: its TP had filled: closed with pnl ${fmt(pos.realized_pnl, 2)}")
            else:
                pos.exit_mode = ExitMode.MONITOR
                pos.fallback_reason = "converted to monitor by the user"
                out.append(f"{pos.id}: now monitored (TP {fmt(pos.tp_price)}, SL {fmt(pos.sl_price)}), "
                           f"{fmt(pos.shares)} shares")
            self.save()
        return out or ["no open limit_orders positions"]

    # -- reporting --------------------------------------------------------------------------------

    def _log_loop_summary(self) -> None:
        active = self.state.active_positions()
        closed = [p for p in self.state.positions if p.status == PositionState.CLOSED]
        pnl = sum((p.realized_pnl or Decimal(0) for p in closed), Decimal(0))
        modes = {m: sum(1 for p in active if p.exit_mode == m) for m in ExitMode}
        calls = sum(self.meter.snapshot().values())
        log.info("Loop %d: %d open (%d limit_orders, %d monitor), %d closed, pnl $%s, api calls %d%s",
                 self.loops_done + 1, len(active), modes[ExitMode.LIMIT_ORDERS], modes[ExitMode.MONITOR],
                 len(closed), fmt(pnl, 2), calls, " [PAUSED]" if self.state.paused else "")


# ----------------------------------------------------------------------------------------------------
# Wiring and CLI


def build_venue(config: BotConfig) -> Venue:
    """Dry-run: the paper venue over read-only market data. Live: the CLOB with the env's credentials."""
    from bot.venue.live import LiveVenue
    from bot.venue.paper import PaperVenue

    api = config.api
    if config.bot.dry_run:
        reader = LiveVenue(api.clob_host, chain_id=api.chain_id, timeout_s=api.request_timeout_seconds,
                           max_requests_per_second=api.max_requests_per_second)
        return PaperVenue(reader, config.capital.total, state_file=f"{config.bot.positions_file}.paper.json")
    secrets = load_secrets()
    require_live_secrets(secrets)
    for s in (secrets.private_key, secrets.api_secret, secrets.api_passphrase):
        register_secret(s.get_secret_value() if s else None)
    creds = None
    if secrets.api_key:
        creds = (secrets.api_key.get_secret_value(), secrets.api_secret.get_secret_value(),
                 secrets.api_passphrase.get_secret_value())
    log.warning("LIVE TRADING on %s: up to $%s per trade, %d positions, $%s in total", api.clob_host,
                fmt(config.capital.max_trade_size), config.capital.max_positions, fmt(config.capital.total))
    return LiveVenue(api.clob_host, chain_id=api.chain_id, private_key=secrets.private_key.get_secret_value(),
                     funder=secrets.funder_address or None, signature_type=api.signature_type, api_creds=creds,
                     timeout_s=api.request_timeout_seconds, max_requests_per_second=api.max_requests_per_second)


def sim_config(config: BotConfig, clob_url: str, gamma_url: str, state_dir: Path) -> BotConfig:
    """The config for --sim: the sim's hosts, short intervals (20 s holds, 30 s blacklist) and a lively
    market so that a short run shows positions opening and closing; an unset A/B ratio becomes 0.5 so
    both exit modes show. The SL (14%) is wider than the TP (8%) because the entry pays the ask and the
    SL watches the bid: with the sim's 2-tick spread both then sit about as far from the mid, so a short
    run shows take-profits as well as stop-losses (a 6% SL sat one or two ticks under the bid), and an
    8% TP keeps the spread within strategy.max_spread_share_of_tp of it for most of the sim's prices."""
    data = config.model_dump(mode="json")
    data["bot"].update(positions_file=str(state_dir / "positions.json"), log_file=str(state_dir / "bot.log"),
                       loop_interval_seconds=1)
    data["trading"].update(order_check_interval_seconds=2)
    data["strategy"].update(scan_interval_seconds=1, max_hold_hours=20 / 3600, min_liquidity="0", min_volume="0",
                            min_hours_to_end=0, max_hours_to_end=None, take_profit_pct="0.08", stop_loss_pct="0.14",
                            blacklist_hours=30 / 3600)
    if data["trading"]["ab_test_ratio"] is None:
        data["trading"]["ab_test_ratio"] = 0.5  # show both exit modes side by side
    data["api"].update(clob_host=clob_url, gamma_host=gamma_url)
    return BotConfig.model_validate(data)


def run_sim(args, config: BotConfig) -> int:
    """Start the embedded simulated exchange, fund a throwaway wallet, and trade on it for real."""
    import shutil

    from bot.sim import SimExchange
    from bot.venue.live import LiveVenue
    from bot.venue.paper import PaperVenue

    state_dir = Path(args.sim_dir)
    if state_dir.exists():
        shutil.rmtree(state_dir)  # a new throwaway wallet each run: old sim positions mean nothing
    state_dir.mkdir(parents=True)
    with SimExchange(markets=args.sim_markets, seed=args.seed, default_volatility=Decimal("0.015")) as sim:
        cfg = sim_config(config, sim.clob_url, sim.gamma_url, state_dir)
        get_logger(cfg)
        wallet = sim.new_wallet(usdc=cfg.capital.total)
        register_secret(wallet["private_key"])
        log.info("Simulated exchange at %s (Gamma %s); throwaway wallet %s funded with $%s", sim.clob_url,
                 sim.gamma_url, wallet["address"], fmt(cfg.capital.total))
        if args.dry_run:
            venue = PaperVenue(LiveVenue(sim.clob_url), cfg.capital.total,
                               state_file=state_dir / "positions.json.paper.json")
        else:
            venue = LiveVenue(sim.clob_url, private_key=wallet["private_key"], funder=wallet["address"])
        bot = Bot(cfg, venue, MarketScanner(sim.gamma_url, cfg.strategy), PositionStore(cfg.bot.positions_file))
        _install_signal_handlers(bot)
        code = bot.run(loops=args.loops)
        print_status(bot.state, as_json=False)
        return code


def _install_signal_handlers(bot: Bot) -> None:
    def handler(signum, _frame):
        log.info("Signal %s: finishing this step, saving, exiting", signal.Signals(signum).name)
        bot.stop_requested = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def position_row(p: Position) -> dict:
    """The status --json view of a position."""
    d = p.to_dict()
    d["status"] = p.status.value
    return d


def print_status(state: BotState, as_json: bool) -> None:
    if as_json:
        payload = {
            "positions": [position_row(p) for p in state.positions],
            "blacklist": [{"condition_id": cid, "until": until.isoformat()} for cid, until in state.blacklist.items()],
            "paused": state.paused,
            "pause_reason": state.pause_reason,
        }
        print(json.dumps(payload, indent=2))
        return
    print(f"{'id':12} {'mode':12} {'status':15} {'reason':15} {'shares':>9} {'entry':>7} {'tp':>6} {'sl':>6} "
          f"{'exit':>7} {'pnl':>8}  question")
    for p in state.positions:
        print(f"{p.id:12} {p.exit_mode.value:12} {p.status.value:15} {(p.close_reason.value if p.close_reason else '-'):15} "
              f"{fmt(p.shares if p.is_active else p.sold_shares):>9} {fmt(p.entry_price, 3):>7} {fmt(p.tp_price):>6} "
              f"{fmt(p.sl_price):>6} {fmt(p.exit_price, 3):>7} {fmt(p.realized_pnl, 2):>8}  {p.question[:40]}")
    if not state.positions:
        print("(no positions)")
    now = datetime.now(timezone.utc)
    for cid, until in state.blacklist.items():
        if until > now:
            print(f"blacklisted: {cid} until {until.isoformat()}")
    print(f"paused: {state.paused}" + (f" ({state.pause_reason})" if state.paused else ""))


def confirm_live_once(args, config: BotConfig) -> bool:
    """--live-once: doctor must find no error; then a person says yes (or --yes was given)."""
    doctor = Doctor(args.config)
    checks = doctor.run()
    print(format_checks(checks))
    if not doctor.ok:
        print("refusing --live-once: doctor found errors (see above)", file=sys.stderr)
        return False
    if config.bot.dry_run:
        print("bot.dry_run is true: rehearsing the one trade with paper orders")
        return True
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("refusing --live-once without a terminal to confirm on: add --yes", file=sys.stderr)
        return False
    answer = input(f"Place ONE real order of the smallest valid size on {config.api.clob_host}? Type yes: ")
    return answer.strip().lower() == "yes"


def run_report(state: BotState, args) -> int:
    """python main_bot.py report [--json] [--since DATE] [--plot FILE.png]"""
    from bot import report as ab

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            print(f"error: --since {args.since!r}: expected an ISO date such as 2026-11-24 or 2026-11-24T12:00",
                  file=sys.stderr)
            return 2
        since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
    result = ab.build_report(state, since)
    print(json.dumps(result, indent=2) if args.json else ab.format_text(result))
    if args.plot:
        ab.plot(state, args.plot, since)
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main_bot.py", description="Polymarket TP/SL bot")
    parser.add_argument("command", nargs="?", default="run",
                        choices=["run", "status", "resume", "report", "doctor", "convert"],
                        help="run the bot (default), status, resume after a pause, the A/B report, doctor "
                             "(read-only checks before going live), convert (limit_orders -> monitor)")
    parser.add_argument("--config", default="config.json", help="path of config.json")
    parser.add_argument("--loops", type=int, default=None, help="run N iterations of the loop and exit")
    parser.add_argument("--json", action="store_true", help="status/report: print JSON")
    parser.add_argument("--since", default=None, help="report: only positions opened since this ISO date")
    parser.add_argument("--plot", default=None, help="report: draw cumulative P&L and slippage into this PNG")
    parser.add_argument("--live-once", action="store_true",
                        help="open exactly one position of the smallest valid size, manage it to its end, stop")
    parser.add_argument("--yes", action="store_true", help="--live-once: do not ask for confirmation")
    parser.add_argument("--to", default="monitor", choices=["monitor"], help="convert: the target exit mode")
    parser.add_argument("--id", default=None, help="convert: only this position")
    parser.add_argument("--sim", action="store_true", help="trade on the embedded simulated exchange")
    parser.add_argument("--dry-run", action="store_true", help="with --sim: paper orders instead of signed ones")
    parser.add_argument("--seed", type=int, default=7, help="with --sim: the simulated market's seed")
    parser.add_argument("--sim-markets", type=int, default=8, help="with --sim: how many markets")
    parser.add_argument("--sim-dir", default="sim_state", help="with --sim: where the run's state goes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_bot_config(args.config)
        state_path = Path(args.sim_dir) / "positions.json" if args.sim else Path(config.bot.positions_file)
        if args.command == "status":
            print_status(PositionStore(state_path).load(), args.json)
            return 0
        if args.command == "report":
            return run_report(PositionStore(state_path).load(), args)
        if args.command == "doctor":
            doctor = Doctor(args.config)
            checks = doctor.run()
            print(as_json(checks) if args.json else format_checks(checks))
            return 0 if doctor.ok else 1
        if args.command == "resume":
            store = PositionStore(config.bot.positions_file)
            state = store.load()
            state.resume()
            store.save(state)
            print("resumed: new trades allowed again")
            return 0
        if args.sim:
            return run_sim(args, config)
        if args.live_once and not confirm_live_once(args, config):
            return 1
        get_logger(config)
        store = PositionStore(config.bot.positions_file)
        store.acquire_lock()
        venue = build_venue(config)
        bot = Bot(config, venue, MarketScanner(config.api.gamma_host, config.strategy), store, once=args.live_once)
        if args.command == "convert":
            for line in bot.convert_to_monitor(args.id):
                print(line)
            return 0
        _install_signal_handlers(bot)
        return bot.run(loops=args.loops)
    except (ConfigError, StateFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

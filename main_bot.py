#!/usr/bin/env python3
"""Polymarket TP/SL bot: buys, protects every position with a take-profit and a stop-loss, and exits
after a maximum holding time. See README.md.

    python main_bot.py [--config config.json] [--loops N]     run (dry-run unless the config says otherwise)
    python main_bot.py --sim [--loops N]                      run against the embedded simulated exchange
    python main_bot.py status [--json]                        show positions, blacklist and pause
    python main_bot.py report | doctor | convert | resume     A/B report, pre-flight checks, rollback, unpause
    python main_bot.py close --id ID                          close by hand a position needing attention
    python main_bot.py --live-once [--yes]                    one smallest valid position, to its end

This module is the loop (``Bot``); the command line (arguments, subcommands, printing, the --sim wiring)
is bot/cli.py, whose ``main`` runs at the end of this file.
"""
from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from bot.alerts import Alerter
from bot.clock import Clock, SystemClock, Waker
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
from bot.exits import ExitProtocol, book_sale, book_tp_fill
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
from bot.outcomes import look_up
from bot.reconcile import reconcile
from bot.scanner import Candidate, MarketScanner
from bot.trader import EntryPlan, EntrySkipped, Trader, exit_prices
from bot.venue.base import Book, MarketInfo, OrderState, OrderStatus, Venue

log = logging.getLogger("bot")

#: Metrics-only changes (API call counts) are written at most this often.
METRICS_FLUSH_SECONDS = 60
#: Even when every book shows the TPs intact, the open-orders list is read every this many check intervals.
FULL_CHECK_EVERY = 10
#: A position whose book is empty, or that is held to resolution, asks Gamma about its market this often.
RESOLUTION_CHECK_SECONDS = 60
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


def venue_identity(venue) -> tuple[str | None, str | None]:
    """("paper", None) or ("live", the wallet that holds the funds): where positions opened now live."""
    kind = getattr(venue, "name", None)
    return kind, (getattr(venue, "funder", None) if kind == "live" else None)


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
        self.venue_kind, self.wallet = venue_identity(venue)
        self._refuse_other_venues_positions()
        self.alerter = alerter or Alerter(config.alerts.webhook_url)
        self.exits = ExitProtocol(self.trader, self.save, config.trading.exit_max_slippage_pct,
                                  max_hold_hours=config.strategy.max_hold_hours, alert=self.alerter.send)
        self.meter = CallMeter([venue, scanner], self.state)
        self.once = once   # --live-once: one position of the smallest valid size, managed to its end
        self.opened_once = False
        self.stop_requested = False
        self._waker: Waker | None = None
        self.loops_done = 0
        self.consecutive_failures = 0
        self._last_order_check: float | None = None
        self._last_full_check: float | None = None
        self._last_scan: float | None = None
        self._last_logged_bid: dict[str, Decimal] = {}
        self._reconciled = False
        self._reconcile_only: set[str] | None = None   # positions whose start-up check is still to be done
        self._position_failures: dict[str, int] = {}
        self._warned_no_bid: set[str] = set()
        self._last_loop_at: float | None = None
        self._last_flush: float | None = None
        self._resolution_checked: dict[str, float] = {}

    # -- helpers ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), tz=timezone.utc)

    def save(self) -> None:
        if self.venue_kind is not None:
            for pos in self.state.positions:
                if pos.venue is None:  # new, or from a file older than the field: it lives where we trade
                    pos.venue, pos.wallet = self.venue_kind, self.wallet
        self.store.save(self.state)

    def _same_venue(self, pos: Position) -> bool:
        if pos.venue is None or self.venue_kind is None:
            return True
        if pos.venue != self.venue_kind:
            return False
        return self.venue_kind != "live" or not pos.wallet or not self.wallet or pos.wallet.lower() == self.wallet.lower()

    def _refuse_other_venues_positions(self) -> None:
        """Paper and live never mix: positions recorded on another venue (paper vs live, or another wallet)
        are refused before anything is sent, with what to do. A paper position taken as live would send a
        real sell for shares never bought."""
        foreign = [p for p in self.state.positions if not self._same_venue(p)]
        if not foreign:
            return
        path = self.store.path

        def where(kind: str | None, wallet: str | None) -> str:
            return "paper orders (dry-run)" if kind == "paper" else f"{kind} (wallet {wallet or 'unknown'})"

        first = foreign[0]
        active = sum(1 for p in foreign if p.is_active)
        if self.venue_kind == "live" and first.venue == "paper":
            todo = (f"to trade live with a fresh state, move {path} (and {path}.paper.json) away, e.g. "
                    f"`mv {path} {path}.dry-run`; to go on paper trading, run with --dry-run or bot.dry_run: true")
        elif self.venue_kind == "paper":
            todo = ("to manage them, run live (bot.dry_run: false, without --dry-run); to paper trade, give the "
                    "dry run its own file (bot.positions_file)")
        else:
            todo = (f"run with the wallet that holds them (POLY_PRIVATE_KEY / POLY_FUNDER_ADDRESS), or move {path} "
                    "away to start afresh with this wallet")
        raise StateFileError(
            f"{path}: {len(foreign)} position(s) ({active} active) belong to {where(first.venue, first.wallet)}, "
            f"e.g. id {first.id}, but this run trades {where(self.venue_kind, self.wallet)}. The bot does not "
            f"manage another venue's positions: {todo}")

    def request_stop(self) -> None:
        """Finish the current step, save and stop; a loop's sleep ends at once."""
        self.stop_requested = True
        if self._waker is not None:
            self._waker.wake()

    def _sleep(self, seconds: float) -> None:
        wait = getattr(self.clock, "wait", None)
        if wait is not None and self._waker is not None:
            wait(seconds, self._waker)
        else:
            self.clock.sleep(seconds)

    def _take_control(self) -> None:
        """Commands from the command line while the bot runs (``resume``, ``convert``), left next to the
        state file by PositionStore.send_control: applied here, within one loop, to the state in memory
        (which the next save writes), never edited under the bot's feet."""
        for cmd in self.store.take_control():
            what = cmd.get("command")
            if what == "resume":
                was = self.state.pause_reason if self.state.paused else None
                self.state.resume()
                self.consecutive_failures = 0
                self.save()
                log.warning("Resumed by the user: new trades allowed again%s", f" (was paused: {was})" if was else "")
            elif what in ("convert", "close"):
                try:
                    lines = self.convert_to_monitor(cmd.get("id")) if what == "convert" else self.close_by_hand(cmd.get("id"))
                    for line in lines:
                        log.warning("%s (asked by the user): %s", what, line)
                except VenueError as exc:
                    log.error("%s (asked by the user) failed: %s; run it again", what, exc)
            else:
                log.warning("Ignoring an unknown command from %s: %r", self.store.control_path, what)

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
        problem = unexitable_trade_size(self.config)
        if problem:
            raise ConfigError(problem)
        active = self.state.active_positions()
        log.info("Bot started (%s venue): %d active position(s)%s", self.venue.name, len(active),
                 "; PAUSED: " + (self.state.pause_reason or "") if self.state.paused else "")
        self._waker = Waker()
        if self.stop_requested:
            self._waker.wake()
        try:
            self._loop(loops)
        finally:
            waker, self._waker = self._waker, None
            waker.close()
        self.save()
        log.info("Bot stopped after %d loop(s)", self.loops_done)
        return 0

    def _loop(self, loops: int | None) -> None:
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
            self._sleep(max(0.0, self.config.bot.loop_interval_seconds - (self.clock.time() - started)))

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
        self._take_control()
        if not self._reconciled:
            try:
                self._reconcile(now)
            except VenueError as exc:   # the venue is not answering yet: positions are still managed below
                log.warning("Start-up reconciliation could not run (%s); trying again next loop, no new trades "
                            "until it has", exc)
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
        """Check the stored positions against the venue, one by one (a position that cannot be checked
        is checked again next loop, or needs attention); new trades wait until every one is checked."""
        self._fill_missing_exit_prices()
        with self.meter.attribute(None, now):
            report = reconcile(self.state, self.venue, now, self._arm_tp, lambda p: self._finish_opening(p, now),
                               cancel_unknown=self.config.trading.cancel_unknown_orders, only=self._reconcile_only)
        self._reconcile_only = set(report.retry) or None
        self._reconciled = not report.retry
        attention = [p for p in self.state.positions if p.status == PositionState.NEEDS_ATTENTION]
        for pos in attention:
            self.alerter.send("needs_attention", f"position {pos.id}: {pos.attention_reason}")
        if attention:
            self._pause("a position needs attention (found at start-up): " + "; ".join(
                f"{p.id}: {p.attention_reason}" for p in attention)[:500])
        elif report.restored and self.state.paused and "needs attention" in (self.state.pause_reason or ""):
            self.state.resume()
            log.warning("Every position agrees with the venue again: new trades allowed")
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
        """Route each active position to the handler of its own exit mode. Each is handled on its own: an
        error in one is logged (and after MAX_CONSECUTIVE_FAILURES loops in a row hands it to a person),
        and never keeps the others from being managed."""
        for pos in self.state.active_positions():
            if pos.status == PositionState.NEEDS_ATTENTION:
                continue
            try:
                with self.meter.attribute(pos, now):
                    self._update_position(pos, snap, now)
                self._position_failures.pop(pos.id, None)
            except (TemporaryVenueError, MalformedResponse, OrderRejected, UnknownOutcome) as exc:
                log.warning("Position %s: %s; retrying next loop", pos.id, exc)
            except StateFileError:
                raise
            except Exception as exc:  # a bug or something unforeseen in one position: the others go on
                log.exception("Position %s: unexpected error: %s", pos.id, exc)
                failures = self._position_failures.get(pos.id, 0) + 1
                self._position_failures[pos.id] = failures
                if failures >= MAX_CONSECUTIVE_FAILURES and pos.status != PositionState.CLOSED:
                    transition(pos, PositionState.NEEDS_ATTENTION, now,
                               note=f"{failures} loops in a row failed on it; last: {type(exc).__name__}: {exc}")
                    self.save()
            self._after_update(pos, now)

    def _update_position(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        book = snap.books.get(pos.token_id)
        if self._market_resolved(pos, book, now):
            return
        if pos.status == PositionState.OPENING:
            self._finish_opening(pos, now)
        elif pos.status == PositionState.HELD:
            # held to resolution: only the market's resolution (checked above) moves it; its value is watched
            bid = book.best_bid if book else None
            if bid is not None and pos.metrics.get("last_bid") != str(bid):
                pos.metrics = {**pos.metrics, "last_bid": str(bid)}
                self.save()
        elif not self._resolve_pending_tp(pos, now):
            return
        elif pos.exit_mode == ExitMode.LIMIT_ORDERS:
            self._update_position_with_limit_orders(pos, snap, now)
        else:
            self._update_position_legacy_monitoring(pos, snap, now)

    def _after_update(self, pos: Position, now: datetime) -> None:
        if pos.status == PositionState.NEEDS_ATTENTION:
            self.alerter.send("needs_attention", f"position {pos.id}: {pos.attention_reason}")
            self._pause(f"position {pos.id} needs attention: {pos.attention_reason}")
        if pos.status == PositionState.CLOSED and pos.close_reason == CloseReason.STOP_LOSS \
                and not self.state.is_blacklisted(pos.condition_id, now):
            until = now + timedelta(hours=self.config.strategy.blacklist_hours)
            self.state.blacklist_market(pos.condition_id, until)
            self.save()
            log.info("Blacklisted market %s until %s after a stop-loss", pos.condition_id[:12], until.isoformat())
            self.alerter.send("stop_loss", f"{pos.question or pos.token_id}: sold {fmt(pos.sold_shares)} @ "
                                           f"{fmt(pos.exit_price, 4)}, pnl ${fmt(pos.realized_pnl, 2)}")

    def _market_resolved(self, pos: Position, book: Book | None, now: datetime) -> bool:
        """An empty book may mean the market resolved (a position held to resolution is asked about even
        with a book): ask Gamma (at most once per RESOLUTION_CHECK_SECONDS) and, if so, close the position
        at its payout. Redeeming the winning shares is done on polymarket.com."""
        held = pos.status == PositionState.HELD
        if pos.status == PositionState.OPENING or (not held and book is not None and (book.bids or book.asks)):
            return False
        t = self.clock.time()
        if t - self._resolution_checked.get(pos.id, 0.0) < RESOLUTION_CHECK_SECONDS:
            return False
        self._resolution_checked[pos.id] = t
        payout = self.scanner.resolution(pos.market_id, pos.outcome) if pos.market_id and pos.outcome else None
        if payout is None:
            return False
        pos.tp_order_id = None   # the venue cancels open orders of a resolved market
        book_sale(pos, pos.shares, pos.shares * payout, "")
        transition(pos, PositionState.CLOSED, now, reason=pos.close_reason if held and pos.close_reason
                   else CloseReason.MARKET_RESOLVED)
        self.save()
        log.info("MARKET RESOLVED %s: %s pays %s per share, pnl=$%s (redeem on polymarket.com)", pos.id,
                 pos.outcome, fmt(payout), fmt(pos.realized_pnl, 2))
        return True

    def _finish_opening(self, pos: Position, now: datetime) -> None:
        """An entry whose outcome is not recorded (lost or delayed answer, crash): look the order up by the
        id saved before it was sent, and own exactly what that order bought (never the token balance)."""
        pending = pos.pending or {}
        order_id = pending.get("order_id") or pos.entry_order_id
        if not order_id:   # the id is saved before the order leaves: without one, nothing was sent
            self._entry_unfilled(pos, now, "no order was sent")
            return
        sent_at = float(pending.get("sent_at") or pos.opened_at.timestamp())
        out = look_up(self.venue, order_id, pos.token_id, sent_at, now.timestamp(), marketable=True)
        if not out.known:
            log.info("Entry %s of %s: outcome not known yet (%s); looking again next loop", order_id[:18], pos.id,
                     out.status)
            return
        if out.filled_shares <= 0:
            self._entry_unfilled(pos, now, f"order {order_id[:18]} {out.status}, nothing bought")
            return
        info = self.venue.get_market_info(pos.token_id, pos.condition_id)
        price = out.usdc / out.filled_shares
        held = self.trader.shares_after_buy(pos.token_id, out.filled_shares, price, info)
        self._opened(pos, order_id, held, price, out.usdc, out.fee, now)

    def _entry_unfilled(self, pos: Position, now: datetime, why: str) -> None:
        pos.pending = None
        transition(pos, PositionState.CLOSED, now, reason=CloseReason.ENTRY_UNFILLED)
        self.save()
        log.info("Entry of %s never filled (%s): closed", pos.id, why)

    def _opened(self, pos: Position, order_id: str, shares: Decimal, price: Decimal, cost: Decimal, fee: Decimal,
                now: datetime) -> None:
        """The entry is known: ``shares`` held (the buy's fee is taken in shares) bought at ``price`` on
        average for ``cost`` USDC. Record it, derive TP/SL from the price really paid, arm the exits."""
        cfg = self.config.strategy
        pos.entry_order_id = order_id
        pos.entry_shares = pos.shares = shares
        pos.entry_cost = cost
        pos.entry_price = price.quantize(Decimal("0.000001"))
        pos.fees_paid += fee
        pos.pending = None
        pos.tp_price, pos.sl_price = exit_prices(pos.entry_price, cfg.take_profit_pct, cfg.stop_loss_pct,
                                                 pos.tick_size)
        transition(pos, PositionState.OPEN, now)
        self.save()
        log.info("%sBOUGHT %s shares @ %s for $%s (%s): TP=%s, SL armed at %s (watched: Polymarket has no stop "
                 "orders)", self.venue.log_prefix, fmt(pos.shares), fmt(pos.entry_price, 4), fmt(pos.entry_cost, 2),
                 pos.id, fmt(pos.tp_price), fmt(pos.sl_price))
        if pos.exit_mode == ExitMode.LIMIT_ORDERS:
            self._arm_tp(pos)
            if pos.tp_order_id:
                log.info("TP %s resting: SELL %s @ %s", pos.tp_order_id[:18], fmt(round_shares(pos.shares)),
                         fmt(pos.tp_price))

    def _exit_trigger(self, pos: Position, bid: Decimal | None, now: datetime, watch_tp: bool) -> CloseReason | None:
        if bid is not None and pos.sl_price is not None and bid <= pos.sl_price:
            return CloseReason.STOP_LOSS
        if watch_tp and bid is not None and pos.tp_price is not None and bid >= pos.tp_price:
            return CloseReason.TAKE_PROFIT
        if pos.age_hours(now) >= self.config.strategy.max_hold_hours:
            return CloseReason.TIME_EXIT
        return None

    def _warn_if_no_bid(self, pos: Position, book: Book | None) -> None:
        """Without a bid the stop-loss cannot fire: say so once per position (and again after bids came back)."""
        if book is not None and book.best_bid is None and pos.status == PositionState.OPEN:
            if pos.id not in self._warned_no_bid:
                self._warned_no_bid.add(pos.id)
                log.warning("Position %s: the book has no bids, so its stop-loss at %s cannot fire until a bid "
                            "appears", pos.id, fmt(pos.sl_price))
        else:
            self._warned_no_bid.discard(pos.id)

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
        self._warn_if_no_bid(pos, book)
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
        order_id = pos.tp_order_id
        listed = open_orders.get(order_id)
        pos.last_tp_check_at = now
        if listed is not None:
            if book_tp_fill(pos, self.venue, order_id, listed.filled_size, listed.price or pos.tp_price):
                log.info("TP %s of %s partly filled: %s shares left", order_id, pos.id, fmt(pos.shares))
                self.save()
            return False
        state = self.venue.get_order(order_id)
        if state is not None:
            book_tp_fill(pos, self.venue, order_id, state.filled_size, state.price or pos.tp_price)
            if state.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING):
                return False
        if is_dust(pos.shares):
            pos.tp_order_id = None
            transition(pos, PositionState.CLOSED, now, reason=CloseReason.TAKE_PROFIT)
            self.save()
            log.info("TAKE PROFIT %s: sold %s @ %s, pnl=$%s", pos.id, fmt(pos.sold_shares), fmt(pos.exit_price, 4),
                     fmt(pos.realized_pnl, 2))
            return True
        # The TP is gone (cancelled by the venue, or unknown) with shares left: re-arm it.
        log.warning("TP %s of %s is %s with %s shares left; placing it again", order_id, pos.id,
                    state.status.value if state else "unknown", fmt(pos.shares))
        pos.tp_order_id = None
        self._arm_tp(pos)
        return False

    def _arm_tp(self, pos: Position) -> None:
        """Place the TP for the position's shares; on a refusal fall back to monitoring. The TP is signed
        first and its id saved before it is sent, so a lost answer or a crash never leads to a second TP:
        an unknown outcome is looked up by that id (``_resolve_pending_tp``), never taken as a refusal."""
        info = self.venue.get_market_info(pos.token_id, pos.condition_id)
        pos.pending = {"kind": "tp", "price": str(pos.tp_price)}
        self.save()

        def record(order_id: str) -> None:
            pos.pending = {**pos.pending, "order_id": order_id, "sent_at": self.clock.time()}
            self.save()

        try:
            fill = self.trader._place_limit_sell(pos.token_id, pos.tp_price, pos.shares, info, before_post=record)
        except UnknownOutcome as exc:
            log.warning("TP of %s: outcome unknown (%s); looking its id up before anything else", pos.id, exc)
            self.save()
            return
        except VenueError as exc:
            pos.pending = None
            self._fall_back(pos, str(exc))
            return
        crashpoint("after_tp")
        pos.tp_order_id, pos.pending = fill.order_id, None
        # A TP that crossed at once filled as a taker (fee); a resting one fills later as a maker (no fee).
        book_tp_fill(pos, self.venue, fill.order_id, fill.filled_shares, pos.tp_price, known=fill)
        self.save()

    def _resolve_pending_tp(self, pos: Position, now: datetime) -> bool:
        """A TP whose answer was lost: the venue says, by its saved id, whether it rests (adopt it) or was
        never placed (place it again). False while that is not known: nothing else is sent meanwhile."""
        pending = pos.pending or {}
        if pending.get("kind") != "tp" or pos.tp_order_id:
            return True
        order_id = pending.get("order_id")
        if order_id:
            out = look_up(self.venue, order_id, pos.token_id, float(pending.get("sent_at") or 0), now.timestamp(),
                          marketable=False)
            if not out.known:
                log.info("TP %s of %s: outcome not known yet (%s)", order_id[:18], pos.id, out.status)
                return False
            if out.exists:
                pos.tp_order_id, pos.pending = order_id, None
                book_tp_fill(pos, self.venue, order_id, out.filled_shares, pos.tp_price or Decimal(0))
                self.save()
                log.warning("TP %s of %s was placed although its answer was lost: adopted", order_id[:18], pos.id)
                return True
        pos.pending = None
        log.info("TP of %s was never placed; placing it now", pos.id)
        if pos.status == PositionState.OPEN and pos.exit_mode == ExitMode.LIMIT_ORDERS and not is_dust(pos.shares):
            self._arm_tp(pos)
        else:
            self.save()
        return True

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
        self._warn_if_no_bid(pos, book)
        bid = book.best_bid if book else None
        if bid is not None and self._last_logged_bid.get(pos.id) != bid:
            self._last_logged_bid[pos.id] = bid
            log.info("Position %s price=%s tp=%s sl=%s", pos.id, fmt(bid), fmt(pos.tp_price), fmt(pos.sl_price))
        reason = self._exit_trigger(pos, bid, now, watch_tp=True)
        if reason is not None:
            self.exits.start(pos, reason, book, now)

    # -- phase 3: open ----------------------------------------------------------------------------

    def _managed(self) -> list[Position]:
        """Active positions that take a slot and capital (a remainder held to resolution takes neither)."""
        return [p for p in self.state.active_positions() if p.status != PositionState.HELD]

    def _deployed(self) -> Decimal:
        return sum((p.entry_cost for p in self._managed()), Decimal(0))

    def _may_open(self, now: datetime) -> bool:
        if self.state.paused or self.stop_requested or (self.once and self.opened_once) or not self._reconciled:
            return False
        if len(self._managed()) >= self.config.capital.max_positions:
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

        def record(order_id: str) -> None:   # signed first: the order's id is on disk before it leaves
            pos.pending = {**pos.pending, "order_id": order_id, "sent_at": self.clock.time()}
            pos.entry_order_id = order_id
            self.save()

        try:
            result = self.trader.execute_buy(cand.token_id, plan, info, before_post=record)
        except UnknownOutcome as exc:
            log.warning("BUY answer lost (%s): the order is looked up by its id before anything else", exc)
            return False
        except (OrderRejected, TemporaryVenueError) as exc:   # refused: nothing happened, nothing is owned
            log.warning("BUY refused: %s", exc)
            self._entry_unfilled(pos, now, f"refused: {exc}")
            return False
        crashpoint("after_buy")
        fill = result.fill
        if not fill.settled:
            log.info("BUY %s answered %s without amounts (a market with a matching delay?): looked up by its id",
                     fill.order_id[:18], fill.status)
            return False
        if result.shares_held <= 0:
            self._entry_unfilled(pos, now, f"order {fill.order_id[:18]} {fill.status or 'unmatched'}")
            return False
        self._opened(pos, fill.order_id, result.shares_held, fill.avg_price, fill.usdc, fill.fee, now)
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
            if pos.tp_order_id and not self.exits.retire_tp(pos, now):
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

    def close_by_hand(self, position_id: str | None) -> list[str]:
        """A person closes a position that needs attention (its shares were sold or moved by hand): its TP is
        cancelled by the exit protocol's rules, and it closes as ``manual`` with what the bot booked. Only
        for positions the bot cannot manage any more; the others it manages itself."""
        pos = self.state.get(position_id or "")
        if pos is None or pos.status != PositionState.NEEDS_ATTENTION:
            return [f"no position needing attention with id {position_id}: `status` lists them"]
        now = self.now()
        if pos.tp_order_id and not self.exits.retire_tp(pos, now):
            return [f"{pos.id}: its TP is still open after the cancel; try again"]
        transition(pos, PositionState.CLOSED, now, reason=CloseReason.MANUAL)
        self.save()
        return [f"{pos.id}: closed by hand ({fmt(pos.shares)} shares the bot no longer manages; booked pnl "
                f"${fmt(pos.realized_pnl, 2)}); `resume` allows new trades again"]

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
# The command line (argument parsing, subcommands, printing, the --sim wiring) lives in bot/cli.py;
# `main_bot.main` stays importable for tests and scripts.
from bot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

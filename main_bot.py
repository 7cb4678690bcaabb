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
from datetime import UTC, datetime
from decimal import Decimal

from bot.alerts import Alerter
from bot.clock import Clock, SystemClock, Waker
from bot.config import BotConfig, ConfigError, check_trade_size, unexitable_trade_size
from bot.errors import (
    MalformedResponse,
    OrderRejected,
    StateFileError,
    TemporaryVenueError,
    UnknownOutcome,
    VenueError,
)
from bot.lifecycle import AttentionNeeded, apply
from bot.manage import MAX_CANDIDATES_PER_SCAN, RESOLUTION_CHECK_SECONDS, Manager, Snapshot, tp_visibly_intact
from bot.metrics import CallMeter
from bot.money import fmt
from bot.ownership import refuse_other_venues_positions, stamp, venue_identity
from bot.position_manager import BotState, ExitMode, Position, PositionState, PositionStore
from bot.reconcile import reconcile
from bot.scanner import MarketScanner
from bot.trader import exit_prices
from bot.venue.base import Book, Venue

log = logging.getLogger("bot")

#: Metrics-only changes (API call counts) are written at most this often.
METRICS_FLUSH_SECONDS = 60
#: Even when every book shows the TPs intact, the open-orders list is read every this many check intervals.
FULL_CHECK_EVERY = 10
#: After this many loops in a row that failed with unexpected errors the bot stops opening positions.
MAX_CONSECUTIVE_FAILURES = 5

__all__ = ["Bot", "Snapshot", "tp_visibly_intact", "MAX_CANDIDATES_PER_SCAN", "RESOLUTION_CHECK_SECONDS"]


class Bot:
    """The loop: read the venue in batches, update positions, open new ones, save. What happens to each
    position is in bot/manage.py (handlers), bot/exits.py (the exit protocol) and bot/lifecycle.py (the
    table of its states)."""

    def __init__(self, config: BotConfig, venue: Venue, scanner: MarketScanner, store: PositionStore,
                 clock: Clock | None = None, rng: random.Random | None = None, alerter: Alerter | None = None,
                 once: bool = False):
        self.config, self.venue, self.scanner, self.store = config, venue, scanner, store
        self.clock = clock or SystemClock()
        self.state: BotState = store.load()
        self.venue_kind, self.wallet = venue_identity(venue)
        refuse_other_venues_positions(self.state, self.venue_kind, self.wallet, store.path)
        self.manage = Manager(config, venue, scanner, self.state, self.clock,
                              alerter or Alerter(config.alerts.webhook_url), self.save, self._pause, rng)
        self.manage.once = self.once = once   # --live-once: one position of the smallest valid size, to its end
        self.meter = CallMeter([venue, scanner], self.state)
        self.opened_once = self.stop_requested = False
        self._waker: Waker | None = None
        self.loops_done = self.consecutive_failures = 0
        self._last_order_check: float | None = None
        self._last_full_check: float | None = None
        self._last_scan: float | None = None
        self._last_loop_at: float | None = None
        self._last_flush: float | None = None
        self._reconciled = False
        self._reconcile_only: set[str] | None = None   # positions whose start-up check is still to be done
        self._position_failures: dict[str, int] = {}

    @property
    def alerter(self) -> Alerter:
        return self.manage.alerter

    @alerter.setter
    def alerter(self, alerter: Alerter) -> None:
        self.manage.alerter = alerter
        self.manage.exits.alert = alerter.send

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), tz=UTC)

    def save(self) -> None:
        stamp(self.state, self.venue_kind, self.wallet)
        self.store.save(self.state)

    def request_stop(self) -> None:
        """Finish the current step, save and stop; a loop's sleep ends at once."""
        self.stop_requested = True
        if self._waker is not None:
            self._waker.wake()

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, loops: int | None = None) -> int:
        """Run until stopped (or ``loops`` iterations); returns the process exit code."""
        for problem in check_trade_size(self.config):
            log.warning("%s", problem)
        unexitable = unexitable_trade_size(self.config)
        if unexitable:
            raise ConfigError(unexitable)
        log.info("Bot started (%s venue): %d active position(s)%s", self.venue.name, len(self.state.active_positions()),
                 "; PAUSED: " + (self.state.pause_reason or "") if self.state.paused else "")
        self._waker = Waker()
        if self.stop_requested:
            self._waker.wake()
        try:
            while not self.stop_requested and (loops is None or self.loops_done < loops):
                started = self.clock.time()
                if self._last_loop_at is not None:
                    self.meter.add_run_time(started - self._last_loop_at)
                self._last_loop_at = started
                self.run_guarded()
                self.loops_done += 1
                if self.once and self.opened_once and not self.state.active_positions():
                    log.info("The one position is closed: stopping (--live-once)")
                    break
                if self.stop_requested or (loops is not None and self.loops_done >= loops):
                    break
                self._sleep(max(0.0, self.config.bot.loop_interval_seconds - (self.clock.time() - started)))
        finally:
            waker, self._waker = self._waker, None
            waker.close()
        self.save()
        log.info("Bot stopped after %d loop(s)", self.loops_done)
        return 0

    def _sleep(self, seconds: float) -> None:
        wait = getattr(self.clock, "wait", None)
        if wait is not None and self._waker is not None:
            wait(seconds, self._waker)
        else:
            self.clock.sleep(seconds)

    def run_guarded(self) -> None:
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
        except Exception as exc:  # a venue error or a bug: keep the positions safe, say so
            (log.error if isinstance(exc, VenueError) else log.exception)("Error in the loop: %s", exc)
            self.consecutive_failures += 1
            if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                self._pause(f"{self.consecutive_failures} loops in a row failed; last: {type(exc).__name__}: {exc}")

    def _pause(self, reason: str) -> None:
        """Stop opening positions (existing ones are still managed) and tell the user."""
        if self.state.paused:
            return
        self.state.pause(reason)
        log.error("Pausing new trades: %s", reason)
        self.save()
        self.alerter.send("pause", reason)

    def run_once(self) -> None:
        """One iteration in fixed phases: the user's commands, start-up reconciliation (until it has run),
        read the venue, update positions, maybe open one, save what is left."""
        now = self.now()
        self._take_control(now)
        self._reconcile(now)
        snap = self._read_venue(now)
        self._update_positions(snap, now)
        if self._may_open(now):
            # The entry's calls (candidate books, buy, TP) belong to the position it opens, if any.
            calls_before = self.meter.snapshot()
            pos = None
            try:
                pos = self._place_new_trade(now)
            finally:
                self.meter.charge([pos] if pos else [], self.meter.snapshot() - calls_before, now)
        self._flush_metrics()
        self._log_loop_summary()

    def _take_control(self, now: datetime) -> None:
        """Commands from the command line while the bot runs (``resume``, ``convert``, ``close``), left next
        to the state file by PositionStore.send_control: applied here, within one loop, to the state in
        memory (which the next save writes), never edited under the bot's feet."""
        for cmd in self.store.take_control():
            what = cmd.get("command")
            try:
                if what == "resume":
                    was = self.state.pause_reason if self.state.paused else None
                    self.state.resume()
                    self.consecutive_failures = 0
                    self.save()
                    log.warning("Resumed by the user: new trades allowed again%s",
                                f" (was paused: {was})" if was else "")
                elif what in ("convert", "close"):
                    for line in (self.convert_to_monitor(cmd.get("id")) if what == "convert"
                                 else self.close_by_hand(cmd.get("id"))):
                        log.warning("%s (asked by the user): %s", what, line)
                else:
                    log.warning("Ignoring an unknown command from %s: %r", self.store.control_path, what)
            except VenueError as exc:
                log.error("%s (asked by the user) failed: %s; run it again", what, exc)

    def _flush_metrics(self) -> None:
        """Every change to a position is saved where it happens; what is left at the end of a loop is
        metrics and counters, written at most every METRICS_FLUSH_SECONDS (a crash loses under a minute
        of call counts, never a position)."""
        t = self.clock.time()
        if self._last_flush is None or t - self._last_flush >= METRICS_FLUSH_SECONDS:
            self.save()
            self._last_flush = t

    def _reconcile(self, now: datetime) -> None:
        """Until it has run for every position: check the stored positions against the venue, one by one (a
        position that cannot be checked is checked again next loop, or needs attention); new trades wait."""
        if self._reconciled:
            return
        for pos in self.state.active_positions():   # positions from older files may lack TP/SL prices
            if (pos.tp_price is None or pos.sl_price is None) and pos.entry_price > 0:
                s = self.config.strategy
                pos.tp_price, pos.sl_price = exit_prices(pos.entry_price, s.take_profit_pct, s.stop_loss_pct,
                                                         pos.tick_size)
        try:
            with self.meter.attribute(None, now):
                report = reconcile(self.state, self.venue, now, lambda p: self.manage.arm_tp(p, now),
                                   lambda p: self.manage.finish_opening(p, now),
                                   cancel_unknown=self.config.trading.cancel_unknown_orders, only=self._reconcile_only)
        except VenueError as exc:   # the venue is not answering yet: positions are still managed this loop
            log.warning("Start-up reconciliation could not run (%s); trying again next loop, no new trades until "
                        "it has", exc)
            return
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
        """Every order_check_interval, unless this loop's books show every TP still resting untouched; then
        only every FULL_CHECK_EVERY intervals, as a safety net. Keeps API calls flat in the number of positions."""
        interval = self.config.trading.order_check_interval_seconds
        t = self.clock.time()
        if self._last_order_check is not None and t - self._last_order_check < interval:
            return False
        if self._last_full_check is None or t - self._last_full_check >= FULL_CHECK_EVERY * interval:
            return True
        self._last_order_check = t
        return any(not tp_visibly_intact(p, books.get(p.token_id)) for p in resting)

    # -- phase 2: update (the seed's entry points) -------------------------------------------------

    def _update_positions(self, snap: Snapshot, now: datetime) -> None:
        """Route each active position to the handler of its own exit mode. Each is handled on its own: an
        error in one is logged (after MAX_CONSECUTIVE_FAILURES loops in a row it needs a person) and never
        keeps the others from being managed."""
        for pos in self.state.active_positions():
            if pos.status == PositionState.NEEDS_ATTENTION:
                continue
            try:
                with self.meter.attribute(pos, now):
                    if self.manage.prepare(pos, snap.books.get(pos.token_id), now):
                        if pos.exit_mode == ExitMode.LIMIT_ORDERS:
                            self._update_position_with_limit_orders(pos, snap, now)
                        else:
                            self._update_position_legacy_monitoring(pos, snap, now)
                self._position_failures.pop(pos.id, None)
            except (TemporaryVenueError, MalformedResponse, OrderRejected, UnknownOutcome) as exc:
                log.warning("Position %s: %s; retrying next loop", pos.id, exc)
            except StateFileError:
                raise
            except Exception as exc:  # a bug or something unforeseen in one position: the others go on
                log.exception("Position %s: unexpected error: %s", pos.id, exc)
                failures = self._position_failures[pos.id] = self._position_failures.get(pos.id, 0) + 1
                if failures >= MAX_CONSECUTIVE_FAILURES and pos.is_active:
                    apply(pos, AttentionNeeded(f"{failures} loops in a row failed on it; last: "
                                               f"{type(exc).__name__}: {exc}"), now)
                    self.save()
            self.manage.after(pos, now)

    def _update_position_with_limit_orders(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        """Concurrent mode: the TP rests on the book; the SL is watched from the batched book."""
        self.manage.limit_orders(pos, snap, now)

    def _update_position_legacy_monitoring(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        """Monitor mode: the bot watches TP and SL and sells when the bid reaches either."""
        self.manage.monitor(pos, snap.books.get(pos.token_id), now)

    # -- phase 3: open ----------------------------------------------------------------------------

    def _may_open(self, now: datetime) -> bool:
        if self.state.paused or self.stop_requested or (self.once and self.opened_once) or not self._reconciled:
            return False
        if len(self.manage.managed()) >= self.config.capital.max_positions:
            return False
        if self.config.capital.total - self.manage.deployed() < Decimal(1):
            return False
        t = self.clock.time()
        if self._last_scan is not None and t - self._last_scan < self.config.strategy.scan_interval_seconds:
            return False
        self._last_scan = t
        return True

    def _place_new_trade(self, now: datetime) -> Position | None:
        """Scan, pick one market, buy, and arm its exits (bot/manage.py). Returns the position it opened."""
        pos = self.manage.open_new(now)
        self.opened_once = self.opened_once or pos is not None
        return pos

    # -- the user's commands ------------------------------------------------------------------------

    def convert_to_monitor(self, position_id: str | None = None) -> list[str]:
        """The seed's rollback: open limit_orders positions (or one) go to monitoring."""
        return self.manage.convert_to_monitor(self.now(), position_id)

    def close_by_hand(self, position_id: str | None) -> list[str]:
        """Close by hand a position that needs attention (its shares are gone)."""
        return self.manage.close_by_hand(self.now(), position_id)

    def _log_loop_summary(self) -> None:
        active = self.state.active_positions()
        closed = [p for p in self.state.positions if p.status == PositionState.CLOSED]
        pnl = sum((p.realized_pnl or Decimal(0) for p in closed), Decimal(0))
        modes = {m: sum(1 for p in active if p.exit_mode == m) for m in ExitMode}
        log.info("Loop %d: %d open (%d limit_orders, %d monitor), %d closed, pnl $%s, api calls %d%s",
                 self.loops_done + 1, len(active), modes[ExitMode.LIMIT_ORDERS], modes[ExitMode.MONITOR],
                 len(closed), fmt(pnl, 2), sum(self.meter.snapshot().values()),
                 " [PAUSED]" if self.state.paused else "")


# ----------------------------------------------------------------------------------------------------
# The command line (argument parsing, subcommands, printing, the --sim wiring) lives in bot/cli.py;
# `main_bot.main` stays importable for tests and scripts.
from bot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

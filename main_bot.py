#!/usr/bin/env python3
"""Polymarket TP/SL bot: buys, protects every position with a take-profit and a stop-loss, and exits after a
maximum holding time (README.md). ``python main_bot.py [--sim] [--loops N]`` runs it; ``status``, ``report``,
``doctor``, ``convert``, ``resume``, ``close`` and ``--live-once`` are in bot/cli.py, whose ``main`` runs at the
end of this file. This module is the loop (``Bot``), in the seed's phases and method names; ``run`` and the
wait between loops (where, with push feeds, a crossed stop-loss or a TP fill is handled as it is pushed) are in
bot/runner.py.
"""
from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from bot import cli
from bot.alerts import Alerter
from bot.clock import Clock, SystemClock, Waker
from bot.config import BotConfig
from bot.errors import MalformedResponse, StateFileError, TemporaryVenueError, VenueError
from bot.manage import Manager
from bot.metrics import CallMeter
from bot.ownership import refuse_other_venues_positions, stamp, venue_identity
from bot.position_manager import BotState, ExitMode, Position, PositionState, PositionStore
from bot.reading import Reader, Snapshot
from bot.runner import Runner
from bot.scanner import MarketScanner
from bot.venue.base import Venue

if TYPE_CHECKING:
    from bot.feeds import Feeds

log = logging.getLogger("bot")

METRICS_FLUSH_SECONDS = 60   # metrics-only changes (API call counts) are written at most this often
MAX_CONSECUTIVE_FAILURES = 5   # after this many failed loops in a row the bot stops opening positions


class Bot(Runner):
    """The loop: read the venue in batches, update positions, open new ones, save. What happens to a position
    is in bot/manage.py (handlers), bot/exits.py (exit protocol) and bot/lifecycle.py (its table of states)."""

    def __init__(self, config: BotConfig, venue: Venue, scanner: MarketScanner, store: PositionStore,
                 clock: Clock | None = None, rng: random.Random | None = None, alerter: Alerter | None = None,
                 once: bool = False, feeds: Feeds | None = None):
        self.config, self.venue, self.scanner, self.store = config, venue, scanner, store
        self.clock = clock or SystemClock()
        self.state: BotState = store.load()
        self.venue_kind, self.wallet = venue_identity(venue)
        refuse_other_venues_positions(self.state, self.venue_kind, self.wallet, store.path)
        store.settle(self.state)   # closed positions left in the file (older files, a crash mid-move): to the history
        self.manage = Manager(config, venue, scanner, self.state, self.clock,
                              alerter or Alerter(config.alerts.webhook_url), self.save, rng)
        self.manage.once = self.once = once   # --live-once: one position of the smallest valid size, to its end
        self.meter = CallMeter([venue, scanner], self.state)
        self.feeds = feeds   # push feeds (bot/feeds.py): books and TP fills between loops; None: REST only
        self.reader = Reader(venue, config, self.clock, self.meter, feeds)
        self.opened_once = self.stop_requested = False
        self._waker: Waker | None = None
        self.loops_done = self.consecutive_failures = 0
        self._last_scan: float | None = None   # the last scan for a new market, the last loop, the last flush
        self._last_loop_at: float | None = None
        self._last_flush: float | None = None
        self._reconciled = False
        self._reconcile_only: set[str] | None = None   # positions whose start-up check is still to be done

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), tz=UTC)

    def save(self, move_closed: bool = False, measurements: bool = False) -> None:
        """Save what changed; ``move_closed``: positions that closed leave the state file for the history first
        (bot/history.py), so the loop's work stays in the number of active positions; ``measurements``: with the
        counters and metrics too (else at most every METRICS_FLUSH_SECONDS)."""
        stamp(self.state, self.venue_kind, self.wallet)
        if not (move_closed and self.store.move_closed(self.state)):   # (moving them saves the rest)
            self.store.save(self.state, measurements)

    def delay_scan(self, now_too: bool = False) -> None:
        """The next scan for a new market waits a full scan interval from now (``now_too``: scan next loop)."""
        self._last_scan = None if now_too else self.clock.time()


    def run_guarded(self, step: Callable[[], None] | None = None) -> None:
        """One loop (or ``step``) with every exception classified here, so none escapes the loop."""
        try:
            (step or self.run_once)()
            if step is None:   # (a quiet event phase between two failed loops is no sign of recovery)
                self.consecutive_failures = 0
        except StateFileError:
            raise  # never trade on without being able to record what we own
        except (TemporaryVenueError, MalformedResponse) as exc:   # busy, or an answer it cannot read: next loop
            log.warning("Venue busy or its answer unreadable, will retry next loop: %s", exc)
        except Exception as exc:  # a venue error or a bug: keep the positions safe, say so
            (log.error if isinstance(exc, VenueError) else log.exception)("Error in the loop: %s", exc)
            self.consecutive_failures += 1
            if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                self.manage.pause(f"{self.consecutive_failures} loops in a row failed; last: "
                                  f"{type(exc).__name__}: {exc}")

    def run_once(self) -> None:
        """One iteration in fixed phases: the user's commands, start-up reconciliation (until it has run),
        read the venue, update positions, maybe open one, move the closed ones to the history, save the rest."""
        now = self.now()
        self._take_control(now)
        self._reconcile(now)
        snap = self._read_venue(now)
        self.manage.resolution_news(snap.resolved)
        self._update_positions(snap, now)
        if self._may_open(now):
            # The entry's calls (candidate books, buy, TP) belong to the position it opens, if any.
            calls_before, pos = self.meter.snapshot(), None
            try:
                pos = self._place_new_trade(now)
            finally:
                self.meter.charge([pos] if pos else [], self.meter.snapshot() - calls_before, now)
        self.manage.settle(now, self.meter)   # fills the venue has not settled yet: confirmed, or taken back
        self.save(move_closed=True)
        self.reader.sync(self.state.active_positions())
        self._flush_metrics()
        log.info("Loop %d: %s, api calls %d", self.loops_done + 1, self.manage.summary(),
                 sum(self.meter.snapshot().values()))

    def _take_control(self, now: datetime) -> None:
        """Commands given while the bot runs (``resume``, ``convert``, ``close``; PositionStore.send_control)."""
        for cmd in self.store.take_control():
            if cmd.get("command") == "resume":
                self.consecutive_failures = 0
            self.manage.command(cmd, now)

    def _flush_metrics(self) -> None:
        """Metrics and counters are written at most every METRICS_FLUSH_SECONDS (positions: where they change)."""
        t = self.clock.time()
        if self._last_flush is None or t - self._last_flush >= METRICS_FLUSH_SECONDS:
            self.save(measurements=True)
            self._last_flush = t

    def _reconcile(self, now: datetime) -> None:
        """Until it has run for every position, start-up reconciliation (Manager.reconcile); new trades wait."""
        if not self._reconciled:
            retry = self.manage.reconcile(now, self.meter, self._reconcile_only)
            if retry is not None:
                self._reconcile_only, self._reconciled = retry or None, not retry

    # -- phase 1: read ----------------------------------------------------------------------------

    def _read_venue(self, now: datetime) -> Snapshot:
        """Books of every held token (from the push feed where it is fresh, else one batched REST read), the
        open-orders list when a TP check is due (bot/reading.py)."""
        return self.reader.read(self.state.active_positions(), now)

    def run_events(self) -> None:
        """Between loops, as the feeds push it: a crossed stop-loss (or watched TP) is handled from the feed's
        book, a TP fill from the user channel; in this thread, by the same handlers as the loop."""
        if not self._reconciled:
            return   # the next loop reads everything anyway
        now = self.now()
        snap, moved, told = self.reader.on_events(self.state.active_positions())
        self.manage.resolution_news(snap.resolved)
        if moved:
            self._update_positions(snap, now, moved)
        for pos in told:
            with self.meter.attribute(pos, now):
                self.manage.guarded(pos, now, partial(self.manage.tps_from_feed, pos, snap.feed_orders, now))
        if moved or told:
            self.manage.settle(now, self.meter)
            self.save(move_closed=True)
            self.reader.sync(self.state.active_positions())

    # -- phase 2: update (the seed's entry points) -------------------------------------------------

    def _update_positions(self, snap: Snapshot, now: datetime, only: list[Position] | None = None) -> None:
        """Route each active position (or ``only`` these) to the handler of its own exit mode, each on its own
        (an error in one never keeps the others from being managed: Manager.guarded)."""
        self.manage.collect_exits()   # exits starting or resuming now run together after (one cancel request...)
        for pos in self.state.active_positions() if only is None else only:
            if pos.status == PositionState.NEEDS_ATTENTION:
                continue
            with self.meter.attribute(pos, now):
                self.manage.guarded(pos, now, partial(self._route, pos, snap, now))
        self.manage.run_exits(now, self.meter)

    def _route(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        if self.manage.prepare(pos, snap.books.get(pos.token_id), now):
            if pos.exit_mode == ExitMode.LIMIT_ORDERS:
                self._update_position_with_limit_orders(pos, snap, now)
            else:
                self._update_position_legacy_monitoring(pos, snap, now)

    def _update_position_with_limit_orders(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        self.manage.limit_orders(pos, snap, now)   # concurrent mode: the TP rests on the book, the SL is watched

    def _update_position_legacy_monitoring(self, pos: Position, snap: Snapshot, now: datetime) -> None:
        self.manage.monitor(pos, snap.books.get(pos.token_id), now, snap.seen.get(pos.token_id))   # watched TP/SL

    # -- phase 3: open ----------------------------------------------------------------------------

    def _may_open(self, now: datetime) -> bool:
        if self.state.paused or self.stop_requested or (self.once and self.opened_once) or not self._reconciled \
                or self.manage.lock.blocks_entries():   # (a balance lock: no new position until orders go through)
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


def main(argv: list[str] | None = None) -> int:
    """The command line (bot/cli.py), running this module's ``Bot``."""
    return cli.main(argv, Bot)

if __name__ == "__main__":
    sys.exit(main())

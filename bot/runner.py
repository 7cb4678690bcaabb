"""Running the loop: ``Bot.run`` (main_bot.py) calls the loop's one iteration every interval and, between two
iterations, handles what the push feeds wake it for (a crossed stop-loss, a TP fill) as it comes; a stop request
ends the wait at once. main_bot.py's ``Bot`` is this class with the loop itself (its phases, the seed's methods)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from bot.clock import Clock, Waker
from bot.config import BotConfig
from bot.metrics import CallMeter, loop_health
from bot.position_manager import BotState
from bot.venue.base import Venue

if TYPE_CHECKING:
    from bot.feeds import Feeds
    from bot.manage import Manager

log = logging.getLogger("bot")


class Runner:
    """The part of ``Bot`` that runs its loop: ``run``, the wait between loops, stop and wake."""

    config: BotConfig
    venue: Venue
    state: BotState
    clock: Clock
    feeds: Feeds | None
    meter: CallMeter
    manage: Manager
    once: bool
    opened_once: bool
    stop_requested: bool
    loops_done: int
    _waker: Waker | None
    _last_loop_at: float | None

    def run_guarded(self, step: Callable[[], None] | None = None) -> None:
        raise NotImplementedError   # (main_bot.Bot: one loop, its exceptions classified)

    def run_events(self) -> None:
        raise NotImplementedError   # (main_bot.Bot: what the feeds pushed)

    def save(self, move_closed: bool = False, measurements: bool = False) -> None:
        raise NotImplementedError

    def now(self) -> datetime:
        raise NotImplementedError

    def request_stop(self) -> None:
        """Finish the current step, save and stop; a loop's sleep ends at once."""
        self.stop_requested = True
        self.wake()

    def wake(self) -> None:
        """End the loop's sleep now (a stop request, or a feed event to handle: ``run_events``)."""
        self._waker.wake() if self._waker is not None else None

    def run(self, loops: int | None = None) -> int:
        """Run until stopped (or ``loops`` iterations); returns the process exit code."""
        self.manage.check_trade_size()
        log.info("Bot started (%s venue): %d active position(s)%s", self.venue.name, len(self.state.active_positions()),
                 "; PAUSED: " + (self.state.pause_reason or "") if self.state.paused else "")
        self._waker = Waker()
        getattr(self.venue, "interruptible", lambda waker: None)(self._waker)   # no read's retry holds an event
        if self.stop_requested:
            self._waker.wake()
        self.feeds.start() if self.feeds is not None else None
        try:
            while not self.stop_requested and (loops is None or self.loops_done < loops):
                started = self.clock.time()
                self.meter.add_run_time(started - (self._last_loop_at or started))
                self._last_loop_at = started
                self.run_guarded()
                self.loops_done += 1
                loop_health(self.state, self.clock.time() - started, self.config.bot.loop_interval_seconds, self.now())
                if self.once and self.opened_once and not self.state.active_positions():
                    log.info("The one position is closed: stopping (--live-once)")
                    break
                if self.stop_requested or (loops is not None and self.loops_done >= loops):
                    break
                self._sleep_until(started + self.config.bot.loop_interval_seconds)
        finally:
            self.feeds.stop() if self.feeds is not None else None
            getattr(self.venue, "interruptible", lambda waker: None)(None)
            self._waker.close()
            self._waker = None
        self.save(move_closed=True, measurements=True)
        log.info("Bot stopped after %d loop(s)", self.loops_done)
        return 0

    def _sleep_until(self, deadline: float) -> None:
        """Sleep until the next loop; what the feeds push meanwhile is handled as it comes (``run_events``)."""
        while not self.stop_requested and (left := deadline - self.clock.time()) > 0:
            wait = getattr(self.clock, "wait", None)   # a stop request or a feed event ends the clock's wait
            wait(left, self._waker) if wait is not None and self._waker else self.clock.sleep(left)
            if self.feeds is None or self.stop_requested or self._waker is None:
                return
            self._waker.clear()
            self.run_guarded(self.run_events)

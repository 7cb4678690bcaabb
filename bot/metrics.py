"""A/B measurement: which API calls each position and each exit mode caused, per hour.

Calls are counted where the bot talks to the venue (the live venue counts every HTTP request, the SDK's
implicit ones included), so the totals agree with the simulated exchange's own request counts. A batched
read is shared among the positions it served; calls that served no position (reconciliation, scanning
a candidate that was not bought) go to the ``shared`` bucket.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from bot.position_manager import BotState, Position

log = logging.getLogger("bot")

SHARED = "shared"
ORDER_ENDPOINTS = {"POST /order", "POST /orders"}
CANCEL_ENDPOINTS = {"DELETE /order", "DELETE /orders", "DELETE /cancel-all", "DELETE /cancel-market-orders"}
STATUS_ENDPOINTS = {"GET /data/order/{id}", "GET /data/orders", "GET /data/trades"}


def kind_of(endpoint: str) -> str:
    """orders / cancels / status_checks / reads, for a 'METHOD /path' key."""
    if endpoint in ORDER_ENDPOINTS:
        return "orders"
    if endpoint in CANCEL_ENDPOINTS:
        return "cancels"
    if endpoint in STATUS_ENDPOINTS:
        return "status_checks"
    return "reads"


def _add(target: dict, key: str, amount: float) -> None:
    target[key] = round(target.get(key, 0) + amount, 6)


class CallMeter:
    """Attributes the venue's request counts to positions and, per hour, to exit modes."""

    def __init__(self, sources, state: BotState):
        self.sources = list(sources)  # objects with api_calls(): the venue, the Gamma scanner
        self.state = state
        # The counts as last seen and their sum: a block that sent nothing (most positions, most loops) costs one
        # sum per source, not a copy of every source's counts.
        self._known: Counter | None = None
        self._known_total = -1.0

    def _total(self) -> float:
        return sum(s.api_calls_total() if hasattr(s, "api_calls_total") else sum(s.api_calls().values())
                   for s in self.sources)

    def snapshot(self) -> Counter:
        """Requests sent so far by every source, by endpoint."""
        total: Counter = Counter()
        for source in self.sources:
            total.update(source.api_calls())
        return total

    @contextmanager
    def attribute(self, positions: Iterable[Position] | Position | None, now: datetime) -> Iterator[None]:
        """Everything the venue is asked inside the block is charged to ``positions`` (shared equally),
        or to the shared bucket when there are none."""
        total = self._total()
        if self._known is None or total != self._known_total:
            self._known, self._known_total = self.snapshot(), total
        before = self._known
        try:
            yield
        finally:
            total = self._total()
            if total != self._known_total:
                after = self.snapshot()
                self._known, self._known_total = after, total
                delta = after - before
                if delta:
                    if isinstance(positions, Position):
                        positions = [positions]
                    self.charge(list(positions or []), delta, now)

    def charge(self, positions: list[Position], delta: Counter, now: datetime) -> None:
        hour = now.strftime("%Y-%m-%dT%H:00")
        by_hour = self.state.counters.setdefault("api_calls_by_hour", {}).setdefault(hour, {})
        if not positions:
            bucket = by_hour.setdefault(SHARED, {})
            for endpoint, n in delta.items():
                _add(bucket, endpoint, n)
            return
        share = 1 / len(positions)
        for pos in positions:
            # in place: re-assigning would re-validate the model for every position on every loop
            calls = pos.metrics.setdefault("api_calls", {})
            pos.measured()
            bucket = by_hour.setdefault(pos.exit_mode.value, {})
            for endpoint, n in delta.items():
                _add(calls, kind_of(endpoint), n * share)
                _add(calls, "total", n * share)
                _add(bucket, endpoint, n * share)

    def add_run_time(self, seconds: float) -> None:
        """Time the bot has been running (the denominator of calls per hour)."""
        _add(self.state.counters, "run_seconds", seconds)


def loop_health(state: BotState, took: float, interval: float, now: datetime) -> None:
    """The last loop's duration goes to the state's counters (``status --json`` shows it; written with the next
    save, at least once a minute); a loop longer than its interval (the cadence slips) is logged."""
    state.counters["last_loop"] = {"ms": round(took * 1000, 1), "interval_s": interval, "overran": took > interval,
                                   "at": now.isoformat()}
    if took > interval:
        log.warning("The loop overran its interval: it took %.2f s, the interval is %g s", took, interval)

"""The bot's own rate limit: the venue's published per-endpoint limits, with a safety margin.

Each limit is a sliding window (at most ``count`` requests in any ``window`` seconds, as the venue's
Cloudflare throttles count them); the bot allows itself ``SAFETY_MARGIN`` of each. ``overall``, when set
(``api.max_requests_per_second``), caps all requests together as well. Thread-safe: concurrent exits
share it.
"""
from __future__ import annotations

import threading
from collections import deque

from bot.clock import Clock

#: The venue's published limits (docs.polymarket.com/api-reference/rate-limits, 2026; FACTS.md §5):
#: endpoint key -> (requests, window seconds). Everything else counts against the CLOB's general limit.
VENUE_LIMITS: dict[str, tuple[int, float]] = {
    "POST /order": (3500, 10.0),
    "DELETE /order": (3000, 10.0),
    "POST /orders": (1000, 10.0),
    "DELETE /orders": (1000, 10.0),
    "POST /books": (500, 10.0),
    "GET /book": (1500, 10.0),
    "GET /data/orders": (500, 10.0),
    "GET /data/trades": (500, 10.0),
    "GET /tick-size": (200, 10.0),
    "GET /prices-history": (1000, 10.0),   # FACTS.md §5 (replay downloads)
}
GENERAL_LIMIT: tuple[int, float] = (9000, 10.0)
INF = float("inf")
#: How long to wait when the limit is full of requests still in flight.
IN_FLIGHT_POLL_S = 0.01
#: The share of each published limit the bot uses.
SAFETY_MARGIN = 0.8


class _Window:
    """The requests of one limit: each a cell holding its completion time (inf while in flight), so a request
    counts from when it may arrive at the venue (any moment until its answer) until a window after that."""

    def __init__(self, count: int, window: float):
        self.allowed = max(1, int(count * SAFETY_MARGIN))
        self.window = window
        self.sent: deque[list[float]] = deque()

    def wait(self, now: float) -> float:
        while self.sent and self.sent[0][0] <= now - self.window:
            self.sent.popleft()
        if len(self.sent) < self.allowed:
            return 0.0
        oldest = self.sent[0][0]
        return IN_FLIGHT_POLL_S if oldest == INF else oldest + self.window - now


class RateLimiter:
    """``acquire(endpoint)`` returns once a request to ``endpoint`` stays under every limit it counts against."""

    def __init__(self, clock: Clock, limits: dict[str, tuple[int, float]] | None = None,
                 general: tuple[int, float] | None = GENERAL_LIMIT, overall_per_second: float | None = None):
        self.clock = clock
        self._lock = threading.Lock()
        self._windows = {k: _Window(*v) for k, v in (VENUE_LIMITS if limits is None else limits).items()}
        self._general = _Window(*general) if general else None
        # api.max_requests_per_second: all requests together, over one-second windows.
        self._overall: _Window | None = None
        if overall_per_second:
            self._overall = _Window(1, max(1.0, 1.0 / overall_per_second))
            self._overall.allowed = max(1, int(overall_per_second))   # the user's own cap: no margin taken off
        self.waited_s = 0.0

    def limits(self) -> dict[str, tuple[int, float]]:
        """What the bot allows itself: endpoint -> (requests, window seconds)."""
        return {k: (w.allowed, w.window) for k, w in self._windows.items()}

    def acquire(self, endpoint: str) -> list[float]:
        """Wait until a request to ``endpoint`` fits; returns its cell, to hand to ``done`` once answered."""
        cell = [INF]
        while True:
            with self._lock:
                now = self.clock.time()
                windows = [w for w in (self._windows.get(endpoint), self._general, self._overall) if w is not None]
                wait = max((w.wait(now) for w in windows), default=0.0)
                if wait <= 0:
                    for w in windows:
                        w.sent.append(cell)
                    return cell
            self.waited_s += wait
            self.clock.sleep(wait)

    def done(self, cell: list[float]) -> None:
        """The request was answered (or failed): it counts until a window after now."""
        with self._lock:
            cell[0] = self.clock.time()

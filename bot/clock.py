"""Clocks: the real one, and a simulated one that lets an hour of trading run in seconds.

The bot and the simulated exchange both take a clock object instead of calling ``time`` directly,
so tests and benchmarks can share one simulated clock between them.
"""
from __future__ import annotations

import threading
import time as _time
from typing import Protocol


class Clock(Protocol):
    """What the bot and the simulator need from time."""

    def time(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (or advance simulated time by that much)."""


class SystemClock:
    """Wall-clock time."""

    def time(self) -> float:
        return _time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            _time.sleep(seconds)


class SimulatedClock:
    """Manual time: ``sleep`` advances it at once; thread-safe."""

    def __init__(self, start: float = 1_800_000_000.0):
        self._now = float(start)
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (never backwards)."""
        if seconds > 0:
            with self._lock:
                self._now += seconds

"""Clocks: the real one, and a simulated one that lets an hour of trading run in seconds.

The bot and the simulated exchange both take a clock object instead of calling ``time`` directly,
so tests and benchmarks can share one simulated clock between them.
"""
from __future__ import annotations

import os
import select
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

    def wait(self, seconds: float, waker: Waker) -> None:
        """Sleep ``seconds``, or less when ``waker`` is woken (a stop request ends the wait at once)."""
        waker.wait(seconds)


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

    def wait(self, seconds: float, waker: Waker) -> None:
        """Simulated time does not wait: it advances (unless a stop was already requested)."""
        if not waker.woken():
            self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (never backwards)."""
        if seconds > 0:
            with self._lock:
                self._now += seconds


class Waker:
    """Ends a real-time wait at once when woken, from a signal handler or another thread. A self-pipe, so
    waking takes no lock: a lock taken inside a signal handler can deadlock the thread it interrupted, and
    ``time.sleep`` resumes after a handler returns (PEP 475), so a plain sleep would run to its end."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._woken = False

    def wake(self) -> None:
        self._woken = True
        try:
            os.write(self._w, b"!")
        except OSError:  # the pipe is full (already woken) or closed
            pass

    def woken(self) -> bool:
        return self._woken

    def clear(self) -> None:
        """Ready for the next wake (the loop handled what woke it; a stop request is the bot's own flag)."""
        self._woken = False
        try:
            while os.read(self._r, 512):
                pass
        except OSError:  # drained (or closed)
            pass

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True when woken (now or before)."""
        if not self._woken and seconds > 0:
            try:
                select.select([self._r], [], [], seconds)
            except (OSError, ValueError):  # closed meanwhile
                pass
        return self._woken

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass

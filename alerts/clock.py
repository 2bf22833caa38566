"""Wall time, injectable: the system clock in the daemon, a manual one in tests and replays."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait ``seconds`` (or until ``stop`` is set); True when stopped."""


class SystemClock:
    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(max(0.0, seconds))
            return False
        return stop.wait(max(0.0, seconds))


class ManualClock:
    """Time moves only when told (``advance``) or when something sleeps on it."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))
        return bool(stop and stop.is_set())


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)

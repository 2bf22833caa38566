"""Circuit breaker of one polled source: a source that keeps failing is polled less and less often.

After ``n`` consecutive failed polls the next poll waits ``interval * 2**n`` seconds from the last
attempt, at most ``max_delay_s``; the first successful poll closes the breaker again. The poll
scheduler still ticks at the source's interval and simply skips the ticks that come too early.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from monitor.core.backoff import Backoff


class Breaker:
    def __init__(self, interval_s: float, max_delay_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.max_delay_s = max(max_delay_s, interval_s)
        self._backoff = Backoff(interval_s * 2, self.max_delay_s)
        self._clock = clock
        self._lock = threading.Lock()
        self.failures = 0
        self.last_error: str | None = None
        self._next_at = 0.0

    def allow(self) -> bool:
        """Whether a poll may run now (always while closed)."""
        with self._lock:
            return self.failures == 0 or self._clock() >= self._next_at

    def record(self, error: str | None) -> None:
        """The outcome of a poll: ``None`` for success, else why it failed."""
        with self._lock:
            if error is None:
                self.failures, self.last_error, self._next_at = 0, None, 0.0
                return
            self.failures += 1
            self.last_error = error
            self._next_at = self._clock() + self.delay_s()

    def delay_s(self) -> float:
        """Seconds from the last failed attempt to the next allowed one (0 while closed)."""
        if self.failures == 0:
            return 0.0
        return self._backoff.delay(self.failures)  # interval * 2**failures, capped

    def retry_in_s(self) -> float:
        with self._lock:
            return max(0.0, self._next_at - self._clock()) if self.failures else 0.0

    @property
    def state(self) -> str:
        return "open" if self.failures else "closed"

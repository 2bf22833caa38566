"""The one retry-delay policy: exponential backoff with a cap, optional jitter and ``Retry-After``.

Used wherever finsent waits before trying again: feed fetches and the poll breaker (connectors),
webhook delivery (alerts, whose outbox stores the failure count and asks for the next delay),
state writes on a failing disk (``persist``) and a daemon waiting for its broker (``bus.factory``).
It only computes delays; each caller keeps its own loop, because they wait in different ways
(a stop event, a durable ``next_attempt_at``, a breaker's clock).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 64  # far past any cap; keeps ``multiplier ** n`` finite


@dataclass(frozen=True)
class Backoff:
    initial_s: float
    """The delay after the first failure."""
    max_s: float
    """No delay is longer (before ``retry_after``)."""
    multiplier: float = 2.0
    jitter: float = 0.0
    """Share of each delay that is random: 0 = none, 0.5 = "equal jitter" (between half and all)."""
    max_retry_after_s: float | None = None
    """A server's ``Retry-After`` is honoured up to this (default: ``max_s``)."""

    def delay(self, failures: int, rng: random.Random | None = None, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures (1 = the first one failed)."""
        step = min(self.max_s, self.initial_s * self.multiplier ** min(max(0, failures - 1), _MAX_EXPONENT))
        if self.jitter:
            step *= 1.0 - self.jitter * (rng or random).random()
        if retry_after is not None:
            cap = self.max_s if self.max_retry_after_s is None else self.max_retry_after_s
            step = max(step, min(retry_after, cap))
        return step

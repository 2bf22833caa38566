"""The one retry-delay policy (monitor.core.backoff), from its specification: the first failure
waits ``initial_s``, each further one ``multiplier`` times longer, never more than ``max_s``;
jitter takes away at most its share; a ``Retry-After`` is honoured up to its cap."""

from __future__ import annotations

import random

import pytest

from monitor.core.backoff import Backoff


def test_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    policy = Backoff(initial_s=0.5, max_s=30.0)
    assert [policy.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_other_multipliers_and_absurd_failure_counts_stay_finite() -> None:
    policy = Backoff(initial_s=1.0, max_s=100.0, multiplier=3.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 3, 9, 27, 81]
    assert policy.delay(10**9) == 100.0


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_jitter_takes_away_at_most_its_share(share: float) -> None:
    policy = Backoff(initial_s=4.0, max_s=4.0, jitter=share)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(500)]
    assert all(4.0 * (1 - share) <= d <= 4.0 for d in delays)
    assert max(delays) - min(delays) > share * 4.0 * 0.8  # really random, not a constant


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    assert Backoff(1.0, 10.0).delay(1, retry_after=7.0) == 7.0
    assert Backoff(1.0, 10.0).delay(1, retry_after=60.0) == 10.0  # default cap: max_s
    assert Backoff(1.0, 10.0, max_retry_after_s=45.0).delay(1, retry_after=60.0) == 45.0
    assert Backoff(1.0, 10.0).delay(4, retry_after=0.5) == 8.0  # never shorter than the backoff

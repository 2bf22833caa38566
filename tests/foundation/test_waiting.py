"""tests/waiting.py: wait_until returns the first truthy value or fails naming what it waited for;
settled watches a settle period after the first arrival, so a late duplicate is counted.

The helpers read ``time.monotonic`` and call ``time.sleep``; these tests replace both with a fake
clock whose ``sleep`` moves time forward, and events (a delivery, a duplicate) happen at given
fake times. So the checks hold on a loaded machine, and take no real time."""

from __future__ import annotations

import pytest

import tests.waiting
from tests.waiting import settled, wait_until


class FakeTime:
    """``monotonic`` and ``sleep`` for tests/waiting.py; ``sleep`` advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(tests.waiting, "time", fake)
    return fake


def arrivals(clock: FakeTime, *at: float):
    """A reader of how many events have arrived by now: the events come ``at`` seconds (fake
    time) after the reader is made."""
    start = clock.now
    return lambda: sum(1 for a in at if clock.now - start >= a)


def test_wait_until_returns_the_first_truthy_value(clock: FakeTime) -> None:
    n = arrivals(clock, 0.5, 0.9)
    got = wait_until(lambda: n() and ["seen", n()], 5, "the first", every_s=0.1)
    assert got == ["seen", 1]
    assert clock.now - 1000.0 == pytest.approx(0.5)


def test_wait_until_times_out_naming_what_it_waited_for(clock: FakeTime) -> None:
    with pytest.raises(AssertionError, match=r"^timed out after 0\.2s waiting for the impossible$"):
        wait_until(lambda: 0, 0.2, "the impossible", every_s=0.05)
    assert clock.now - 1000.0 == pytest.approx(0.2)  # it waited the whole timeout, no more


def test_wait_until_retries_through_ignored_errors_only(clock: FakeTime) -> None:
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise LookupError("not rendered yet")
        return "ok"

    assert wait_until(flaky, 5, "the page", every_s=0.01, ignoring=(LookupError,)) == "ok"
    with pytest.raises(AssertionError, match=r"last error: KeyError\(.missing.\)"):
        wait_until(lambda: {}["missing"], 0.1, "a key", every_s=0.02, ignoring=(LookupError,))
    with pytest.raises(KeyError):  # not ignored: a real failure, raised at once
        wait_until(lambda: {}["missing"], 5, "a key", every_s=0.02)


def test_settled_sees_a_late_duplicate_inside_the_settle_period(clock: FakeTime) -> None:
    n = arrivals(clock, 0.05, 0.35)  # the duplicate comes 0.3 s after the first arrival
    assert settled(n, 0.6, 5, "the delivery", every_s=0.02) == 2
    assert clock.now - 1000.0 == pytest.approx(0.06 + 0.6)  # first seen at the 0.06 s poll, then 0.6 s


def test_settled_returns_the_value_at_the_end_of_the_settle_period(clock: FakeTime) -> None:
    n = arrivals(clock, 0.05)
    got = settled(lambda: list(range(n())), 0.3, 5, "the delivery", every_s=0.02)
    assert got == [0]  # exactly once: nothing more came during the settle period
    assert clock.now - 1000.0 >= 0.05 + 0.3  # it did keep watching after the first arrival


def test_settled_does_not_watch_past_its_settle_period(clock: FakeTime) -> None:
    n = arrivals(clock, 0.05, 2.0)  # a duplicate later than the settle period is not waited for
    assert settled(n, 0.5, 5, "the delivery", every_s=0.1) == 1


def test_settled_times_out_when_nothing_arrives(clock: FakeTime) -> None:
    with pytest.raises(AssertionError, match="timed out after 0.1s waiting for the delivery"):
        settled(list, 1, 0.1, "the delivery", every_s=0.02)


def test_waiting_for_the_first_arrival_alone_would_miss_the_duplicate(clock: FakeTime) -> None:
    """Why settled exists: the count right at the first arrival is 1, the true count is 2."""
    first = arrivals(clock, 0.05, 0.25)
    assert wait_until(first, 5, "the first", every_s=0.01) == 1
    again = arrivals(clock, 0.05, 0.25)
    assert settled(again, 0.5, 5, "the delivery", every_s=0.02) == 2

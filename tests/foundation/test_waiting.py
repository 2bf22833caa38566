"""tests/waiting.py: wait_until returns the first truthy value or fails naming what it waited for;
settled watches a settle period after the first arrival, so a late duplicate is counted."""

from __future__ import annotations

import threading
import time

import pytest

from tests.waiting import settled, wait_until


class Counter:
    """A count bumped by a thread after given delays (seconds from start())."""

    def __init__(self, *delays: float) -> None:
        self.n = 0
        self._thread = threading.Thread(target=self._bump, args=(delays,), daemon=True)

    def _bump(self, delays: tuple[float, ...]) -> None:
        started = time.monotonic()
        for d in delays:
            time.sleep(max(0.0, started + d - time.monotonic()))
            self.n += 1

    def start(self) -> Counter:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(5)


def test_wait_until_returns_the_first_truthy_value() -> None:
    counter = Counter(0.05, 0.1).start()
    got = wait_until(lambda: counter.n and ["seen", counter.n], 5, "the first bump", every_s=0.01)
    assert got[0] == "seen" and got[1] >= 1
    counter.join()


def test_wait_until_times_out_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^timed out after 0\.2s waiting for the impossible$"):
        wait_until(lambda: 0, 0.2, "the impossible", every_s=0.05)
    assert 0.2 <= time.monotonic() - started < 2


def test_wait_until_retries_through_ignored_errors_only() -> None:
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


def test_settled_sees_a_late_duplicate_inside_the_settle_period() -> None:
    counter = Counter(0.05, 0.35).start()  # the duplicate comes 0.3 s after the first arrival
    started = time.monotonic()
    assert settled(lambda: counter.n, 0.6, 5, "the delivery", every_s=0.02) == 2
    assert time.monotonic() - started >= 0.05 + 0.6
    counter.join()


def test_settled_returns_the_value_at_the_end_of_the_settle_period() -> None:
    counter = Counter(0.05).start()
    started = time.monotonic()
    got = settled(lambda: list(range(counter.n)), 0.3, 5, "the delivery", every_s=0.02)
    elapsed = time.monotonic() - started
    assert got == [0]  # exactly once: nothing more came during the settle period
    assert elapsed >= 0.05 + 0.3  # it did keep watching after the first arrival
    counter.join()


def test_settled_times_out_when_nothing_arrives() -> None:
    with pytest.raises(AssertionError, match="timed out after 0.1s waiting for the delivery"):
        settled(lambda: [], 1, 0.1, "the delivery", every_s=0.02)


def test_waiting_for_the_first_arrival_alone_would_miss_the_duplicate() -> None:
    """Why settled exists: the count right at the first arrival is 1, the true count is 2."""
    counter = Counter(0.05, 0.25).start()
    assert wait_until(lambda: counter.n, 5, "the first", every_s=0.01) == 1
    assert settled(lambda: counter.n, 0.5, 5, "the delivery", every_s=0.02) == 2
    counter.join()

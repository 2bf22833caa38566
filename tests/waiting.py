"""Waiting in tests: wait on a condition, never count after a fixed sleep (issue #27 item 2).

Two helpers, and the only polling loops the tests should need:

- :func:`wait_until` for "eventually": poll a predicate until it is truthy, and fail naming what
  was awaited when it never is.
- :func:`settled` for "exactly N": wait for the first arrival, then keep watching a settle
  period, and only then let the caller count.

``tests/foundation/test_no_sleep_then_count.py`` fails on a ``time.sleep(...)`` directly followed by
an ``assert``, the pattern these replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    every_s: float = 0.1,
    *,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` every ``every_s`` seconds until it returns something truthy, and return
    that first truthy value (so ``(alert,) = wait_until(lambda: receiver.accepted, ...)`` works).

    Raises ``AssertionError("timed out after {timeout_s}s waiting for {what}")`` otherwise; the
    predicate is always called at least once, and once more at the deadline.

    ``ignoring``: exception types that mean "not yet" (a page mid-render, say) rather than a
    failure; the last one caught is named in the timeout message. Anything else propagates.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ignoring as err:
            last_error = err
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(every_s, remaining))
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}"
        + (f" (last error: {last_error!r})" if last_error is not None else "")
    )


def settled(read: Callable[[], T], settle_s: float, timeout_s: float, what: str, every_s: float = 0.1) -> T:
    """The value of ``read()`` once it has arrived and a settle period has passed: for "exactly N".

    The rule: to check that something happened *exactly once* (or exactly N times), waiting for
    the first arrival is not enough, because a duplicate may still be on its way; and sleeping a
    fixed time before counting is not enough either, because the first arrival may be late. So
    wait until ``read()`` returns something truthy (a non-empty list, a count >= 1), then keep
    watching for ``settle_s`` more seconds, and return the value read at the *end* of the settle
    period. The caller asserts the exact count on that value::

        accepted = settled(lambda: list(receiver.accepted), 2, 120, "the webhook delivery")
        assert len(accepted) == 1

    ``read`` should return a snapshot (a copy of the list, or a count) rather than a live object
    that keeps changing after this returns. Waiting for the first arrival times out after
    ``timeout_s`` (an ``AssertionError`` naming ``what``); the settle period comes on top of it.
    A duplicate arriving inside the settle period is in the value returned; one arriving later
    than ``settle_s`` after the first is, by definition, not watched for: choose ``settle_s`` at
    least as long as the longest delay a duplicate could plausibly have.
    """
    value = wait_until(read, timeout_s, what, every_s)
    end = time.monotonic() + settle_s
    while (remaining := end - time.monotonic()) > 0:
        time.sleep(min(every_s, remaining))
        value = read()
    return value

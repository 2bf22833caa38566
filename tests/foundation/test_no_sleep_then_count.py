"""No test counts after a fixed sleep (issue #27 item 2): wait on a condition instead.

``time.sleep(2); assert len(received) == 1`` is flaky both ways: on a slow machine the thing has
not arrived yet, and on a fast one the sleep is wasted. Tests use ``tests/waiting.py`` instead:
``wait_until`` for "eventually", ``settled`` for "exactly N" (wait for the first arrival, then
keep watching a settle period, then count).

The heuristic, deliberately simple: every ``tests/**/*.py`` file (except ``tests/bench/`` and
``tests/waiting.py`` itself) is parsed with :mod:`ast`, and a ``time.sleep(...)`` (or a bare
``sleep(...)``) call statement whose *next statement in the same body* is an ``assert`` is a
violation, reported as ``file:line`` of the sleep. A sleep that is the last statement of its
body, or is followed by anything else, is not flagged: sleeping to pace a loop or to let time
pass on purpose stays allowed, but the next line may not be the assertion it was waiting for.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
EXCLUDED = (TESTS / "bench", TESTS / "waiting.py")


def _is_sleep(stmt: ast.stmt) -> bool:
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    if isinstance(func, ast.Attribute):
        return func.attr == "sleep" and isinstance(func.value, ast.Name) and func.value.id == "time"
    return isinstance(func, ast.Name) and func.id == "sleep"


def _bodies(node: ast.AST):
    """Every statement list directly under ``node`` (body, orelse, finalbody, ...)."""
    for _, value in ast.iter_fields(node):
        if isinstance(value, list) and value and all(isinstance(s, ast.stmt) for s in value):
            yield value


def sleep_then_assert(source: str, filename: str = "<string>") -> list[str]:
    """``filename:line`` of each ``time.sleep(...)`` directly followed by an ``assert``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        for body in _bodies(node):
            for stmt, following in zip(body, body[1:]):
                if _is_sleep(stmt) and isinstance(following, ast.Assert):
                    found.append(f"{filename}:{stmt.lineno}")
    return found


def test_no_test_asserts_right_after_a_fixed_sleep() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if any(path == ex or ex in path.parents for ex in EXCLUDED):
            continue
        found += sleep_then_assert(path.read_text(), str(path.relative_to(TESTS.parent)))
    assert not found, (
        "time.sleep(...) directly followed by an assert (count after a fixed sleep); wait on "
        "the condition with tests.waiting.wait_until, or for 'exactly N' use "
        "tests.waiting.settled:\n  " + "\n  ".join(found)
    )


BAD = """
import time

def test_one_alert(receiver):
    receiver.start()
    if True:
        time.sleep(2)  # anything else would have arrived by now
        assert len(receiver.accepted) == 1
    for _ in range(3):
        time.sleep(0.1)
    try:
        pass
    finally:
        sleep(0.5)
        assert receiver.count >= 2
"""

GOOD = """
import time

def test_one_alert(receiver):
    accepted = settled(lambda: list(receiver.accepted), 2, 60, "the alert")
    assert len(accepted) == 1
    time.sleep(0.1)
    receiver.poke()
    assert receiver.poked
    while receiver.busy():
        time.sleep(0.05)
    asyncio.sleep(1)
"""


def test_the_check_finds_a_sleep_followed_by_an_assert_in_any_block() -> None:
    assert sleep_then_assert(BAD, "tests/x.py") == ["tests/x.py:7", "tests/x.py:14"]


def test_the_check_leaves_waits_and_pacing_sleeps_alone() -> None:
    assert sleep_then_assert(GOOD, "tests/x.py") == []

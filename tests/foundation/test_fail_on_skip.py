"""CI's setting (FINSENT_FAIL_ON_SKIP=1, .ci/run) turns a skipped test into a failure unless the
test is marked optional_tool; without the setting a skip stays a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()

TESTS = """
import pytest

def test_needs_a_core_tool():
    pytest.skip("the broker is not installed")

@pytest.mark.optional_tool
def test_needs_a_bonus_tool():
    pytest.skip("systemd-analyze not available")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    raise AssertionError

def test_plain():
    assert True
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setting: str | None) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    optional_tool: optional\n")
    pytester.makepyfile(test_inner=TESTS)
    if setting is None:
        monkeypatch.delenv("FINSENT_FAIL_ON_SKIP", raising=False)
    else:
        monkeypatch.setenv("FINSENT_FAIL_ON_SKIP", setting)
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")


def test_in_ci_a_skip_fails_unless_the_tool_is_optional(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    result = _run(pytester, monkeypatch, "1")
    result.assert_outcomes(passed=1, failed=1, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*test_needs_a_core_tool*", "*the broker is not installed*FINSENT_FAIL_ON_SKIP=1*"])


def test_elsewhere_skips_stay_skips(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    _run(pytester, monkeypatch, None).assert_outcomes(passed=1, skipped=2, xfailed=1)

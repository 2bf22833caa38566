"""A real browser for the page tests: Debian's chromium + chromium-driver, driven by selenium.

``deploy/bootstrap.sh --with-test-tools`` (``make test``) installs both when missing; without
them the browser tests are skipped with that hint.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromium-driver are not installed (deploy/bootstrap.sh --with-test-tools installs them)",
)

T = TypeVar("T")


@contextmanager
def chromium(width: int = 1500, height: int = 1400) -> Iterator["object"]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[dict]:  # noqa: ANN001
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_until(check: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - the page may be mid-render; try again
            last_error = err
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))

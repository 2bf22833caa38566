"""A real browser for the page tests: Debian's chromium + chromium-driver, driven by selenium.

``deploy/bootstrap.sh --with-test-tools`` (``make test``) installs both when missing; without
them the browser tests are skipped with that hint.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import pytest

from tests.waiting import wait_until as _wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromium-driver are not installed (deploy/bootstrap.sh --with-test-tools installs them)",
)


@contextmanager
def chromium(width: int = 1500, height: int = 1400) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# The page may be mid-render (an element not there yet, or replaced while read): keep polling.
wait_until = partial(_wait_until, every_s=0.25, ignoring=(Exception,))

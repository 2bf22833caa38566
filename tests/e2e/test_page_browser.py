"""The page in a real browser over in-process stores: headlines are text, bad queries are messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from monitor.app.component import Context
from monitor.app.components.ui import build_ui
from monitor.app.http import HttpServer, build_app
from monitor.core.bus.memory import MemoryBus
from tests.e2e.browser import chromium, needs_browser, wait_until
from tests.monitor.test_ui import SCRIPT_TITLE, STORIES, fill

pytestmark = [pytest.mark.e2e, needs_browser]


@pytest.fixture
def page_url(make_settings) -> Iterator[str]:
    settings = make_settings()
    ctx = Context(settings=settings, bus=MemoryBus(), registry=CollectorRegistry())
    ctx.trends, ctx.items = fill(settings, STORIES)
    server = HttpServer(build_app(ctx.health, ctx.registry, build_ui(ctx).routers), "127.0.0.1", 0)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_headlines_render_as_text_and_bad_queries_as_messages(page_url: str):
    with chromium() as driver:
        driver.get(f"{page_url}/?window=9x&key=ticker:NOPE&item=nope")
        messages = wait_until(
            lambda: (
                driver.find_element("id", "messages").text.count("\n") >= 1
                and driver.find_element("id", "messages").text
            ),
            30,
            "the messages",
        )
        assert "unknown window '9x'; choose one of: 1m, 5m, 15m, 1h" in messages
        assert "no trend key 'ticker:NOPE'" in messages
        item = wait_until(lambda: driver.find_element("id", "item").text, 10, "the story lookup")
        assert "no scored item 'nope' seen by this process" in item
        assert "Traceback" not in driver.page_source
        # the page fell back to the default window and still charts
        wait_until(lambda: driver.find_elements("css selector", ".chart[data-key='all'] canvas"), 10, "the chart")
        assert driver.find_element("id", "window").get_attribute("value") == "5m"

        cell = wait_until(lambda: driver.find_element("css selector", "tr[data-id='s4'] td.title"), 10, "the story")
        assert cell.find_element("css selector", "a").text == SCRIPT_TITLE.replace("  ", " ")
        assert cell.find_elements("css selector", "b, script") == []
        assert driver.execute_script("return typeof window.__pwned") == "undefined"
        assert not driver.find_elements("css selector", "#stories script")

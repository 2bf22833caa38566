"""What the daemon's log handler lets through from its libraries."""

from __future__ import annotations

import io
import logging

from monitor.core.logs import configure_logging


def test_kafkas_slow_network_step_warning_is_dropped_and_other_warnings_pass():
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    selector = logging.getLogger("kafka.net.selector")
    selector.warning(
        "Task %r ran for %.3fs (>%.3fs threshold). It is blocking the event loop -- likely a tight "
        "sync loop inside a coroutine. Other pollers will time out.",
        "t",
        0.363,
        0.1,
    )
    selector.warning("connection to node 1 lost")
    text = out.getvalue()
    assert "blocking the event loop" not in text
    assert "connection to node 1 lost" in text

    configure_logging("INFO", "json")

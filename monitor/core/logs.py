"""Structured logging: structlog over the standard library, JSON lines or a console renderer.

Every module logs with ``structlog.get_logger(__name__)`` (or stdlib ``logging``; both end up in
the same handler) and passes context as key/value pairs, never formatted into the message.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO

import structlog

from monitor.core.secrets import Redactor


def configure_logging(
    level: str = "INFO", fmt: str = "console", stream: TextIO | None = None, secrets: Iterable[str] = ()
) -> None:
    """Route structlog and stdlib logging to one handler. Every rendered line passes a
    :class:`monitor.core.secrets.Redactor` that masks ``secrets`` and credentials inside URLs."""
    redactor = Redactor(secrets)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor.processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "httpx", "httpcore", "apscheduler", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    selector = logging.getLogger("kafka.net.selector")
    if not any(isinstance(f, _SlowKafkaTaskFilter) for f in selector.filters):
        selector.addFilter(_SlowKafkaTaskFilter())


def quiet_kafka_client() -> None:
    """For one-shot commands (``finsent dlq``, ``finsent replay``): kafka-python logs every failed
    connection attempt at ERROR while it retries; the command prints one clear line itself when the
    broker cannot be reached, so the client's own lines are dropped."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL + 1)


class _SlowKafkaTaskFilter(logging.Filter):
    """kafka-python 3 warns whenever one step of its network loop takes over 0.1 s ("Task ... ran
    for 0.363s ... blocking the event loop"), which a busy 2-core machine does all the time with
    nothing wrong (the kafka loggers show warnings and above only): drop that line, keep every
    other selector warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "threshold). It is blocking the event loop" not in record.getMessage()

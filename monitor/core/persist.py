"""Writing a stage's state when the disk may be full: wait in place until it is written.

A stateful stage (aggregate checkpoints, the alert store and outbox) must never commit input
offsets past work it could not persist. When an SQLite write fails because the disk is full or
failing (``SQLITE_FULL``, ``SQLITE_IOERR*``, ``ENOSPC``/``EDQUOT``/``EIO``), the stage logs it,
counts it, reports not-ready, and retries the *same* write with backoff, without polling or
committing, until space returns; then it carries on where it was. Nothing is lost: the input is
neither committed nor dropped, and the write it retries is the one that failed.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

import structlog

from monitor.core.backoff import Backoff

log = structlog.get_logger(__name__)
T = TypeVar("T")

_SQLITE_FULL, _SQLITE_IOERR = 13, 10
_OS_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EIO}


class StateNotPersisted(RuntimeError):
    """The stage was asked to stop while its state could not be written (offsets not committed)."""


def is_disk_fault(err: BaseException) -> bool:
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR)
        text = str(err).lower()
        return "disk is full" in text or "disk i/o error" in text
    return isinstance(err, OSError) and err.errno in _OS_DISK


def disk_fault_in(err: BaseException) -> BaseException | None:
    """The disk fault behind ``err`` (itself or one of its causes), if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if is_disk_fault(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class Persister:
    """Runs a stage's state writes; ``blocked`` (for readiness) says why the last one is waiting."""

    def __init__(
        self,
        stage: str,
        on_error: Callable[[], None] | None = None,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.stage = stage
        self.on_error = on_error
        self.backoff = Backoff(initial_backoff_s, max_backoff_s)
        self.blocked: str | None = None

    def write(self, fn: Callable[[], T], stop: threading.Event) -> T:
        """``fn()`` until it succeeds; ``fn`` must be a retryable transaction (rolled back on error)."""
        attempts = 0
        while True:
            try:
                result = fn()
            except (sqlite3.Error, OSError) as err:
                if not is_disk_fault(err):
                    raise
                attempts += 1
                backoff = self.backoff.delay(attempts)
                self.blocked = f"state not persisted: {err}"
                if self.on_error is not None:
                    self.on_error()
                log.error(
                    "state write failed (disk full or failing); holding offsets and retrying",
                    stage=self.stage,
                    error=str(err),
                    attempt=attempts,
                    retry_in_s=round(backoff, 2),
                )
                if stop.wait(backoff):
                    raise StateNotPersisted(
                        f"{self.stage}: stopped while its state could not be written "
                        f"({err}); offsets were not committed"
                    ) from err
                continue
            if attempts:
                log.info("state written again; resuming", stage=self.stage, failed_attempts=attempts)
            self.blocked = None
            return result

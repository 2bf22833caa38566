"""Daemon stages of the ingest component: the poll scheduler and one stage per file replay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from connectors.breaker import Breaker
from connectors.metrics import IngestMetrics
from connectors.publisher import PublishResult
from connectors.replay import Replayer

log = structlog.get_logger(__name__)


class Poller(Protocol):
    @property
    def name(self) -> str: ...

    def poll_once(self) -> PublishResult: ...


class PollingStage:
    """Runs every poller on its own interval (apscheduler, one job per source, no overlap).

    A failing poll is logged and counted by the poller itself; an unexpected exception in one
    job is logged by this stage and never stops the other sources. Each source has a
    :class:`~connectors.breaker.Breaker`: one that keeps failing is polled exponentially less
    often (up to its ``failure_backoff_max_s``) until a poll succeeds; the breakers' state is in
    the ``/readyz`` detail and in ``finsent_ingest_source_failures`` / ``..._backoff_seconds``.
    """

    name = "ingest-poll"

    def __init__(
        self,
        pollers: list[tuple[Poller, float]],
        stopping: threading.Event,
        max_workers: int = 4,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pollers = pollers
        self.metrics = metrics
        self.breakers = {
            p.name: Breaker(interval, getattr(getattr(p, "source", None), "failure_backoff_max_s", 3600.0), clock)
            for p, interval in pollers
        }
        self.stopping = stopping
        """Set when the stage stops, so that fetchers waiting to retry give up at once."""
        self.max_workers = max(1, min(max_workers, len(pollers) or 1))
        self._started = threading.Event()
        self.polls: dict[str, int] = {p.name: 0 for p, _ in pollers}

    def _job(self, poller: Poller) -> None:
        breaker = self.breakers[poller.name]
        if not breaker.allow():
            return
        error: str | None = "poll crashed"
        try:
            error = poller.poll_once().fetch_error
        except Exception:
            log.exception("poll crashed", source=poller.name)
        finally:
            self.polls[poller.name] += 1
            was_open = breaker.state == "open"
            breaker.record(error)
            if error is not None:
                log.warning(
                    "source failing; backing off",
                    source=poller.name,
                    failures=breaker.failures,
                    next_poll_in_s=round(breaker.delay_s(), 1),
                )
            elif was_open:
                log.info("source recovered", source=poller.name)
            if self.metrics is not None:
                self.metrics.source_failures.labels(poller.name).set(breaker.failures)
                self.metrics.source_backoff.labels(poller.name).set(breaker.delay_s())

    def run(self, stop: threading.Event) -> None:
        scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            executors={"default": {"type": "threadpool", "max_workers": self.max_workers}},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        )
        now = datetime.now(timezone.utc)
        for n, (poller, interval) in enumerate(self.pollers):
            scheduler.add_job(
                self._job,
                "interval",
                args=[poller],
                seconds=interval,
                id=poller.name,
                name=poller.name,
                next_run_time=now + timedelta(milliseconds=50 * n),
            )
        scheduler.start()
        self._started.set()
        log.info("pollers scheduled", sources=[p.name for p, _ in self.pollers])
        try:
            stop.wait()
        finally:
            self.stopping.set()
            scheduler.shutdown(wait=True)
            self._started.clear()

    def ready(self) -> tuple[bool, str]:
        if not self._started.is_set():
            return False, "scheduler not started"
        detail = f"{len(self.pollers)} sources, polls: {sum(self.polls.values())}"
        failing = [
            f"{name} ({b.failures} failures, next poll in {b.retry_in_s():.0f}s: {b.last_error})"
            for name, b in self.breakers.items()
            if b.state == "open"
        ]
        return True, detail + (f"; backing off: {'; '.join(failing)}" if failing else "")


class ReplayStage:
    """Replays one file; once done (no loop) it idles until stop so liveness stays green."""

    def __init__(self, replayer: Replayer) -> None:
        self.replayer = replayer
        self.name = f"ingest-replay:{replayer.source.name}"
        self._state = "starting"

    def run(self, stop: threading.Event) -> None:
        self._state = "replaying"
        try:
            stats = self.replayer.run(stop)
        except OSError as err:  # the file went away (or became unreadable) after the config was checked
            self._state = f"failed: cannot read {self.replayer.source.path}: {err.strerror or err}"
            self._failed = True
            log.error(
                "replay source unreadable",
                source=self.replayer.source.name,
                path=str(self.replayer.source.path),
                error=err.strerror or str(err),
            )
            stop.wait()
            return
        self._state = f"finished: {stats.summary()}"
        stop.wait()

    _failed = False

    def ready(self) -> tuple[bool, str]:
        return not self._failed, self._state

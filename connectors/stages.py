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
from connectors.feed_handover import ADOPT_DELAY_S, FeedHandover
from connectors.metrics import IngestMetrics
from connectors.publisher import PublishResult
from connectors.replay import Replayer

log = structlog.get_logger(__name__)

RELEASE_WAIT_S = 60.0
"""How long a source moving to another instance waits for its poll in flight here."""


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
        handover: FeedHandover | None = None,
    ) -> None:
        """``handover`` set: other ingest instances poll some of the sources; poll none until
        :meth:`set_owned` says which are this instance's, and adopt each gained one first."""
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
        self._handover = handover
        self._owned: frozenset[str] | None = frozenset() if handover else None  # None: every source
        self._adopting: dict[str, int] = {}  # source -> the ownership epoch it was gained in
        self._epoch = 0
        self._in_flight: set[str] = set()
        self._scheduler: BackgroundScheduler | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def set_owned(self, names: frozenset[str]) -> None:
        """From now on poll only the sources in ``names`` (the others belong to other ingest
        instances: ``monitor.core.bus.lease.GroupShare``); a newly owned one is adopted and polled
        :data:`~connectors.feed_handover.ADOPT_DELAY_S` later."""
        with self._lock:
            before = self._owned
            self._owned = names
            gained = sorted(names - (before or frozenset()))
            self._epoch += 1
            self._adopting = {n: e for n, e in self._adopting.items() if n in names}
            self._adopting.update((n, self._epoch) for n in gained)
            scheduler = self._scheduler
        if before is None or names != before:
            log.info("polling these sources", owned=sorted(names), gained=gained, of=len(self.pollers))
        if scheduler is not None:
            when = datetime.now(timezone.utc) + timedelta(seconds=ADOPT_DELAY_S)
            for name in gained:
                scheduler.modify_job(name, next_run_time=when)

    def release(self, names: frozenset[str]) -> None:
        """Stop polling ``names`` and wait (up to :data:`RELEASE_WAIT_S`) for their polls in flight
        to finish: called before the group may give them to another instance."""
        with self._lock:
            every = frozenset(p.name for p, _ in self.pollers)
            self._owned = (every if self._owned is None else self._owned) - names
            finished = self._idle.wait_for(lambda: not (self._in_flight & names), RELEASE_WAIT_S)
        if not finished:
            log.warning("polls still running while their sources move to another instance", sources=sorted(names))

    def _job(self, poller: Poller) -> None:
        name = poller.name
        with self._lock:
            if self._owned is not None and name not in self._owned:
                return
            self._in_flight.add(name)
            epoch = self._adopting.get(name)
        try:
            if self._handover is not None and epoch is not None and not self._adopt(name, epoch):
                return
            self._poll(poller)
        finally:
            with self._lock:
                self._in_flight.discard(name)
                self._idle.notify_all()

    def _adopt(self, name: str, epoch: int) -> bool:
        """The last owner's published ids first; False: do not poll now."""
        assert self._handover is not None
        try:
            self._handover.adopt(name)
        except Exception as err:  # no poll without the last owner's ids: that would publish twice
            log.warning("cannot adopt the source yet; retrying next poll", source=name, error=str(err))
            return False
        with self._lock:
            if self._adopting.get(name) == epoch:
                del self._adopting[name]
            return self._owned is None or name in self._owned

    def _poll(self, poller: Poller) -> None:
        breaker = self.breakers[poller.name]
        if not breaker.allow():
            return
        error: str | None = "poll crashed"
        try:
            result = poller.poll_once()
            error = result.fetch_error
            if self._handover is not None and result.ids:
                self._handover.published(poller.name, result.ids)
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
        with self._lock:
            self._scheduler = scheduler
        self._started.set()
        log.info("pollers scheduled", sources=[p.name for p, _ in self.pollers])
        try:
            stop.wait()
        finally:
            self.stopping.set()
            with self._lock:
                self._scheduler = None
            scheduler.shutdown(wait=True)
            self._started.clear()

    def ready(self) -> tuple[bool, str]:
        if not self._started.is_set():
            return False, "scheduler not started"
        owned = self._owned
        detail = f"{len(self.pollers)} sources, polls: {sum(self.polls.values())}"
        if owned is not None:
            detail += f"; polled here: {', '.join(sorted(owned)) or 'none (other ingest instances own them)'}"
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

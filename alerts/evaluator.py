"""The alert evaluator: what :class:`~alerts.stages.EvaluatorStage` (and a rules replay) drives.

One record at a time, a trend point or a scored story goes one way::

    alerts.evaluation  which rules it concerns, what each says (a reading)
    alerts.lifecycle   what the readings (and the passing of event time) do to each alert
    alerts.dispatch    the batch's transitions, grouped, as outbox rows
    alerts.alert_store the batch (alert state, latest points, watermark, outbox, input offsets),
                       written in one transaction

:class:`AlertEngine` only connects them; the rules are in the module of each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from alerts.alert_store import AlertStore, Changes
from alerts.clock import Clock, SystemClock
from alerts.dispatch import Dispatcher
from alerts.evaluation import RuleEvaluation, story_time, trend_time
from alerts.index import RuleIndex
from alerts.instances import AlertInstance
from alerts.lifecycle import AlertLifecycle
from alerts.routing import Router
from alerts.ruleset import RuleSet
from alerts.settings import EngineOptions
from monitor.core.bus.base import TopicPartition
from monitor.core.records import Record, ScoredItem, TrendPoint


class AlertEngine:
    def __init__(
        self,
        rules: RuleSet,
        store: AlertStore | None = None,
        options: EngineOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.rules = rules
        self.store = store or AlertStore(":memory:")
        self.options = options or EngineOptions()
        self._clock = clock or SystemClock()
        self.index = RuleIndex(rules)
        router = Router(self.options)
        self.evaluation = RuleEvaluation(self.index, self.store.load_latest(), self.options)
        self.lifecycle = AlertLifecycle(rules, router, self.store, self.evaluation.latest, self.options, self._clock)
        self.dispatch = Dispatcher(rules, router, self.lifecycle, self.options, self._clock)
        self.points_seen = 0
        self.stories_seen = 0

    @property
    def clock(self) -> Clock:
        return self._clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._clock = self.lifecycle.clock = self.dispatch.clock = clock

    @property
    def watermark(self) -> datetime | None:
        """The latest event time seen (see :mod:`alerts.lifecycle`)."""
        return self.lifecycle.watermark

    def observe(self, record: Record) -> None:
        if isinstance(record, TrendPoint):
            self.observe_trend(record)
        elif isinstance(record, ScoredItem):
            self.observe_story(record)
        else:
            raise TypeError(f"alerts cannot evaluate a {type(record).__name__}")

    def observe_trend(self, point: TrendPoint) -> None:
        self.points_seen += 1
        self.lifecycle.advance(trend_time(point))
        readings = self.evaluation.point(point)
        for reading in readings.current:
            self.lifecycle.step(reading)
        for reading in readings.revisions:
            self.lifecycle.revise(reading)

    def observe_story(self, scored: ScoredItem) -> None:
        self.stories_seen += 1
        readings = self.evaluation.story(scored)
        if readings is None:
            return  # no rule watches its tickers: it does not move event time either
        self.lifecycle.advance(story_time(scored))
        for reading in readings:
            self.lifecycle.story(reading)

    def tick(self) -> None:
        """Time-driven transitions at the current watermark (see :mod:`alerts.lifecycle`)."""
        self.lifecycle.tick()

    def take_changes(self) -> Changes:
        """Everything since the last call, with the notifications built; resets the batch."""
        changes, transitions = self.lifecycle.take_batch()
        changes.latest = self.evaluation.take_latest()
        changes.outbox = self.dispatch.notifications(transitions, changes.upserts.keys() | changes.deletes)
        return changes

    def commit(
        self,
        offsets: Mapping[TopicPartition, int] | None = None,
        write: Callable[[Callable[[], int]], int] | None = None,
    ) -> Changes:
        """Tick, then persist the batch (state + outbox + offsets) in one transaction.

        ``write`` runs that transaction (the evaluator stage passes one that retries the same
        batch in place while the disk is full); by default it runs once and raises."""
        self.tick()
        changes = self.take_changes()
        if changes or offsets:
            apply = lambda: self.store.apply(changes, offsets)  # noqa: E731
            apply() if write is None else write(apply)
        return changes

    def process(
        self,
        records: Iterable[Record],
        offsets: Mapping[TopicPartition, int] | None = None,
        write: Callable[[Callable[[], int]], int] | None = None,
    ) -> Changes:
        for r in records:
            self.observe(r)
        return self.commit(offsets, write)

    def alerts(self) -> list[AlertInstance]:
        return self.lifecycle.alerts()

    def get(self, fingerprint: str) -> AlertInstance | None:
        return self.lifecycle.get(fingerprint)

"""The alert component's two stages: the rule evaluator and the outbox deliverer."""

from __future__ import annotations

import threading
import time

import structlog

from alerts.evaluator import AlertEngine
from alerts.keepalive import AlertmanagerKeepalive
from alerts.metrics import AlertMetrics
from alerts.outbox import OutboxDeliverer
from monitor.core.bus.base import Bus, Consumer, ConsumerOptions, TopicPartition
from monitor.core.bus.codec import DeadLetterSink, RecordReader, next_offsets
from monitor.core.persist import Persister
from monitor.core.records import Record, ScoredItem, TrendPoint

log = structlog.get_logger(__name__)


class EvaluatorStage:
    """Consumes ``news.trends`` (and ``news.scored`` when story rules exist), evaluates the rules,
    and writes state + outbox + input offsets in one SQLite transaction before committing offsets.

    On (re)assignment it seeks each partition to the offset stored in that transaction, so a crash
    between the transaction and the commit does not evaluate a batch twice. On a bus that starts
    empty on every start (``durable_bus=False``: the in-process bus) the stored offsets point into
    a log that no longer exists: they are dropped at start and evaluation starts over at offset 0
    of the new log. The alert state is kept: it is about event time, not offsets, and the demo
    feed's event time never goes back across restarts.
    """

    name = "alerts-evaluate"

    def __init__(
        self,
        bus: Bus,
        engine: AlertEngine,
        *,
        trends_topic: str,
        scored_topic: str | None,
        dlq_topic: str,
        group_id: str,
        wake: threading.Event | None = None,
        metrics: AlertMetrics | None = None,
        poll_timeout_s: float = 0.5,
        max_records: int = 500,
        durable_bus: bool = True,
    ) -> None:
        self.bus = bus
        self.durable_bus = durable_bus
        self.engine = engine
        self.topics = [trends_topic] + ([scored_topic] if scored_topic else [])
        self.trends_topic = trends_topic
        self.dlq_topic = dlq_topic
        self.group_id = group_id
        self.wake = wake
        self.metrics = metrics
        self.poll_timeout_s = poll_timeout_s
        self.max_records = max_records
        self._ready = False
        self._consumer: Consumer | None = None
        self._persister = Persister(self.name, on_error=metrics.state_write_errors.inc if metrics else None)

    def ready(self) -> tuple[bool, str]:
        if not self._ready:
            return False, "starting"
        if self._persister.blocked:
            return False, self._persister.blocked
        return True, f"{len(self.engine.rules.rules)} rules, watermark {self.engine.watermark}"

    def _on_assign(self, added: set[TopicPartition]) -> None:
        # The alert store's offsets are written in the same transaction as the state they led
        # to, so they are never behind the group's committed offsets; resume from them.
        consumer = self._consumer
        for tp in added:
            stored = self.engine.store.input_offset(tp)
            if stored is not None and consumer is not None:
                consumer.seek(tp, stored)
                log.info(
                    "resuming from the alert store's offset", topic=tp.topic, partition=tp.partition, offset=stored
                )

    def run(self, stop: threading.Event) -> None:
        if not self.durable_bus:
            dropped = self.engine.store.forget_input_offsets()
            if dropped:
                log.info("new in-process bus: alert evaluation starts over at offset 0", stored_offsets_dropped=dropped)
        consumer = self.bus.consumer(self.topics, ConsumerOptions(group_id=self.group_id, on_assign=self._on_assign))
        self._consumer = consumer
        producer = self.bus.producer()
        dlq = DeadLetterSink(producer, self.dlq_topic, "alerts")
        trends = RecordReader(TrendPoint, dlq)
        stories = RecordReader(ScoredItem, dlq)
        self._ready = True
        try:
            while not stop.is_set():
                messages = consumer.poll(timeout_s=self.poll_timeout_s, max_records=self.max_records)
                started = time.perf_counter()
                records: list[Record] = []
                if messages:
                    trend_msgs = [m for m in messages if m.topic == self.trends_topic]
                    story_msgs = [m for m in messages if m.topic != self.trends_topic]
                    decoded = list(trends.iter_decoded(trend_msgs)) + list(stories.iter_decoded(story_msgs))
                    # keep each partition's order; trends and stories are independent streams
                    decoded.sort(key=lambda mr: (mr[0].topic != self.trends_topic, mr[0].partition, mr[0].offset))
                    records = [r for _, r in decoded]
                offsets = next_offsets(messages)
                # A full disk: retry this batch's transaction in place; offsets are committed after it.
                changes = self.engine.process(records, offsets, lambda fn: self._persister.write(fn, stop))
                if self.metrics and dlq.count:
                    self.metrics.dead_letters.inc(dlq.count)
                    dlq.count = 0
                if offsets:
                    consumer.commit(offsets)
                if self.metrics:
                    for r in records:
                        self.metrics.records.labels(r.KIND).inc()
                    fired: set[str] = set()
                    for e in changes.outbox:
                        self.metrics.notifications.labels(e.receiver, e.reason).inc()
                        if e.reason == "firing":
                            fired.update(e.fingerprints)
                    self._observe_latency(fired)
                    if messages:
                        self.metrics.batch_seconds.observe(time.perf_counter() - started)
                    states = {"pending": 0, "firing": 0, "resolved": 0}
                    for a in self.engine.alerts():
                        states[a.state] = states.get(a.state, 0) + 1
                    for s, n in states.items():
                        self.metrics.active.labels(s).set(n)
                if changes.outbox and self.wake is not None:
                    self.wake.set()
        finally:
            self._ready = False
            consumer.close()
            try:
                producer.flush(timeout=10)
            finally:
                producer.close()

    def _observe_latency(self, fingerprints: set[str]) -> None:
        """Publish → alert: from the newest headline behind each alert that fired to now."""
        now = time.time()
        for fp in fingerprints:
            inst = self.engine.get(fp)
            if inst is not None and inst.state == "firing" and inst.evidence:
                newest = max(e.published_at for e in inst.evidence).timestamp()
                self.metrics.publish_to_alert_seconds.observe(max(0.0, now - newest))  # type: ignore[union-attr]


class DeliveryStage:
    """Drains the outbox: woken by the evaluator, otherwise polls every ``poll_interval_s``."""

    name = "alerts-deliver"

    def __init__(
        self,
        deliverer: OutboxDeliverer,
        wake: threading.Event,
        poll_interval_s: float = 1.0,
        keepalive: AlertmanagerKeepalive | None = None,
    ) -> None:
        self.deliverer = deliverer
        self.wake = wake
        self.poll_interval_s = poll_interval_s
        self.keepalive = keepalive
        self._ready = False
        errors = deliverer.metrics.state_write_errors.inc if deliverer.metrics else None
        self._persister = Persister(self.name, on_error=errors)

    def ready(self) -> tuple[bool, str]:
        if not self._ready:
            return False, "starting"
        if self._persister.blocked:
            return False, self._persister.blocked
        counts = self.deliverer.store.outbox_counts()
        return True, f"outbox pending={counts['pending']} dead={counts['dead']}"

    def run(self, stop: threading.Event) -> None:
        self._ready = True
        try:
            while not stop.is_set():
                self.wake.clear()
                try:
                    if self.keepalive:
                        self.keepalive.tick()
                    # A full disk: an outcome that cannot be recorded is retried in place, so a
                    # delivered notification is not sent again.
                    self.deliverer.deliver_due(lambda fn: self._persister.write(fn, stop))
                except Exception:  # keep delivering; the state is in SQLite
                    log.exception("outbox pass failed")
                due = self.deliverer.seconds_until_due()
                wait = self.poll_interval_s if due is None else min(self.poll_interval_s, due)
                if wait > 0:
                    self.wake.wait(wait)
        finally:
            self._ready = False

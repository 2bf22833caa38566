"""The classify worker: ``news.raw`` -> micro-batches -> classifier -> ``news.scored``.

One loop, one thread, deliberately synchronous so the delivery guarantee is easy to see:

1. poll ``news.raw`` (a consumer-group member; several workers share the partitions);
   undecodable records go to the DLQ at once;
2. the buffer is a ``models.batching.AdaptiveBatcher``: when the buffered stories fill the
   engine's token budget (or row cap), when more than one batch is waiting, when the oldest has
   waited ``classifier.max_delay_ms``, or when waiting longer would push the oldest past
   ``classifier.latency_target_ms`` given the model time measured so far, take one micro-batch
   off the front of the buffer (so batches stay small while the stream is light and grow with
   the backlog);
3. score it (a batch that makes the engine raise is bisected: the poison story goes to the DLQ,
   its neighbours are scored), produce every result (to the ``news.scored`` partition of its
   raw partition: the topics are co-partitioned), wait until the broker acknowledges them all,
   then commit the batch's offsets. At-least-once: a crash anywhere before the commit redelivers
   the batch, and downstream is idempotent by story id.

Rebalances: callbacks only run inside ``poll``, and a batch is scored, acknowledged and committed
before the next ``poll``, so there is never scored-but-uncommitted work when partitions are
revoked. The revoked partitions' *buffered* (unscored, uncommitted) stories are dropped: Kafka
redelivers them to the new owner from the committed offset. Stop works the same way.

Back-pressure: stories read but not yet committed are bounded by ``classify.max_in_flight``;
above it the worker pauses fetching (it keeps polling so it stays in the group) and resumes once
the engine has worked the buffer down to half.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from models import AdaptiveBatcher
from monitor.core.bus.base import (
    Bus,
    BusError,
    Consumer,
    ConsumerOptions,
    Message,
    Producer,
    TopicPartition,
    co_partition,
)
from monitor.core.bus.codec import DeadLetterSink, RecordReader, next_offsets, send_record
from monitor.core.bus.lag import LagReporter
from monitor.core.records import NewsItem, ScoredItem
from monitor.stages.recent import ItemStore
from monitor.stages.scoring import ScoringEngine, score_isolating_poison
from monitor.stages.settings import StageConfig
from monitor.stages.shadow import ShadowScorer

log = structlog.get_logger(__name__)

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ClassifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.scored = Counter(
            "finsent_classify_scored", "Stories scored and produced to news.scored", registry=registry
        )
        self.dead_letters = Counter(
            "finsent_classify_dead_letters", "Stories sent to the DLQ", ["reason"], registry=registry
        )
        self.batch_size = Histogram(
            "finsent_classify_batch_size", "Stories per micro-batch", buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.batch_seconds = Histogram(
            "finsent_classify_batch_seconds", "Model time per micro-batch", buckets=LATENCY_BUCKETS, registry=registry
        )
        self.commit_seconds = Histogram(
            "finsent_classify_cycle_seconds",
            "Score + produce + acknowledge + commit per micro-batch",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge("finsent_classify_lag", "Consumer lag on news.raw", ["topic", "partition"], registry=registry)
        self.in_flight = Gauge("finsent_classify_in_flight", "Stories read but not yet committed", registry=registry)
        self.paused = Gauge("finsent_classify_paused", "1 while fetching is paused by back-pressure", registry=registry)
        self.backend = Gauge(
            "finsent_classifier_backend_info",
            "1 for the backend/precision serving the model (ONNX Runtime or torch)",
            ["backend", "precision", "version"],
            registry=registry,
        )
        self.onnx_fallback = Gauge(
            "finsent_classifier_onnx_fallback",
            "1 while torch serves because the version's ONNX files are missing, failed "
            "their accuracy check or do not verify",
            registry=registry,
        )
        self.redelivered = Counter(
            "finsent_classify_rebalance_dropped",
            "Buffered stories released on rebalance (redelivered to the new owner)",
            registry=registry,
        )
        self.predictions = Counter(
            "finsent_classify_predictions",
            "Predicted labels (the prediction mix), per task (sentiment, topic)",
            ["task", "label"],
            registry=registry,
        )

    def observe_predictions(self, scored: Iterable[ScoredItem]) -> None:
        sentiment: Tally[str] = Tally()
        topic: Tally[str] = Tally()
        for s in scored:
            sentiment[s.sentiment] += 1
            topic[s.topic] += 1
        for label, n in sentiment.items():
            self.predictions.labels("sentiment", label).inc(n)
        for label, n in topic.items():
            self.predictions.labels("topic", label).inc(n)


@dataclass
class _Buffered:
    msg: Message
    item: NewsItem | None  # None: already dead-lettered, only its offset still has to be committed


class ClassifyStage:
    """A classify worker; ``run(stop)`` is its whole life (the daemon runs it in a thread)."""

    def __init__(
        self,
        settings: StageConfig,
        bus: Bus,
        engine: ScoringEngine,
        registry: CollectorRegistry,
        items: ItemStore | None = None,
        name: str = "classify",
        clock: Callable[[], float] = time.monotonic,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.bus = bus
        self.engine = engine
        self.items = items
        self.shadow = shadow
        self.metrics = ClassifyMetrics(registry)
        self._clock = clock
        self._cfg = settings.classify
        self._buffer: AdaptiveBatcher[_Buffered] = AdaptiveBatcher.from_settings(settings.classifier)
        self._paused = False
        self._running = False
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._dlq: DeadLetterSink | None = None
        self._lag = LagReporter(self.metrics.lag, settings.classify.lag_interval)
        self._next_reload = 0.0
        self._scored_partitions: int | None = None
        self.batches = 0

    # -- Stage ------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        if not self._running:
            return False, "not consuming yet"
        return True, f"model {self.engine.version}; {len(self._assignment())} partitions"

    def run(self, stop: threading.Event) -> None:
        topics = self.settings.topics
        self._producer = self.bus.producer()
        self._dlq = DeadLetterSink(self._producer, topics.dlq, stage=self.name)
        reader = RecordReader(NewsItem, self._dlq)
        self._consumer = self.bus.consumer(
            [topics.raw],
            ConsumerOptions(
                group_id=self._cfg.group_id,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                client_id=f"{self.settings.kafka.client_id}-{self.name}",
            ),
        )
        try:
            self._scored_partitions = self.bus.partitions_for(topics.scored)
        except BusError as err:  # not created yet: partition by key, and say so
            self._scored_partitions = None
            log.warning("news.scored partitions unknown; partitioning by key", error=str(err))
        self._running = True
        self._report_backend()
        log.info("classify started", group=self._cfg.group_id, topic=topics.raw, model=self.engine.version)
        try:
            while not stop.is_set():
                self._step(reader)
        finally:
            self._running = False
            dropped = self._buffer.clear()
            try:
                self._consumer.close()
            finally:
                self._producer.flush(self._cfg.produce_timeout)
                self._producer.close()
            if self.shadow is not None:
                self.shadow.flush()
            log.info("classify stopped", batches=self.batches, released_uncommitted=dropped)

    def _scored_partition(self, raw_partition: int) -> int | None:
        """Co-partitioned: what raw partition p held goes to scored partition p, so the aggregator
        knows which classify backlog feeds which of its inputs (see SourceTracker)."""
        n = self._scored_partitions
        return co_partition(raw_partition, n) if n else None

    # -- the loop ---------------------------------------------------------------------------
    def _step(self, reader: RecordReader[NewsItem]) -> None:
        now = self._clock()
        self._housekeeping(now)
        self._apply_backpressure()
        if self._batch_due(now):
            self._process(self._take_batch())
            return
        room = self._cfg.max_in_flight - len(self._buffer)
        timeout = self._buffer.wait_s(now, idle=0.5)
        assert self._consumer is not None
        messages = self._consumer.poll(timeout, max_records=max(1, min(self._cfg.poll_max_records, room)))
        if not messages:
            return
        good, rejected = reader.decode_batch(messages)
        for d in rejected:
            d.get(timeout=self._cfg.produce_timeout)
        self.metrics.dead_letters.labels("undecodable").inc(len(rejected))
        decoded = {(m.partition, m.offset): item for m, item in good}
        texts = [item.text for _, item in good]
        tokens = dict(zip(decoded, self.engine.count_tokens(texts))) if texts else {}
        arrived = self._clock()
        for m in messages:
            k = (m.partition, m.offset)
            item = decoded.get(k)
            # a dead-lettered story costs the model nothing (0): only its offset waits for a commit
            self._buffer.add(_Buffered(m, item), max(1, tokens.get(k, 1)) if item is not None else 0, arrived)
        self.metrics.in_flight.set(len(self._buffer))

    def _batch_due(self, now: float) -> bool:
        # cannot fetch more: no point waiting
        return self._buffer.due(now) or len(self._buffer) >= self._cfg.max_in_flight

    def _take_batch(self) -> list[_Buffered]:
        return self._buffer.take()

    def _process(self, batch: list[_Buffered]) -> None:
        assert self._producer is not None and self._dlq is not None and self._consumer is not None
        start = self._clock()
        live = [e for e in batch if e.item is not None]
        deliveries = []
        if live:
            t0 = self._clock()
            outcome = score_isolating_poison(self.engine.predict, [e.item for e in live])  # type: ignore[misc]
            seconds = self._clock() - t0
            self.metrics.batch_seconds.observe(seconds)
            self._buffer.observe(*self._buffer.last_taken, seconds)
            self.metrics.batch_size.observe(len(live))
            topic = self.settings.topics.scored
            for idx, scored in outcome.scored:
                deliveries.append(
                    send_record(
                        self._producer,
                        topic,
                        scored,
                        key=scored.item.primary_key,
                        partition=self._scored_partition(live[idx].msg.partition),
                    )
                )
            for idx, reason in outcome.rejected:
                deliveries.append(self._dlq.reject_message(live[idx].msg, reason))
            for d in deliveries:
                d.get(timeout=self._cfg.produce_timeout)
            self.metrics.scored.inc(len(outcome.scored))
            self.metrics.observe_predictions(scored for _, scored in outcome.scored)
            if outcome.rejected:
                self.metrics.dead_letters.labels("classifier").inc(len(outcome.rejected))
                log.warning(
                    "poison stories isolated",
                    count=len(outcome.rejected),
                    batch=len(live),
                    engine_calls=outcome.engine_calls,
                )
            if self.items is not None:
                for _, scored in outcome.scored:
                    self.items.put(scored)
        self._commit(next_offsets([e.msg for e in batch]))
        self.batches += 1
        self.metrics.commit_seconds.observe(self._clock() - start)
        self.metrics.in_flight.set(len(self._buffer))
        if self.shadow is not None and live:  # after the commit: the served results never wait for it
            self.shadow.observe([s.item.text for _, s in outcome.scored], [s.sentiment for _, s in outcome.scored])

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        owned = self._assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in owned}
        try:
            self._consumer.commit(mine)
        except BusError as err:
            # A rebalance raced the commit: the new owner re-reads from the last commit (duplicates
            # downstream, which is idempotent), nothing is lost.
            log.warning("commit failed; batch will be redelivered", error=str(err))

    def _assignment(self) -> set[TopicPartition]:
        return self._consumer.assignment() if self._consumer is not None else set()

    # -- back-pressure, lag, reload ---------------------------------------------------------
    def _apply_backpressure(self) -> None:
        assert self._consumer is not None
        size = len(self._buffer)
        if not self._paused and size >= self._cfg.max_in_flight:
            self._consumer.pause(self._assignment())
            self._paused = True
            self.metrics.paused.set(1)
            log.info("fetching paused: engine behind", in_flight=size)
        elif self._paused and size <= self._cfg.max_in_flight // 2:
            self._consumer.resume(self._assignment())
            self._paused = False
            self.metrics.paused.set(0)
            log.info("fetching resumed", in_flight=size)

    def _housekeeping(self, now: float) -> None:
        assert self._consumer is not None
        self._lag.maybe_report(self._consumer, now)
        if now >= self._next_reload:
            self._next_reload = now + self._cfg.reload_interval
            try:
                if self.engine.reload_if_changed():
                    log.info("model reloaded", version=self.engine.version)
                    self._report_backend()
            except Exception:
                log.exception("model reload failed; keeping the current model")
            if self.shadow is not None:
                self.shadow.refresh()

    def _report_backend(self) -> None:
        backend = getattr(self.engine, "backend", None)  # test engines may not say
        if backend is None:
            return
        self.metrics.backend.clear()
        self.metrics.backend.labels(backend, getattr(self.engine, "precision", ""), self.engine.version).set(1)
        self.metrics.onnx_fallback.set(1 if getattr(self.engine, "fallback_reason", None) else 0)

    # -- rebalance callbacks (run inside poll) ----------------------------------------------
    def _on_revoke(self, revoked: set[TopicPartition]) -> None:
        dropped = self._buffer.retain(lambda e: e.msg.tp not in revoked)
        self.metrics.redelivered.inc(dropped)
        self._lag.forget(revoked)
        log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked), released=dropped)

    def _on_assign(self, assigned: set[TopicPartition]) -> None:
        if self._paused and self._consumer is not None:
            self._consumer.pause(assigned)
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))

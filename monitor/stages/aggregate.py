"""The aggregator: ``news.scored`` -> per-key event-time windows -> ``news.trends``.

Two stages, so several aggregator processes can split the work and still see every story of
a key (see docs/STREAMING.md, "Partitioning"):

* :class:`RekeyStage` (stateless) reads ``news.scored`` and writes one record per trend key of
  each story (``all``, ``topic:*``, ``source:*``, ``ticker:*``) to the repartition topic, keyed
  by the trend key and stamped with its upstream partition and that partition's progress; after
  each batch (and whenever an upstream partition turns idle) a :class:`WatermarkMarker` goes to
  every partition of the repartition topic. Commit after the broker acknowledged. At-least-once.
* :class:`TrendStage` (stateful) reads the repartition topic; every key lives in exactly one of
  its partitions, so the window state is partition-aligned. It emits the changed windows' points
  every ``flush_interval`` and then, in one SQLite transaction, checkpoints the state with the
  offsets it reflects; on assignment it restores the partition and seeks to that offset. Its
  event time is aligned: the minimum of the active upstream partitions' progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.core.bus.base import (
    Backlog,
    Bus,
    BusError,
    Consumer,
    ConsumerOptions,
    Delivery,
    Message,
    Producer,
    TopicPartition,
)
from monitor.core.bus.codec import DeadLetterSink, RecordReader, next_offsets, send_record
from monitor.core.bus.lag import LagReporter
from monitor.core.persist import Persister, StateNotPersisted
from monitor.core.records import ScoredItem, TrendPoint, WatermarkMarker, decode
from monitor.stages.changelog import changelog_topic, rows_of
from monitor.stages.changelog import restore as restore_changelog
from monitor.stages.checkpoint import CheckpointStore, PartitionDelta, checkpoint_delta
from monitor.stages.recent import ItemStore, TrendStore
from monitor.stages.settings import StageConfig
from monitor.stages.windows import LATE_REASONS, PartitionWindows, trend_keys, ts_of

SOURCE_HEADER = "src"
PROGRESS_HEADER = "progress"
"""Headers of a re-keyed record: its ``news.scored`` partition, and that partition's progress
(largest event time read from it, this story included) as a decimal Unix time."""

log = structlog.get_logger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def repartition_topic(settings: StageConfig) -> str:
    return settings.aggregator.repartition_topic or f"{settings.topics.scored}.bykey"


class AggregateMetrics:
    def __init__(self, registry: CollectorRegistry, tickers: Iterable[str] = ()) -> None:
        self._exported = frozenset(f"ticker:{t}" for t in tickers)
        self.rekeyed = Counter(
            "finsent_aggregate_rekeyed", "Scored stories fanned out to trend keys", registry=registry
        )
        self.stories = Counter(
            "finsent_aggregate_stories", "(story, key) pairs by outcome", ["outcome"], registry=registry
        )
        self.late_windows = Counter(
            "finsent_aggregate_late_windows",
            "Window updates dropped because the window had closed (past grace)",
            registry=registry,
        )
        self.revisions = Counter(
            "finsent_aggregate_revisions", "Window updates by late stories within grace", registry=registry
        )
        self.points = Counter("finsent_aggregate_points", "TrendPoints emitted to news.trends", registry=registry)
        self.dead_letters = Counter(
            "finsent_aggregate_dead_letters", "Undecodable records sent to the DLQ", ["stage"], registry=registry
        )
        self.flush_seconds = Histogram(
            "finsent_aggregate_flush_seconds",
            "Emit + acknowledge + checkpoint",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge("finsent_aggregate_lag", "Consumer lag", ["topic", "partition"], registry=registry)
        self.watermark = Gauge(
            "finsent_aggregate_watermark_seconds",
            "Aligned event-time watermark per repartition partition (Unix seconds)",
            ["partition"],
            registry=registry,
        )
        self.late_dropped = Counter(
            "finsent_aggregate_late_dropped",
            "(story, key) pairs dropped because every window they fit had closed, by "
            "reason: late_in_source (behind its own upstream partition by more than "
            "grace), source_idle (the watermark moved on while its partition was idle)",
            ["reason"],
            registry=registry,
        )
        for reason in LATE_REASONS:
            self.late_dropped.labels(reason)
        self.skew = Gauge(
            "finsent_aggregate_source_skew_seconds",
            "Event-time spread between the most and least advanced active upstream partitions, "
            "as seen by each repartition partition",
            ["partition"],
            registry=registry,
        )
        self.idle_sources = Gauge(
            "finsent_aggregate_idle_sources",
            "Upstream partitions currently idle (left out of the watermark)",
            ["partition"],
            registry=registry,
        )
        self.restores = Counter(
            "finsent_aggregate_restores",
            "Partitions taken over, by where their state came "
            "from: checkpoint (local file), changelog (topic), log (rebuilt from the start)",
            ["source"],
            registry=registry,
        )
        self.upstream_progress = Gauge(
            "finsent_aggregate_upstream_progress_seconds",
            "Largest event time the re-key stage read per upstream partition",
            ["partition"],
            registry=registry,
        )
        self.keys = Gauge("finsent_aggregate_keys", "Trend keys held in memory", registry=registry)
        self.state_write_errors = Counter(
            "finsent_aggregate_state_write_errors",
            "Checkpoint writes that failed on a full or failing disk (retried in place; offsets held)",
            registry=registry,
        )
        self.trend_score = Gauge(
            "finsent_trend_mean_score",
            "Mean sentiment score of the latest window of 'all', each topic and each of "
            "aggregator.metric_tickers (other tickers and sources are left to /trends: unbounded)",
            ["key", "window"],
            registry=registry,
        )
        self.trend_count = Gauge(
            "finsent_trend_count",
            "Stories in the latest window of 'all', each topic and each of aggregator.metric_tickers",
            ["key", "window"],
            registry=registry,
        )

        self.key_late_dropped = Counter(
            "finsent_trend_late_dropped",
            "Stories dropped as late per trend key, for 'all', each topic and each of aggregator.metric_tickers "
            "(every other key: the aggregator's debug log)",
            ["key"],
            registry=registry,
        )

        self._latest_end: dict[tuple[str, str], datetime] = {}

    def exported(self, key: str) -> bool:
        """Keys with series of their own: bounded (every ticker or source would not be)."""
        return key == "all" or key.startswith("topic:") or key in self._exported

    def observe_points(self, points: list[TrendPoint]) -> None:
        self.points.inc(len(points))
        for p in points:
            if not self.exported(p.key):
                continue
            if p.window_end >= self._latest_end.get((p.key, p.window), p.window_end):
                self._latest_end[(p.key, p.window)] = p.window_end
                self.trend_score.labels(p.key, p.window).set(p.mean_score)
                self.trend_count.labels(p.key, p.window).set(p.count)


class SourceTracker:
    """The re-key stage's view of the upstream partitions it owns: progress and idleness.

    Progress is the largest event time read from a partition. A ``news.scored`` partition is
    *idle* when it is read to its end, nothing came from it for ``idle_timeout`` (wall time), and
    the classify group has no backlog on the ``news.raw`` partitions that feed it (classify keeps
    the two topics co-partitioned, :func:`~monitor.core.bus.base.co_partition`), so nothing more is on
    its way. Until then it holds the watermark back, however long a backfill or a slow classify
    worker takes: a catch-up reads one raw partition's backlog after another, and the partitions
    it has not reached yet must not be left behind. One bound: when the classify group has made
    no progress at all for ``SILENT_FACTOR x idle_timeout`` (stopped, or stuck on the partition
    that feeds this one), a partition read to its end and silent that long is idle whatever the
    backlog, so one stuck upstream cannot stall every other key's alerts.
    """

    SILENT_FACTOR = 10

    def __init__(self, idle_timeout: float, started: float = 0.0, partitions: int = 0) -> None:
        self.idle_timeout = idle_timeout
        self.started = started
        self.partitions = partitions
        """How many partitions the upstream (scored) topic has."""
        self.progress: dict[int, float | None] = {}
        self.idle: set[int] = set()
        self.behind: set[int] = set()
        """Partitions this instance does not own with records its group has not consumed yet."""
        self._last_read: dict[int, float] = {}
        self._upstream_committed: int | None = None
        self._upstream_moved = started

    def assign(self, partitions: set[int]) -> None:
        for p in partitions:
            self.progress.setdefault(p, None)
        self.behind -= partitions  # owned now: described by progress and idle

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self.progress.pop(p, None)
            self.idle.discard(p)
            self._last_read.pop(p, None)

    def read(self, partition: int, ts: float, now: float) -> float:
        prev = self.progress.get(partition)
        progress = ts if prev is None or ts > prev else prev
        self.progress[partition] = progress
        self._last_read[partition] = now
        self.idle.discard(partition)
        return progress

    def refresh_idle(self, lag: dict[int, int] | None, upstream: Backlog | None, now: float) -> bool:
        """Recompute the idle set from this stage's lag and the classify group's raw backlog
        (``None``: unknown, so something may be on its way)."""
        before = set(self.idle)
        if upstream is not None and (
            upstream.committed != self._upstream_committed or not any(upstream.pending.values())
        ):
            self._upstream_committed = upstream.committed
            self._upstream_moved = now
        stalled = now - self._upstream_moved >= self.SILENT_FACTOR * self.idle_timeout
        idle = set()
        if lag is not None:
            for p in self.progress:
                if lag.get(p, 1) != 0:
                    continue
                last = self._last_read.get(p)
                silent = now - (last if last is not None else self.started)
                backlog = 1 if upstream is None else upstream.feeding(p, self.partitions)
                if ((last is None or silent >= self.idle_timeout) and backlog == 0) or (
                    stalled and silent >= self.SILENT_FACTOR * self.idle_timeout
                ):
                    idle.add(p)
        self.idle = idle
        return idle != before

    def refresh_behind(self, own_group: Backlog | None) -> bool:
        """Recompute :attr:`behind` from the re-key group's own backlog (``None``: unknown, keep
        the last answer). A dead instance's last marker may have called its partitions idle;
        until the group rebalances them to a live one, their new records would otherwise be late
        by the time they are read. Owned partitions are this instance's to describe."""
        if own_group is None:
            return False
        behind = {p for p, n in own_group.pending.items() if n > 0 and p not in self.progress}
        changed, self.behind = behind != self.behind, behind
        return changed

    def marker(self, topic: str) -> WatermarkMarker:
        return WatermarkMarker(
            topic=topic,
            progress=dict(sorted(self.progress.items())),
            idle=tuple(sorted(self.idle)),
            behind=tuple(sorted(self.behind)),
        )


class RekeyStage:
    """``news.scored`` -> repartition topic, one record per trend key of each story, plus the
    upstream partitions' progress (headers on each record, markers to every partition)."""

    def __init__(
        self,
        settings: StageConfig,
        bus: Bus,
        metrics: AggregateMetrics,
        items: ItemStore | None = None,
        name: str = "aggregate-rekey",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self.bus = bus
        self.metrics = metrics
        self.items = items
        self.topic = repartition_topic(settings)
        self._clock = clock
        self.tracker = SourceTracker(settings.aggregator.idle_timeout, started=clock())
        self._lag = LagReporter(metrics.lag, settings.aggregator.lag_interval)
        self._announce = True
        self._running = False

    def ready(self) -> tuple[bool, str]:
        return (self._running, f"{self.settings.topics.scored} -> {self.topic}" if self._running else "starting")

    def _on_assign(self, assigned: set[TopicPartition]) -> None:
        self.tracker.assign({tp.partition for tp in assigned if tp.topic == self.settings.topics.scored})
        self._announce = True

    def _on_revoke(self, revoked: set[TopicPartition]) -> None:
        self.tracker.revoke({tp.partition for tp in revoked if tp.topic == self.settings.topics.scored})
        self._lag.forget(revoked)

    def run(self, stop: threading.Event) -> None:
        cfg = self.settings.aggregator
        scored_topic = self.settings.topics.scored
        producer = self.bus.producer()
        reader = RecordReader(ScoredItem, DeadLetterSink(producer, self.settings.topics.dlq, stage=self.name))
        consumer = self.bus.consumer(
            [scored_topic],
            ConsumerOptions(
                group_id=f"{cfg.group_id}.rekey",
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                client_id=f"{self.settings.kafka.client_id}-{self.name}",
            ),
        )
        upstream = self.bus.backlog_probe(self.settings.classify.group_id, self.settings.topics.raw)
        own_group = self.bus.backlog_probe(f"{cfg.group_id}.rekey", scored_topic)
        out_partitions = range(self.bus.partitions_for(self.topic))
        self.tracker.partitions = self.bus.partitions_for(scored_topic)
        check_every = max(0.05, min(1.0, cfg.idle_timeout / 4))
        next_check = 0.0
        self._running = True
        try:
            while not stop.is_set():
                now = self._clock()
                self._lag.maybe_report(consumer, now)
                messages = consumer.poll(0.5, max_records=cfg.poll_max_records)
                now = self._clock()
                # Idleness first, announced *before* this batch's records: a partition leaving
                # idleness must hold the watermark back before its neighbours' records move it.
                announce = self._announce
                due = now >= next_check
                if due or (messages and self.tracker.idle):
                    next_check = now + check_every
                    announce |= self._refresh_idle(consumer, upstream, now, {m.partition for m in messages})
                if (messages or due) and len(self.tracker.progress) < self.tracker.partitions:
                    # Some upstream partitions are another instance's (or nobody's, mid-rebalance):
                    # before this batch moves event time, say which of them still hold records.
                    announce |= self.tracker.refresh_behind(own_group.backlog())
                deliveries: list[Delivery] = []
                if announce and self.tracker.progress:
                    deliveries += self._send_markers(producer, scored_topic, out_partitions)
                good, rejected = reader.decode_batch(messages) if messages else ([], [])
                deliveries += rejected
                self.metrics.dead_letters.labels(self.name).inc(len(rejected))
                for msg, scored in good:
                    progress = self.tracker.read(msg.partition, ts_of(scored.item.published_at), now)
                    headers = [
                        ("kind", ScoredItem.KIND.encode()),
                        (SOURCE_HEADER, str(msg.partition).encode()),
                        (PROGRESS_HEADER, repr(progress).encode()),
                    ]
                    for key in trend_keys(scored, cfg.ticker_relevance_floor):
                        deliveries.append(producer.send(self.topic, msg.value or b"", key=key, headers=headers))
                    if self.items is not None:
                        self.items.put(scored)
                if good:  # the progress this batch made, for partitions none of its keys went to
                    deliveries += self._send_markers(producer, scored_topic, out_partitions)
                for d in deliveries:
                    d.get(timeout=cfg.produce_timeout)
                self.metrics.rekeyed.inc(len(good))
                if not messages:
                    continue
                try:
                    consumer.commit({tp: o for tp, o in next_offsets(messages).items() if tp in consumer.assignment()})
                except BusError as err:
                    log.warning("commit failed; batch will be redelivered", error=str(err))
        finally:
            self._running = False
            upstream.close()
            own_group.close()
            consumer.close()
            producer.flush(cfg.produce_timeout)
            producer.close()

    def _send_markers(self, producer: Producer, scored_topic: str, out_partitions: range) -> list[Delivery]:
        marker = self.tracker.marker(scored_topic).encode()
        self._announce = False
        for p, value in self.tracker.progress.items():
            if value is not None:
                self.metrics.upstream_progress.labels(str(p)).set(value)
        return [
            producer.send(self.topic, marker, headers=[("kind", b"watermark")], partition=p) for p in out_partitions
        ]

    def _refresh_idle(self, consumer: Consumer, upstream, now: float, busy: set[int]) -> bool:
        try:
            lag = {tp.partition: n for tp, n in consumer.lag().items()}
        except Exception as err:
            log.debug("lag unavailable", error=str(err))
            lag = None
        if lag is not None:
            lag.update(dict.fromkeys(busy, 1))  # records in hand: not idle, whatever the lag says now
        changed = self.tracker.refresh_idle(lag, upstream.backlog() if lag is not None else None, now)
        if changed:
            log.info("upstream idleness changed", idle=sorted(self.tracker.idle))
        return changed


class TrendStage:
    """Windows per trend key over the repartition topic, checkpointed with their offsets."""

    def __init__(
        self,
        settings: StageConfig,
        bus: Bus,
        metrics: AggregateMetrics,
        trends: TrendStore,
        checkpoint_path: Path | None,
        name: str = "aggregate",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self.bus = bus
        self.metrics = metrics
        self.trends = trends
        self.topic = repartition_topic(settings)
        self.checkpoint_path = checkpoint_path
        self.changelog = (
            changelog_topic(self.topic) if checkpoint_path is not None and settings.aggregator.changelog else None
        )
        self._clock = clock
        self._cfg = settings.aggregator
        self._lag = LagReporter(metrics.lag, settings.aggregator.lag_interval)
        self._parts: dict[int, PartitionWindows] = {}
        self._offsets: dict[int, int] = {}
        self._saved: dict[int, int] = {}
        self._pending: list[Delivery] = []
        self._store: CheckpointStore | None = None
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._polled_once = False
        self._stop = threading.Event()
        self._persister = Persister(name, on_error=metrics.state_write_errors.inc)
        self._upstream_partitions = 1
        self.flushes = 0

    # -- Stage ------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        if self._persister.blocked:
            return False, self._persister.blocked
        if not self._polled_once:
            return False, "restoring state / joining the group"
        return True, f"{len(self._parts)} partitions restored"

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        # Opening writes (schema, WAL files): on a full disk wait here, not ready, until it can.
        try:
            self._store = self._persister.write(
                lambda: CheckpointStore(self.checkpoint_path, group=self._cfg.group_id), stop
            )
        except StateNotPersisted:
            log.warning("stopped before the checkpoint could be opened; nothing was read", stage=self.name)
            return
        self._upstream_partitions = self.bus.partitions_for(self.settings.topics.scored)
        self._producer = self.bus.producer()
        dlq = DeadLetterSink(self._producer, self.settings.topics.dlq, stage=self.name)
        reader = RecordReader(ScoredItem, dlq)
        self._consumer = self.bus.consumer(
            [self.topic],
            ConsumerOptions(
                group_id=self._cfg.group_id,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                client_id=f"{self.settings.kafka.client_id}-{self.name}",
            ),
        )
        next_flush = self._clock() + self._cfg.flush_interval
        log.info(
            "aggregate started",
            topic=self.topic,
            group=self._cfg.group_id,
            checkpoint=str(self.checkpoint_path or ":memory:"),
        )
        try:
            while not stop.is_set():
                now = self._clock()
                self._lag.maybe_report(self._consumer, now)
                messages = self._consumer.poll(
                    max(0.0, min(0.5, next_flush - now)), max_records=self._cfg.poll_max_records
                )
                self._polled_once = True
                if messages:
                    # The rekey stage wrote the same bytes once per trend key: decode each once.
                    memo: dict[bytes, ScoredItem] = {}
                    for msg in messages:
                        if msg.header("kind") == b"watermark":
                            self._marker(msg)
                            continue
                        scored = memo.get(msg.value) if msg.value else None
                        if scored is None:
                            good, rejected = reader.decode_batch([msg])
                            if rejected:
                                self._pending.extend(rejected)
                                self.metrics.dead_letters.labels(self.name).inc()
                                continue
                            scored = memo[msg.value or b""] = good[0][1]
                        self._add(
                            msg.partition, (msg.key or b"all").decode("utf-8", "replace"), scored, *_source_of(msg)
                        )
                    for tp, o in next_offsets(messages).items():
                        if tp.partition in self._parts:
                            self._offsets[tp.partition] = o
                if self._clock() >= next_flush:
                    self.flush()
                    next_flush = self._clock() + self._cfg.flush_interval
            self.flush()
        finally:
            try:
                self._consumer.close()
            finally:
                self._producer.flush(self._cfg.produce_timeout)
                self._producer.close()
                self._store.close()
            log.info("aggregate stopped", flushes=self.flushes)

    # -- processing -------------------------------------------------------------------------
    def _marker(self, msg: Message) -> None:
        part = self._parts.get(msg.partition)
        if part is None:
            return
        try:
            marker = decode(WatermarkMarker, msg.value)
        except ValueError as err:  # RecordDecodeError: a foreign record; skip it, it carries no story
            log.warning(
                "undecodable watermark marker skipped", partition=msg.partition, offset=msg.offset, error=str(err)
            )
            return
        if marker.topic != self.settings.topics.scored:
            return
        # First the partitions with records on their way (seen by an instance that does not own
        # them): active again, whatever their owner (perhaps dead) said last, so that this
        # marker's progress cannot pass them.
        for source in marker.behind:
            part.observe_source(source, None)
        idle = set(marker.idle)
        for source, progress in marker.progress.items():
            part.observe_source(source, progress, source in idle)

    def _add(
        self, partition: int, key: str, scored: ScoredItem, source: int | None = None, progress: float | None = None
    ) -> None:
        part = self._parts.get(partition)
        if part is None:  # not ours any more (revoked inside this poll batch): redelivered elsewhere
            return
        result = part.add(key, scored, source, progress)
        if result.duplicate:
            self.metrics.stories.labels("duplicate").inc()
        elif result.counted:
            self.metrics.stories.labels("counted").inc()
        else:
            self.metrics.stories.labels("late_dropped").inc()
            self.metrics.late_dropped.labels(result.late_reason or "late").inc()
            if self.metrics.exported(key):
                self.metrics.key_late_dropped.labels(key).inc()
            log.debug(
                "late story dropped",
                key=key,
                story=scored.id,
                reason=result.late_reason,
                published_at=scored.item.published_at.isoformat(),
                source=source,
            )
        if result.late_windows:
            self.metrics.late_windows.inc(result.late_windows)
        if result.revised_windows:
            self.metrics.revisions.inc(result.revised_windows)

    def flush(self, partitions: set[int] | None = None, commit: bool = True) -> None:
        """Emit changed windows, wait for the acks, then checkpoint state + offsets together.

        ``commit=False`` inside a rebalance callback: kafka-python runs those on its IO thread,
        where a blocking commit raises (the Kafka commit is informational anyway).
        """
        assert self._producer is not None and self._store is not None
        t0 = self._clock()
        chosen = {p: w for p, w in self._parts.items() if partitions is None or p in partitions}
        points = []
        for part in chosen.values():
            part.evict()
            points.extend(part.take_dirty())
        deliveries = [send_record(self._producer, self.settings.topics.trends, p, key=p.key) for p in points]
        for d in [*deliveries, *self._pending]:
            d.get(timeout=self._cfg.produce_timeout)
        self._pending.clear()
        for p in points:
            self.trends.put(p)
        deltas = {}
        for pid, part in chosen.items():
            changed = part.take_delta()
            offset = self._offsets.get(pid)
            if offset is not None and (changed or self._saved.get(pid) != offset):
                deltas[pid] = PartitionDelta(offset, part.watermark, changed, dict(part.sources))
        if self.changelog is not None and deltas:
            logged = [
                self._producer.send(self.changelog, value, key=key, partition=pid)
                for pid, d in deltas.items()
                for key, value in rows_of(d)
            ]
            for d in logged:
                d.get(timeout=self._cfg.produce_timeout)
        store = self._store
        # A full disk: wait here, neither polling nor committing, until the checkpoint is written.
        self._persister.write(lambda: store.save(self.topic, deltas), self._stop)
        self._saved.update({p: d.next_offset for p, d in deltas.items()})
        if commit and self._consumer is not None and deltas:
            offsets = {TopicPartition(self.topic, p): d.next_offset for p, d in deltas.items()}
            owned = self._consumer.assignment()
            try:
                self._consumer.commit({tp: o for tp, o in offsets.items() if tp in owned})
            except BusError as err:  # informational only: the checkpoint is the source of truth
                log.debug("kafka commit failed", error=str(err))
        self.metrics.observe_points(points)
        self.metrics.keys.set(sum(len(p.keys) for p in self._parts.values()))
        for pid, part in chosen.items():
            if part.watermark is not None:
                self.metrics.watermark.labels(str(pid)).set(part.watermark)
            skew = part.skew()
            if skew is not None:
                self.metrics.skew.labels(str(pid)).set(skew)
            self.metrics.idle_sources.labels(str(pid)).set(sum(s.idle for s in part.sources.values()))
        self.metrics.flush_seconds.observe(self._clock() - t0)
        self.flushes += 1

    # -- rebalance (inside poll) ------------------------------------------------------------
    def _on_revoke(self, revoked: set[TopicPartition]) -> None:
        self._lag.forget(revoked)
        mine = {tp.partition for tp in revoked if tp.topic == self.topic}
        self.flush(mine, commit=False)
        for p in mine:
            self._parts.pop(p, None)
            self._offsets.pop(p, None)
            self._saved.pop(p, None)
            for gauge in (self.metrics.watermark, self.metrics.skew, self.metrics.idle_sources):
                try:
                    gauge.remove(str(p))
                except KeyError:
                    pass
        log.info("partitions revoked", partitions=sorted(mine))

    def _on_assign(self, assigned: set[TopicPartition]) -> None:
        assert self._store is not None and self._consumer is not None
        for tp in sorted(assigned):
            if tp.topic != self.topic:
                continue
            cp = self._store.load(tp.topic, tp.partition)
            source = "checkpoint"
            if cp is None and self.changelog is not None:
                cp = restore_changelog(self.bus.read_partition(self.changelog, tp.partition))
                if cp is not None:
                    source = "changelog"
                    self._store.save(self.topic, {tp.partition: checkpoint_delta(cp)})  # the fast path again
            if cp is None:
                source = "log"
                # No checkpoint: rebuild from the start of the log (a committed Kafka offset
                # without the state it stands for is worthless).
                part = PartitionWindows(self._cfg, sources=self._upstream_partitions)
                offset = 0
            else:
                part = PartitionWindows.restore(
                    self._cfg,
                    cp.watermark,
                    cp.windows,
                    cp.anchors,
                    cp.first_ts,
                    cp.seen,
                    sources=self._upstream_partitions,
                    source_states=cp.sources,
                )
                offset = cp.next_offset
            self._parts[tp.partition] = part
            self._offsets[tp.partition] = offset
            self._saved[tp.partition] = offset if cp is not None else -1
            self._consumer.seek(tp, offset)
            for point in part.all_points():
                self.trends.put(point, notify=False)
            self.metrics.restores.labels(source).inc()
            log.info(
                "partition restored",
                partition=tp.partition,
                offset=offset,
                keys=len(part.keys),
                from_checkpoint=cp is not None,
                restored_from=source,
                watermark=part.watermark,
            )


def _source_of(msg: Message) -> tuple[int | None, float | None]:
    """The upstream partition and its progress from a re-keyed record's headers (absent: None)."""
    src, progress = msg.header(SOURCE_HEADER), msg.header(PROGRESS_HEADER)
    try:
        return (int(src) if src is not None else None, float(progress) if progress is not None else None)
    except ValueError:
        return None, None

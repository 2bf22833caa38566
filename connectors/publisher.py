"""The one way stories reach ``news.raw``: normalise, dedup, produce in chunks, remember after ack.

Per chunk: every draft is normalised (failures go to the DLQ with the reason), checked against the
dedup state (duplicates dropped, near-duplicates get a lower novelty), sent keyed by
``NewsItem.primary_key`` so per-ticker order holds, then the producer is flushed once and every
delivery checked. Only acknowledged stories are committed to the dedup state; the others are
rolled back so that the next poll (or the webhook caller's retry) sends them again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from connectors.ingest_state import IngestState, Reservation
from connectors.metrics import IngestMetrics
from connectors.normalise import Draft, Normaliser, Rejected
from monitor.core.bus.base import BusError, Delivery, Producer
from monitor.core.bus.codec import DeadLetterSink, send_record
from monitor.core.records import NewsItem, utcnow

log = structlog.get_logger(__name__)

STAGE = "ingest"


@dataclass
class PublishResult:
    read: int = 0
    produced: int = 0
    new: int = 0
    near_duplicates: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    ids: list[str] = field(default_factory=list)
    """Ids of the stories produced, in order."""
    errors: list[str] = field(default_factory=list)
    fetch_error: str | None = None
    """Why the source could not be read this poll (fetch, parse, config); feeds the circuit breaker."""

    def add(self, other: PublishResult) -> None:
        self.fetch_error = self.fetch_error or other.fetch_error
        for name in ("read", "produced", "new", "near_duplicates", "duplicates", "rejected", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ids.extend(other.ids)
        self.errors.extend(other.errors)


class Publisher:
    """Thread-safe: pollers, replays and the webhook share one publisher and one producer."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        dlq: DeadLetterSink,
        state: IngestState,
        normaliser: Normaliser,
        metrics: IngestMetrics,
        chunk_size: int = 500,
        ack_timeout_s: float = 30.0,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.dlq = dlq
        self.state = state
        self.normaliser = normaliser
        self.metrics = metrics
        self.chunk_size = chunk_size
        self.ack_timeout_s = ack_timeout_s
        self._dlq_lock = threading.Lock()

    def publish(self, source: str, drafts: Iterable[Draft], *, scope: str = "", live: bool = True) -> PublishResult:
        """Produce ``drafts``; returns once every sent story is acknowledged (or failed).

        ``source`` names the caller in logs; metrics are counted per ``Draft.source`` (a replayed
        file may hold several sources, sent in file order).

        Chunks are pipelined one deep: chunk *n* is settled (acks checked, dedup state committed)
        after chunk *n+1* was sent, so the CPU work of one overlaps the broker round trip of the
        other. ``scope`` separates near-duplicate clusters (replay loops); ``live`` records the
        publication-to-ingest delay (not meaningful for replays).
        """
        total = PublishResult()
        inflight: _Batch | None = None
        try:
            chunk: list[Draft] = []
            for draft in drafts:
                chunk.append(draft)
                if len(chunk) >= self.chunk_size:
                    batch = self._send_chunk(source, chunk, scope)
                    chunk = []
                    if inflight is not None:
                        done, inflight = inflight, None
                        total.add(self._settle(done, live))
                    inflight = batch
            if chunk:
                batch = self._send_chunk(source, chunk, scope)
                if inflight is not None:
                    done, inflight = inflight, None
                    total.add(self._settle(done, live))
                inflight = batch
            if inflight is not None:
                self._flush()
        finally:
            if inflight is not None:
                total.add(self._settle(inflight, live))
        return total

    def reject(self, source: str, payload: bytes, reason: str) -> None:
        """Send something unreadable (a bad file row, say) to the DLQ and wait for the ack."""
        self.metrics.rejected.labels(source).inc()
        with self._dlq_lock:
            delivery = self.dlq.reject_payload(payload, f"{source}: {reason}", key=source)
        delivery.get(timeout=self.ack_timeout_s)

    def _send_chunk(self, source: str, drafts: list[Draft], scope: str) -> _Batch:
        """Normalise, dedup and send one chunk without waiting for the acks."""
        batch = _Batch(source, PublishResult(read=len(drafts)))
        result, tally = batch.result, batch.tally
        fetched_at = utcnow()
        for name, n in Counter(d.source or source for d in drafts).items():
            self.metrics.fetched.labels(name).inc(n)
        ready: list[tuple[NewsItem, Reservation]] = []
        try:
            # Decide everything first (CPU only), then send in one tight loop so batches fill up.
            for draft in drafts:
                try:
                    item = self.normaliser.build(draft, fetched_at)
                except Rejected as err:
                    result.rejected += 1
                    name = draft.source or source
                    tally[(name, "rejected")] += 1
                    with self._dlq_lock:
                        where = f"{draft.where}: " if draft.where else ""
                        batch.dead.append(self.dlq.reject_payload(draft.payload(), f"{name}: {where}{err}", key=name))
                    continue
                verdict = self.state.reserve(item.id, item.title, scope)
                if verdict.reservation is None:
                    result.duplicates += 1
                    tally[(item.source, "duplicate")] += 1
                    continue
                if verdict.status == "near_duplicate":
                    item = item.model_copy(
                        update={
                            "novelty": verdict.novelty,
                            "meta": {**item.meta, "near_duplicate_of": verdict.duplicate_of or ""},
                        }
                    )
                ready.append((item, verdict.reservation))
            for n, (item, reservation) in enumerate(ready):
                try:
                    delivery = send_record(self.producer, self.topic, item, key=item.primary_key)
                except BusError as err:
                    unsent = [r for _, r in ready[n:]]
                    self.state.rollback(unsent)
                    result.failed += len(unsent)
                    for unsent_item, _ in ready[n:]:
                        tally[(unsent_item.source, "failed")] += 1
                    result.errors.append(str(err))
                    ready = ready[:n]
                    break
                batch.sent.append((item, reservation, delivery))
        except BaseException:
            self.state.rollback([r for _, r in ready[len(batch.sent) :]])
            self._settle(batch, live=False)
            raise
        return batch

    def _settle(self, batch: _Batch, live: bool) -> PublishResult:
        """Wait for every delivery of ``batch``; remember the acknowledged stories, forget the rest.

        A story counts as produced only once it is both acknowledged and remembered: when the
        state cannot be written (a full disk, say) the chunk counts as not delivered, so callers
        answer 503 / poll again / retry, and the resent stories are produced again (downstream
        stages are idempotent by story id)."""
        result, source, m, tally = batch.result, batch.source, self.metrics, batch.tally
        acked: list[tuple[NewsItem, Reservation]] = []
        failed: list[Reservation] = []
        try:
            for item, reservation, delivery in batch.sent:
                try:
                    delivery.get(timeout=self.ack_timeout_s)
                except Exception as err:
                    failed.append(reservation)
                    result.failed += 1
                    tally[(item.source, "failed")] += 1
                    result.errors.append(str(err))
                    continue
                acked.append((item, reservation))
        finally:
            try:
                self.state.commit([r for _, r in acked])
            except sqlite3.Error as err:
                self.state.rollback([r for _, r in acked])
                log.error(
                    "ingest state not persisted; the stories will be sent again",
                    source=source,
                    stories=len(acked),
                    error=str(err),
                )
                for item, _ in acked:
                    tally[(item.source, "failed")] += 1
                result.failed += len(acked)
                result.errors.append(f"ingest state not persisted: {err}")
                acked = []
            finally:
                self.state.rollback(failed)
        for item, reservation in acked:
            result.produced += 1
            result.ids.append(item.id)
            if reservation.created:
                result.new += 1
                tally[(item.source, "new")] += 1
            else:
                result.near_duplicates += 1
                tally[(item.source, "near_duplicate")] += 1
        for d in batch.dead:
            d.get(timeout=self.ack_timeout_s)
        counters = {"rejected": m.rejected, "duplicate": m.duplicate, "new": m.new, "near_duplicate": m.near_duplicate}
        for (name, kind), n in tally.items():
            if kind == "failed":
                m.errors.labels(name, "publish").inc(n)
            else:
                counters[kind].labels(name).inc(n)
        if result.failed:
            log.error(
                "stories not acknowledged; they will be retried",
                source=source,
                failed=result.failed,
                error=result.errors[0] if result.errors else "",
            )
        if live:
            for item, _, _ in batch.sent:
                if "published_at" not in item.meta:  # a missing or clamped date says nothing
                    m.delay_seconds.labels(item.source).observe(
                        max(0.0, (item.fetched_at - item.published_at).total_seconds())
                    )
        return result

    def _flush(self) -> None:
        try:
            self.producer.flush(timeout=self.ack_timeout_s)
        except BusError as err:
            log.warning("flush failed; checking each delivery", error=str(err))


@dataclass
class _Batch:
    """One sent chunk awaiting its acks."""

    source: str
    result: PublishResult
    sent: list[tuple[NewsItem, Reservation, Delivery]] = field(default_factory=list)
    dead: list[Delivery] = field(default_factory=list)
    tally: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(Draft.source, outcome) -> stories: the per-source metrics of this chunk."""

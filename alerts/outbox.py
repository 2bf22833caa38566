"""Draining the durable outbox: send what is due, back off what failed, dead-letter what is hopeless.

Everything the deliverer knows lives in the outbox table, so a deliverer that is killed and
recreated carries on where the last one stopped: same entries, same attempt counts, same
idempotency keys. Entries of one (receiver, group) go out strictly in order: the next one waits
until the one before it is delivered or dead, so a receiver never sees "resolved" before "firing".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from alerts.alert_store import AlertStore
from alerts.clock import Clock, SystemClock
from alerts.delivery import DeliveryResult, Sender
from alerts.metrics import AlertMetrics
from monitor.core.backoff import Backoff

log = structlog.get_logger(__name__)


class OutboxDeliverer:
    def __init__(
        self,
        store: AlertStore,
        senders: Mapping[str, Sender],
        *,
        policy: Backoff | None = None,
        dead_letter_after_s: float = 86400.0,
        keep_delivered_s: float = 7 * 86400.0,
        batch_size: int = 50,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: AlertMetrics | None = None,
    ) -> None:
        self.store = store
        self.senders = dict(senders)
        self.policy = policy or Backoff(initial_s=1.0, max_s=300.0, jitter=0.2, max_retry_after_s=3600.0)
        self.dead_letter_after_s = dead_letter_after_s
        self.keep_delivered_s = keep_delivered_s
        self.batch_size = batch_size
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.metrics = metrics
        self._last_prune = 0.0

    def deliver_due(self, write: Callable[[Callable[[], Any]], Any] | None = None) -> int:
        """One pass over what is due now; returns the number of attempts made.

        ``write`` runs the store update that records an attempt's outcome (the delivery stage
        passes one that retries it in place while the disk is full, so an entry that was sent is
        not sent again because its "delivered" mark could not be written)."""
        record = write or (lambda fn: fn())
        now = self.clock.time()
        for entry_id in record(lambda: self.store.expire(now - self.dead_letter_after_s)):
            log.error("notification dead-lettered: too old", outbox_id=entry_id)
            self._count("?", "dead")
        if now - self._last_prune > 3600:
            self._last_prune = now
            record(lambda: self.store.prune_delivered(now - self.keep_delivered_s))
        attempts = 0
        for entry in self.store.due_entries(now, self.batch_size):
            assert entry.id is not None
            row_id: int = entry.id
            sender = self.senders.get(entry.receiver)
            if sender is None:
                record(
                    lambda: self.store.mark_dead(
                        row_id, f"no receiver named {entry.receiver!r} is configured", None, False
                    )
                )
                self._count(entry.receiver, "dead")
                continue
            attempt = entry.attempts + 1
            started = time.perf_counter()
            try:
                result = sender.send(entry, attempt, self.clock.time())
            except Exception as err:  # a sender bug must not kill delivery of everything else
                log.exception("sender raised", receiver=entry.receiver)
                result = DeliveryResult(ok=False, retryable=True, error=f"{type(err).__name__}: {err}")
            if self.metrics:
                self.metrics.delivery_seconds.labels(entry.receiver).observe(time.perf_counter() - started)
            attempts += 1
            after = self.clock.time()
            if result.ok:
                record(lambda: self.store.mark_delivered(row_id, after, result.status))
                self._count(entry.receiver, "delivered")
                log.info(
                    "notification delivered",
                    receiver=entry.receiver,
                    reason=entry.reason,
                    key=entry.idempotency_key,
                    attempt=attempt,
                )
            elif (
                result.retryable
                and after + (delay := self.policy.delay(attempt, self.rng, result.retry_after))
                < entry.created_at + self.dead_letter_after_s
            ):
                record(lambda: self.store.reschedule(row_id, after + delay, result.error or "failed", result.status))
                self._count(entry.receiver, "retry")
                log.warning(
                    "delivery failed; will retry",
                    receiver=entry.receiver,
                    error=result.error,
                    attempt=attempt,
                    retry_in_s=round(delay, 3),
                )
            else:
                reason = result.error or "failed"
                if result.retryable:
                    reason += " [dead letter: retries exhausted]"
                record(lambda: self.store.mark_dead(row_id, reason, result.status))
                self._count(entry.receiver, "dead")
                log.error("notification dead-lettered", receiver=entry.receiver, error=reason, attempt=attempt)
        if self.metrics:
            for state, n in self.store.outbox_counts().items():
                self.metrics.outbox.labels(state).set(n)
            oldest = self.store.oldest_pending()
            self.metrics.oldest_pending_seconds.set(0.0 if oldest is None else max(0.0, self.clock.time() - oldest))
        return attempts

    def seconds_until_due(self) -> float | None:
        nxt = self.store.next_due()
        return None if nxt is None else max(0.0, nxt - self.clock.time())

    def _count(self, receiver: str, outcome: str) -> None:
        if self.metrics:
            self.metrics.deliveries.labels(receiver, outcome).inc()

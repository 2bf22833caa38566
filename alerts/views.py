"""What ``GET /alerts`` and ``finsent alerts`` show: pydantic views of alerts and outbox entries."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field

from alerts.instances import AlertInstance, OutboxEntry
from monitor.core.records import Evidence


class AlertView(BaseModel):
    fingerprint: str
    rule: str
    state: str
    subject: str
    labels: dict[str, str]
    annotations: dict[str, str]
    receiver: str
    group_key: str
    active_since: datetime | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    last_seen_at: datetime | None = None
    last_notified_at: datetime | None = None
    keep_firing_since: datetime | None = Field(
        default=None, description="firing, but its condition has not held since then (the rule's keep_firing_for runs)"
    )
    revision: int = 0
    notifications: int = 0
    values: dict[str, float]
    evidence: list[Evidence]
    model_version: str | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None

    @classmethod
    def of(cls, a: AlertInstance) -> AlertView:
        return cls(
            fingerprint=a.fingerprint,
            rule=a.rule,
            state=a.state,
            subject=a.subject,
            labels=a.labels,
            annotations=a.annotations,
            receiver=a.receiver,
            group_key=a.group_key,
            active_since=a.active_since,
            starts_at=a.starts_at,
            ends_at=a.ends_at,
            last_seen_at=a.last_seen_at,
            last_notified_at=a.last_notified_at,
            keep_firing_since=a.keep_firing_since,
            revision=a.revision,
            notifications=a.seq,
            values=a.values,
            evidence=list(a.evidence),
            model_version=a.model_version,
            acked_at=a.acked_at,
            acked_by=a.acked_by,
        )


class OutboxView(BaseModel):
    id: int
    receiver: str
    reason: str
    status: str
    state: str
    idempotency_key: str
    fingerprints: list[str]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_status: int | None = None
    last_error: str | None = None

    @classmethod
    def of(cls, e: OutboxEntry) -> OutboxView:
        return cls(
            id=e.id or 0,
            receiver=e.receiver,
            reason=e.reason,
            status=e.status,
            state=e.state,
            idempotency_key=e.idempotency_key,
            fingerprints=e.fingerprints,
            attempts=e.attempts,
            created_at=datetime.fromtimestamp(e.created_at, tz=timezone.utc),
            next_attempt_at=datetime.fromtimestamp(e.next_attempt_at, tz=timezone.utc),
            last_status=e.last_status,
            last_error=e.last_error,
        )


class AlertList(BaseModel):
    alerts: list[AlertView]
    outbox_counts: dict[str, int]
    undelivered: list[OutboxView]
    """Pending and dead outbox entries, newest first."""


class AckRequest(BaseModel):
    by: str = Field(default="api", min_length=1, max_length=128)


class AckResponse(BaseModel):
    fingerprint: str
    acked: bool

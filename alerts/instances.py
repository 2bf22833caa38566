"""The state of one alert (one rule on one key, or one story) and one outbox entry."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from monitor.core.records import Evidence

AlertPhase = Literal["pending", "firing", "resolved"]
"""``inactive`` alerts have no row; ``resolved`` rows stay until ``evaluation.retention`` passes."""


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class AlertInstance:
    fingerprint: str
    rule: str
    subject: str
    """The trend key, or the story id for story rules."""
    labels: dict[str, str]
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    state: AlertPhase = "pending"
    active_since: datetime | None = None
    """When the condition started holding (event time); ``for`` is measured from here."""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    last_seen_at: datetime | None = None
    """Event time of the last point that evaluated this alert (``stale_after`` uses it)."""
    last_notified_at: datetime | None = None
    fired_window_end: datetime | None = None
    """``window_end`` of the point that fired it: revisions of this window or later ones count."""
    keep_firing_since: datetime | None = None
    """A firing trend alert whose condition stopped holding at this event time; it resolves once the
    rule's ``keep_firing_for`` has passed without the condition holding again (None: holding)."""
    revision: int = 0
    seq: int = 0
    """Notifications sent about this alert; part of each notification's idempotency key."""
    values: dict[str, float] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    evidence: tuple[Evidence, ...] = ()
    model_version: str | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None

    # -- persistence -----------------------------------------------------------------------
    COLUMNS = (
        "fingerprint",
        "rule",
        "subject",
        "labels",
        "receiver",
        "group_key",
        "group_labels",
        "state",
        "active_since",
        "starts_at",
        "ends_at",
        "last_seen_at",
        "last_notified_at",
        "fired_window_end",
        "revision",
        "seq",
        "values_json",
        "annotations",
        "evidence",
        "model_version",
        "keep_firing_since",
    )

    def to_row(self) -> tuple:
        return (
            self.fingerprint,
            self.rule,
            self.subject,
            json.dumps(self.labels, sort_keys=True),
            self.receiver,
            self.group_key,
            json.dumps(self.group_labels, sort_keys=True),
            self.state,
            _iso(self.active_since),
            _iso(self.starts_at),
            _iso(self.ends_at),
            _iso(self.last_seen_at),
            _iso(self.last_notified_at),
            _iso(self.fired_window_end),
            self.revision,
            self.seq,
            json.dumps(self.values, sort_keys=True),
            json.dumps(self.annotations, sort_keys=True),
            json.dumps([e.model_dump(mode="json") for e in self.evidence]),
            self.model_version,
            _iso(self.keep_firing_since),
        )

    @classmethod
    def from_row(cls, row: dict) -> AlertInstance:
        return cls(
            fingerprint=row["fingerprint"],
            rule=row["rule"],
            subject=row["subject"],
            labels=json.loads(row["labels"]),
            receiver=row["receiver"],
            group_key=row["group_key"],
            group_labels=json.loads(row["group_labels"]),
            state=row["state"],
            active_since=_dt(row["active_since"]),
            starts_at=_dt(row["starts_at"]),
            ends_at=_dt(row["ends_at"]),
            last_seen_at=_dt(row["last_seen_at"]),
            last_notified_at=_dt(row["last_notified_at"]),
            fired_window_end=_dt(row["fired_window_end"]),
            revision=row["revision"],
            seq=row["seq"],
            values=json.loads(row["values_json"]),
            annotations=json.loads(row["annotations"]),
            evidence=tuple(Evidence.model_validate(e) for e in json.loads(row["evidence"])),
            model_version=row["model_version"],
            keep_firing_since=_dt(row.get("keep_firing_since")),
            acked_at=_dt(row.get("acked_at")),
            acked_by=row.get("acked_by"),
        )


OutboxState = Literal["pending", "delivered", "dead"]


@dataclass
class OutboxEntry:
    """A notification accepted for delivery to one receiver; the body is final (what gets signed)."""

    idempotency_key: str
    receiver: str
    group_key: str
    reason: str
    status: str
    fingerprints: list[str]
    body: bytes
    content_type: str = "application/json"
    created_at: float = 0.0
    next_attempt_at: float = 0.0
    attempts: int = 0
    state: OutboxState = "pending"
    last_error: str | None = None
    last_status: int | None = None
    delivered_at: float | None = None
    id: int | None = None

"""Prometheus metrics of the alert stage, created on the registry it is given."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "finsent_alerts_records", "Records evaluated by the alert rules", ["kind"], registry=registry
        )
        self.notifications = Counter(
            "finsent_alerts_notifications",
            "Notifications accepted into the outbox",
            ["receiver", "reason"],
            registry=registry,
        )
        self.deliveries = Counter(
            "finsent_alerts_deliveries",
            "Delivery attempts by outcome (delivered, retry, dead)",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.state_write_errors = Counter(
            "finsent_alerts_state_write_errors",
            "Alert state/outbox writes that failed on a full or failing disk (retried in place; offsets held)",
            registry=registry,
        )
        self.active = Gauge("finsent_alerts_active", "Alerts by state", ["state"], registry=registry)
        self.outbox = Gauge("finsent_alerts_outbox", "Outbox entries by state", ["state"], registry=registry)
        self.batch_seconds = Histogram(
            "finsent_alerts_batch_seconds",
            "Time to evaluate and persist one input batch",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )
        self.delivery_seconds = Histogram(
            "finsent_alerts_delivery_seconds",
            "Time of one delivery attempt",
            ["receiver"],
            registry=registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30),
        )
        self.oldest_pending_seconds = Gauge(
            "finsent_alerts_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered outbox entry (0 when none is pending)",
            registry=registry,
        )
        self.publish_to_alert_seconds = Histogram(
            "finsent_alerts_publish_to_alert_seconds",
            "From the publication of the newest story behind an alert to the alert firing (wall clock)",
            registry=registry,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600),
        )
        self.dead_letters = Counter(
            "finsent_alerts_dead_letters",
            "Undecodable trend/story records sent to the DLQ by the evaluator",
            registry=registry,
        )

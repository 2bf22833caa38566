"""The retrain job's metrics: runs by result, durations, and the gate's view of the serving model."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RetrainMetrics:
    """The retrain job's runs and the gate's view of the serving model (see monitor.learning.retrain)."""

    RESULTS = ("promoted", "rejected", "shadowing", "skipped", "failed", "timeout", "cancelled")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "finsent_retrain_runs",
            "Retrain job runs by result (promoted, rejected, shadowing, skipped, failed, timeout, cancelled)",
            ["result"],
            registry=registry,
        )
        for result in self.RESULTS:
            self.runs.labels(result)
        self.seconds = Histogram(
            "finsent_retrain_duration_seconds",
            "Wall time of one retrain job run",
            registry=registry,
            buckets=(1, 10, 60, 300, 600, 1800, 3600, 4 * 3600),
        )
        self.label_dead_letters = Counter(
            "finsent_retrain_label_dead_letters",
            "Undecodable label records sent to the DLQ by the label collector",
            registry=registry,
        )
        self.last_run = Gauge(
            "finsent_retrain_last_run_timestamp_seconds", "When the last retrain run ended", registry=registry
        )
        self.lease_held = Gauge(
            "finsent_retrain_lease_held",
            "1 while this instance holds the retrain lease (it runs the scheduled jobs), 0 on a standby",
            registry=registry,
        )
        self.lease_candidate = Gauge(
            "finsent_retrain_lease_candidate",
            "1 on an instance that runs the scheduled retrain when it holds the retrain lease (retrain.enabled)",
            registry=registry,
        )
        self.champion = Gauge(
            "finsent_model_champion_metric",
            "The serving model's score on each fixed "
            "validation set (retrain.validation_sets), as measured by the last gate",
            ["set", "metric"],
            registry=registry,
        )

    def observe(self, report: dict[str, Any]) -> None:
        """Count one run from its report (monitor.learning.retrain.run_retrain)."""
        self.runs.labels(report["result"]).inc()
        self.last_run.set(time.time())
        if report.get("duration_s") is not None and report["result"] != "skipped":
            self.seconds.observe(report["duration_s"])
        role = "challenger" if report["result"] == "promoted" else "champion"
        for name, entry in (report.get("fixed") or {}).items():
            for metric in ("accuracy", "macro_f1"):
                value = (entry.get(role) or {}).get(metric)
                if value is not None:
                    self.champion.labels(name, metric).set(value)

"""Process-level Prometheus metrics every role serves: which roles a process runs, its HTTP
requests, the model it serves, its retrain runs. Each is created on the registry it is given
(nothing global), so several daemons in one test process never share a series.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from monitor import __version__


class RoleMetrics:
    """``finsent_role_info{role, version} 1`` for each role the process runs."""

    def __init__(self, registry: CollectorRegistry, roles: Sequence[str] = ()) -> None:
        self.info = Gauge(
            "finsent_role_info",
            "1 for each role this process runs (ingest, classify, aggregate, "
            "alerts, retrain), with the finsent version",
            ["role", "version"],
            registry=registry,
        )
        for role in roles:
            self.info.labels(role, __version__).set(1)


class HttpMetrics:
    """Requests served by the daemon's HTTP server, by route template (bounded) and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "finsent_http_requests",
            "HTTP requests served, by route template and status code",
            ["route", "method", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "finsent_http_request_seconds",
            "Time to serve one HTTP request",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )

    def instrument(self, app: Any) -> None:
        """Count every request of a FastAPI/Starlette ``app`` (unmatched paths as ``route="other"``).

        A plain ASGI middleware (not ``@app.middleware``), so streamed responses pass untouched."""
        app.add_middleware(_CountRequests, metrics=self)


class _CountRequests:
    def __init__(self, app: Any, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", None) or "other"  # the router sets the matched route
            self.metrics.requests.labels(path, scope.get("method", "GET"), str(status)).inc()
            self.metrics.seconds.labels(path).observe(time.perf_counter() - started)


class ModelInfoCollector(Collector):
    """The served model, read from the engine at scrape time (so a hot reload shows at once):
    ``finsent_model_info{version, profile, trained_at} 1`` and
    ``finsent_model_validation{task, metric}`` (the version's manifest's validation scores)."""

    METRICS = ("accuracy", "macro_f1")

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Any]:
        yield InfoMetricFamily(
            "finsent_model",
            "The model version classify serves (labels: version, profile, trained_at)",
            labels=["version", "profile", "trained_at"],
        )
        yield GaugeMetricFamily(
            "finsent_model_validation",
            "Validation score of the served version, per task (sentiment, topic) and metric (accuracy, macro_f1)",
            labels=["task", "metric"],
        )

    def collect(self) -> Iterable[Any]:
        manifest: dict[str, Any] = getattr(self.engine, "manifest", None) or {}
        version = str(getattr(self.engine, "version", None) or manifest.get("version") or "unknown")
        info = InfoMetricFamily(
            "finsent_model", "The model version classify serves (labels: version, profile, trained_at)"
        )
        info.add_metric(
            [],
            {
                "version": version,
                "profile": str((manifest.get("training") or {}).get("profile", "")),
                "trained_at": str(manifest.get("created_at", "")),
            },
        )
        yield info
        scores = GaugeMetricFamily(
            "finsent_model_validation",
            "Validation score of the served version, per task (sentiment, topic) and metric (accuracy, macro_f1)",
            labels=["task", "metric"],
        )
        for task, values in sorted((manifest.get("metrics") or {}).items()):
            for metric in self.METRICS:
                if isinstance(values, dict) and isinstance(values.get(metric), (int, float)):
                    scores.add_metric([task, metric], float(values[metric]))
        yield scores


class BusMemoryCollector(Collector):
    """The in-process bus's footprint, read at scrape time: ``finsent_bus_memory_records{topic}``
    (records held) and ``finsent_bus_memory_trimmed_total`` (records forgotten once every consumer
    group had committed them, or past ``kafka.memory_max_records`` on a topic nobody reads)."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    def describe(self) -> Iterable[Any]:
        yield GaugeMetricFamily(
            "finsent_bus_memory_records", "Records the in-process bus holds, per topic", labels=["topic"]
        )
        yield CounterMetricFamily(
            "finsent_bus_memory_trimmed",
            "Records the in-process bus has forgotten "
            "(committed by every consumer group, or beyond kafka.memory_max_records)",
        )

    def collect(self) -> Iterable[Any]:
        held = GaugeMetricFamily(
            "finsent_bus_memory_records", "Records the in-process bus holds, per topic", labels=["topic"]
        )
        for topic, n in sorted((self.bus.retained() if self.bus is not None else {}).items()):
            held.add_metric([topic], float(n))
        yield held
        yield CounterMetricFamily(
            "finsent_bus_memory_trimmed",
            "Records the in-process bus has forgotten "
            "(committed by every consumer group, or beyond kafka.memory_max_records)",
            value=float(getattr(self.bus, "trimmed", 0)),
        )

"""Prometheus metrics of the connectors, per source, on the registry handed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ERROR_KINDS = (
    "timeout",
    "connect",
    "network",
    "http_4xx",
    "http_5xx",
    "too_large",
    "redirects",
    "malformed",
    "parse",
    "publish",
    "config",
)


class IngestMetrics:
    """``finsent_ingest_*``: fetched, new, near_duplicate, duplicate, rejected, errors{kind}, latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fetched = Counter(
            "finsent_ingest_fetched", "Stories read from a source, before dedup", ["source"], registry=registry
        )
        self.new = Counter("finsent_ingest_new", "First sightings produced to news.raw", ["source"], registry=registry)
        self.near_duplicate = Counter(
            "finsent_ingest_near_duplicate",
            "Near-duplicates produced with a reduced novelty score",
            ["source"],
            registry=registry,
        )
        self.duplicate = Counter(
            "finsent_ingest_duplicate", "Stories dropped as already seen", ["source"], registry=registry
        )
        self.rejected = Counter(
            "finsent_ingest_rejected", "Malformed stories sent to the dead-letter topic", ["source"], registry=registry
        )
        self.errors = Counter(
            "finsent_ingest_errors", "Fetch/parse/publish failures by kind", ["source", "kind"], registry=registry
        )
        self.source_failures = Gauge(
            "finsent_ingest_source_failures",
            "Consecutive failed polls of a source (0 = healthy)",
            ["source"],
            registry=registry,
        )
        self.source_backoff = Gauge(
            "finsent_ingest_source_backoff_seconds",
            "Delay before a failing source is polled again (circuit breaker; 0 = polled at its interval)",
            ["source"],
            registry=registry,
        )
        self.not_modified = Counter(
            "finsent_ingest_not_modified", "Conditional GETs answered 304", ["source"], registry=registry
        )
        self.fetch_seconds = Histogram(
            "finsent_ingest_fetch_seconds",
            "Time to fetch one feed or API page (retries included)",
            ["source"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        )
        self.delay_seconds = Histogram(
            "finsent_ingest_delay_seconds",
            "Publication-to-ingest delay of live stories (fetched_at - published_at)",
            ["source"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
            registry=registry,
        )

"""The one consumer-lag reporter (monitor.core.bus.lag): reports each assigned partition's lag
at most once per interval, and a revoke removes the series of the partitions taken away."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from monitor.core.bus.base import TopicPartition
from monitor.core.bus.lag import LagReporter


class _Consumer:
    def __init__(self) -> None:
        self.lags: dict[TopicPartition, int] = {}
        self.calls = 0
        self.broken = False

    def lag(self) -> dict[TopicPartition, int]:
        self.calls += 1
        if self.broken:
            raise RuntimeError("broker away")
        return dict(self.lags)


def _series(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for metric in registry.collect()
        for s in metric.samples
        if metric.name == "test_lag"
    }


def test_reports_per_partition_at_most_once_per_interval_and_forgets_revoked_ones() -> None:
    registry = CollectorRegistry()
    reporter = LagReporter(Gauge("test_lag", "lag", ["topic", "partition"], registry=registry), interval_s=5.0)
    consumer = _Consumer()
    consumer.lags = {TopicPartition("t", 0): 3, TopicPartition("t", 1): 0}
    reporter.maybe_report(consumer, now=100.0)
    assert _series(registry) == {("t", "0"): 3.0, ("t", "1"): 0.0}
    consumer.lags = {TopicPartition("t", 0): 9, TopicPartition("t", 1): 1}
    reporter.maybe_report(consumer, now=104.9)  # within the interval: not asked
    assert consumer.calls == 1 and _series(registry)[("t", "0")] == 3.0
    reporter.maybe_report(consumer, now=105.0)
    assert _series(registry) == {("t", "0"): 9.0, ("t", "1"): 1.0}

    reporter.forget({TopicPartition("t", 1), TopicPartition("t", 7)})  # 7 was never reported
    assert _series(registry) == {("t", "0"): 9.0}


def test_an_unreachable_broker_leaves_the_last_values() -> None:
    registry = CollectorRegistry()
    reporter = LagReporter(Gauge("test_lag", "lag", ["topic", "partition"], registry=registry), interval_s=1.0)
    consumer = _Consumer()
    consumer.lags = {TopicPartition("t", 0): 2}
    reporter.maybe_report(consumer, now=0.0)
    consumer.broken = True
    reporter.maybe_report(consumer, now=2.0)
    assert _series(registry) == {("t", "0"): 2.0}

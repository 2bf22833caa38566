"""The one consumer-lag reporter: lag per assigned partition into a Prometheus gauge labelled
``(topic, partition)``, at most once per interval, and :meth:`LagReporter.forget` for the
partitions a rebalance took away, so no stale series stays behind on an instance that no
longer reads them (another instance now reports them)."""

from __future__ import annotations

import structlog
from prometheus_client import Gauge

from monitor.core.bus.base import Consumer, TopicPartition

log = structlog.get_logger(__name__)


class LagReporter:
    def __init__(self, gauge: Gauge, interval_s: float) -> None:
        self.gauge = gauge
        self.interval_s = interval_s
        self._next = 0.0

    def maybe_report(self, consumer: Consumer, now: float) -> None:
        """Report when ``interval_s`` passed since the last report (the first call always does)."""
        if now < self._next:
            return
        self._next = now + self.interval_s
        try:
            lag = consumer.lag()
        except Exception as err:  # a broker away: lag is a metric, the stage goes on
            log.debug("lag unavailable", error=str(err))
            return
        for tp, value in lag.items():
            self.gauge.labels(tp.topic, str(tp.partition)).set(value)

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Call from the consumer's revoke callback."""
        for tp in revoked:
            try:
                self.gauge.remove(tp.topic, str(tp.partition))
            except KeyError:  # never reported
                pass

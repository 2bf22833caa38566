"""Pick the transport from config: Kafka when ``kafka.bootstrap`` is set, else in-process."""

from __future__ import annotations

import time
from typing import Protocol

import structlog

from monitor.core.backoff import Backoff
from monitor.core.bus.base import Bus, BusError, ClusterTooSmall
from monitor.core.bus.kafka import KafkaBus
from monitor.core.bus.memory import MemoryBus
from monitor.core.bus.settings import KafkaSettings, TopicSettings
from monitor.core.logs import quiet_kafka_client

log = structlog.get_logger(__name__)


class BusConfig(Protocol):
    """What the factory reads from the root settings (which satisfy this)."""

    @property
    def kafka(self) -> KafkaSettings: ...

    @property
    def topics(self) -> TopicSettings: ...


CLUSTER_ASSEMBLY_S = 60.0
"""How long a daemon waits for a cluster with fewer brokers than ``kafka.replication_factor``."""


def make_bus(settings: BusConfig, wait: bool = False) -> Bus:
    """The bus with finsent's topics in place. ``wait`` (daemons): while the broker is unreachable,
    log and retry (1 s doubling to 30 s) for ``kafka.startup_timeout_s`` (0 = for ever) instead of
    failing, so a daemon started before its broker becomes ready when the broker appears."""
    if settings.kafka.enabled:
        bus: Bus = KafkaBus(settings.kafka)
    else:
        # a daemon runs for weeks: forget what every consumer group has committed
        bus = MemoryBus(
            default_partitions=settings.kafka.partitions, trim=True, max_records=settings.kafka.memory_max_records
        )
    timeout = settings.kafka.startup_timeout_s
    deadline = time.monotonic() + timeout if timeout else float("inf")
    backoff, attempt = Backoff(1.0, 30.0), 1
    assembling_until: float | None = None
    while True:
        try:
            bus.ensure_topics(settings.topics.all())
        except ClusterTooSmall as err:
            # brokers of a cluster that is starting join one by one; a cluster that stays too small
            # for CLUSTER_ASSEMBLY_S after it first answered is a configuration error, said clearly
            if assembling_until is None:
                assembling_until = time.monotonic() + CLUSTER_ASSEMBLY_S
            if not wait or time.monotonic() > assembling_until:
                raise
            log.warning("waiting for more Kafka brokers to join", attempt=attempt, error=str(err))
            time.sleep(backoff.delay(attempt))
            attempt += 1
            continue
        except BusError as err:
            delay = backoff.delay(attempt)
            if not wait or time.monotonic() + delay > deadline:
                raise
            log.warning(
                "waiting for the Kafka broker",
                bootstrap=settings.kafka.bootstrap,
                attempt=attempt,
                retry_in_s=delay,
                error=str(err)[:200],
            )
            time.sleep(delay)
            attempt += 1
            continue
        if attempt > 1:
            log.info("Kafka broker reachable", bootstrap=settings.kafka.bootstrap, attempts=attempt)
        return bus


def make_command_bus(settings: BusConfig) -> Bus:
    """The bus for a one-shot command (``finsent dlq``, ``finsent replay``): a broker that cannot be
    reached is one :class:`BusError` within seconds, not kafka-python's retries (an ERROR line each)
    for its 30-second bootstrap timeout."""
    if settings.kafka.enabled:
        quiet_kafka_client()
        if not KafkaBus(settings.kafka).reachable():
            raise BusError(f"cannot reach Kafka at {settings.kafka.bootstrap}: nothing answers there")
    return make_bus(settings)

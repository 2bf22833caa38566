"""Pick the transport from config: Kafka when ``kafka.bootstrap`` is set, else in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.bus.base import Bus

if TYPE_CHECKING:
    from monitor.config import Settings


def make_bus(settings: "Settings") -> Bus:
    if settings.kafka.enabled:
        from monitor.bus.kafka import KafkaBus

        bus: Bus = KafkaBus(settings.kafka)
    else:
        from monitor.bus.memory import MemoryBus

        bus = MemoryBus(default_partitions=settings.kafka.partitions)
    bus.ensure_topics(settings.topics.all())
    return bus

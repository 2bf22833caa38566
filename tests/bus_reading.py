"""Reading what the in-process bus holds, for tests that inspect a topic whole."""

from __future__ import annotations

from monitor.core.bus.base import Message
from monitor.core.bus.memory import MemoryBus


def read_all(bus: MemoryBus, topic: str) -> list[Message]:
    """Every message still held on ``topic``, in partition order."""
    return [m for p in range(bus.partitions_for(topic)) for m in bus.read_partition(topic, p)]

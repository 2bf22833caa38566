"""Transport: the :class:`Bus` interface and its Kafka and in-process implementations."""

from monitor.core.bus.base import (
    Bus,
    BusError,
    ClusterTooSmall,
    Consumer,
    ConsumerOptions,
    Message,
    Producer,
    RecordMetadata,
    TopicPartition,
)
from monitor.core.bus.lease import FENCE_SHARE, GroupLease, GroupShare, slot_of

__all__ = [
    "FENCE_SHARE",
    "Bus",
    "BusError",
    "ClusterTooSmall",
    "Consumer",
    "ConsumerOptions",
    "GroupLease",
    "GroupShare",
    "Message",
    "Producer",
    "RecordMetadata",
    "TopicPartition",
    "slot_of",
]

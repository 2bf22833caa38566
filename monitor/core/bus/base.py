"""The transport interface every stage talks to: topics, producers and consumer groups.

Two implementations: :mod:`monitor.core.bus.kafka` (the real thing) and :mod:`monitor.core.bus.memory`
(the embedded default of ``finsent run`` and of unit tests). Stages never import either directly;
they receive a :class:`Bus` and use only what is declared here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True)
class Message:
    """One record read from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    offset: int


@runtime_checkable
class Delivery(Protocol):
    """The broker's answer to one send; ``get`` blocks until acknowledged or raises."""

    def get(self, timeout: float | None = None) -> RecordMetadata: ...


class BusError(RuntimeError):
    """The transport failed (broker unreachable, send not acknowledged in time, ...)."""


class ClusterTooSmall(BusError):
    """The cluster has fewer brokers than ``kafka.replication_factor`` copies need."""


Headers = Iterable[tuple[str, bytes]]
RebalanceCallback = Callable[[set[TopicPartition]], None]


class Producer(Protocol):
    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Delivery:
        """``partition`` set: write there instead of where the key hashes (e.g. watermark markers);
        ``value=None``: a tombstone (compacted topics)."""

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


class Consumer(Protocol):
    """A member of a consumer group. Offsets are committed explicitly, after processing."""

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]: ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, per partition, the offset of the *next* message to read."""

    def committed(self, tp: TopicPartition) -> int | None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next (e.g. from a checkpoint restored on assignment)."""

    def pause(self, partitions: Iterable[TopicPartition]) -> None: ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def lag(self) -> dict[TopicPartition, int]:
        """Messages not yet read, per assigned partition (end offset minus position)."""

    def group_contact_age_s(self) -> float:
        """Seconds since the group coordinator last answered this member (0 in one process): past
        the session timeout, the group may have given this member's partitions to another."""

    def close(self) -> None: ...


def co_partition(partition: int, downstream_partitions: int) -> int:
    """The partition of a downstream topic that a stage writes the records read from upstream
    ``partition`` to. Stages keep their topics co-partitioned this way (``news.raw`` partition p
    -> ``news.scored`` partition p), so a downstream partition knows which upstream partitions feed
    it; the connectors key by primary ticker, so per-ticker order holds as well."""
    return partition % max(1, downstream_partitions)


@dataclass(frozen=True)
class Backlog:
    """Where another consumer group stands on a topic."""

    pending: dict[int, int]
    """Per partition, records past the group's committed offset (never committed: all of them)."""
    committed: int = 0
    """Sum of the group's committed offsets: it grows while the group makes progress."""

    def feeding(self, partition: int, downstream_partitions: int) -> int:
        """Records still to come into downstream ``partition`` (see :func:`co_partition`)."""
        if downstream_partitions <= 0:
            return sum(self.pending.values())
        return sum(n for p, n in self.pending.items() if co_partition(p, downstream_partitions) == partition)


class BacklogProbe(Protocol):
    """How far another consumer group is behind on a topic, without joining it."""

    def backlog(self) -> Backlog | None:
        """The group's backlog; empty for a topic that does not exist; ``None``: unknown (broker
        unreachable, no metadata yet)."""

    def close(self) -> None: ...


@dataclass
class ConsumerOptions:
    group_id: str
    from_beginning: bool = True
    on_assign: RebalanceCallback | None = None
    on_revoke: RebalanceCallback | None = None
    client_id: str | None = None
    sticky: bool = False
    """Keep partitions with their current member when the group changes (Kafka's sticky assignor)."""
    extra: dict[str, object] = field(default_factory=dict)


class Bus(Protocol):
    """A factory of producers and consumers over one cluster (or one process)."""

    name: str

    def ensure_topics(self, topics: Iterable[str], partitions: int | None = None, compacted: bool = False) -> None:
        """Create the missing ``topics``; ``compacted``: with ``cleanup.policy=compact``."""

    def read_partition(self, topic: str, partition: int) -> list[Message]:
        """Every record of one partition up to its end at call time (no consumer group)."""

    def producer(self) -> Producer: ...

    def consumer(self, topics: Iterable[str], options: ConsumerOptions) -> Consumer: ...

    def partitions_for(self, topic: str) -> int: ...

    def backlog_probe(self, group_id: str, topic: str) -> BacklogProbe: ...

    def reachable(self, timeout_s: float = 2.0) -> bool: ...

    def close(self) -> None: ...


def encode_key(key: bytes | str | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return key.encode("utf-8")

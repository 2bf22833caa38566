"""In-process bus: partitioned append-only logs and consumer groups, all in memory.

The embedded default of ``finsent run`` and the transport of unit tests. It mirrors the parts of
Kafka the stages rely on (partitioning by key, per-partition order, consumer groups that split
partitions, committed offsets, pause/resume, rebalance callbacks) so that stage code is the same
on both. It is never used as a stand-in for Kafka in integration tests.

Memory stays bounded in a long-running embedded daemon (``trim=True``, what ``finsent run``
without a broker uses; tests keep every record): a partition forgets the records that every
consumer group reading its topic has committed (offsets keep counting: a log starts at its
``base`` offset), and a topic no group reads (the dead-letter topic, say) keeps its newest
``max_records`` per partition. :meth:`MemoryBus.retained` reports what is held (the
``finsent_bus_memory_records`` gauge).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import count

from monitor.core.bus.base import (
    Backlog,
    BusError,
    ConsumerOptions,
    Headers,
    Message,
    RecordMetadata,
    TopicPartition,
    encode_key,
)

TRIM_CHUNK = 256  # committed records a partition sheds at once (amortises the list shift)


@dataclass
class _Log:
    """One partition: ``records[i]`` has offset ``base + i``."""

    base: int = 0
    records: list[Message] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def __len__(self) -> int:  # the end offset, as before trimming existed (tests read it)
        return self.end

    def __iter__(self) -> Iterator[Message]:
        return iter(self.records)

    def read(self, position: int, n: int) -> list[Message]:
        start = max(position, self.base) - self.base
        return self.records[start : start + n]

    def trim_to(self, offset: int) -> int:
        """Forget the records before ``offset``; returns how many."""
        k = min(offset, self.end) - self.base
        if k <= 0:
            return 0
        del self.records[:k]
        self.base += k
        return k


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    generation: int = 0


class MemoryBus:
    name = "memory"

    def __init__(self, default_partitions: int = 3, *, trim: bool = False, max_records: int = 50_000) -> None:
        self.default_partitions = default_partitions
        self.trim = trim
        self.max_records = max_records
        self.trimmed = 0  # records forgotten so far
        self._logs: dict[str, list[_Log]] = {}
        self._groups: dict[str, _Group] = {}
        self._cond = threading.Condition()
        self._round_robin = count()
        self._closed = False

    # -- topics -----------------------------------------------------------------------------
    def ensure_topics(self, topics: Iterable[str], partitions: int | None = None, compacted: bool = False) -> None:
        with self._cond:
            for t in topics:
                if t not in self._logs:
                    self._logs[t] = [_Log() for _ in range(partitions or self.default_partitions)]

    def partitions_for(self, topic: str) -> int:
        with self._cond:
            self._require(topic)
            return len(self._logs[topic])

    def _require(self, topic: str) -> list[_Log]:
        if topic not in self._logs:
            raise BusError(f"unknown topic {topic!r}: create it with ensure_topics first")
        return self._logs[topic]

    def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        with self._cond:
            return {TopicPartition(topic, p): log.end for p, log in enumerate(self._require(topic))}

    def read_partition(self, topic: str, partition: int) -> list[Message]:
        with self._cond:
            return list(self._require(topic)[partition].records)

    def retained(self) -> dict[str, int]:
        """Records held per topic (what trimming leaves)."""
        with self._cond:
            return {t: sum(len(log.records) for log in logs) for t, logs in self._logs.items()}

    def _readers(self, topic: str) -> list[_Group]:
        return [
            g
            for g in self._groups.values()
            if any(topic in m.topics for m in g.members) or any(tp.topic == topic for tp in g.committed)
        ]

    def _trim(self, tp: TopicPartition) -> None:
        """Forget what every group reading ``tp.topic`` has committed on ``tp`` (lock held)."""
        log = self._logs[tp.topic][tp.partition]
        readers = self._readers(tp.topic)
        if not readers:
            return
        floor = min(g.committed.get(tp, log.base) for g in readers)
        if floor - log.base >= TRIM_CHUNK or floor >= log.end:
            self.trimmed += log.trim_to(floor)

    # -- produce ----------------------------------------------------------------------------
    def append(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None, partition: int | None = None
    ) -> RecordMetadata:
        with self._cond:
            if self._closed:
                raise BusError("bus is closed")
            logs = self._require(topic)
            if partition is not None:
                if not 0 <= partition < len(logs):
                    raise BusError(f"{topic} has no partition {partition}")
                p = partition
            elif key is None:
                p = next(self._round_robin) % len(logs)
            else:
                p = zlib.crc32(key) % len(logs)
            log = logs[p]
            msg = Message(
                topic=topic,
                partition=p,
                offset=log.end,
                key=key,
                value=value,
                headers=tuple(headers or ()),
                timestamp_ms=int(time.time() * 1000),
            )
            log.records.append(msg)
            if self.trim and len(log.records) > self.max_records + TRIM_CHUNK and not self._readers(topic):
                self.trimmed += log.trim_to(log.end - self.max_records)  # nobody reads it: keep the newest
            self._cond.notify_all()
            return RecordMetadata(topic, p, msg.offset)

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    # -- consume ----------------------------------------------------------------------------
    def consumer(self, topics: Iterable[str], options: ConsumerOptions) -> MemoryConsumer:
        c = MemoryConsumer(self, list(topics), options)
        with self._cond:
            for t in c.topics:
                self._require(t)
            self._groups.setdefault(options.group_id, _Group()).members.append(c)
            self._rebalance(options.group_id)
        return c

    def _leave(self, c: MemoryConsumer) -> None:
        with self._cond:
            group = self._groups.get(c.options.group_id)
            if group and c in group.members:
                group.members.remove(c)
                self._rebalance(c.options.group_id)

    def _rebalance(self, group_id: str) -> None:
        group = self._groups[group_id]
        group.generation += 1
        tps = sorted({TopicPartition(t, p) for m in group.members for t in m.topics for p in range(len(self._logs[t]))})
        plan: dict[int, set[TopicPartition]] = {id(m): set() for m in group.members}
        for i, tp in enumerate(tps):
            interested = [m for m in group.members if tp.topic in m.topics]
            if interested:
                plan[id(interested[i % len(interested)])].add(tp)
        for m in group.members:
            m._pending_assignment = plan[id(m)]
        self._cond.notify_all()

    def _committed(self, group_id: str, tp: TopicPartition) -> int | None:
        return self._groups[group_id].committed.get(tp)

    def _commit(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        with self._cond:
            self._groups[group_id].committed.update(offsets)
            if self.trim:
                for tp in offsets:
                    self._trim(tp)

    def backlog_probe(self, group_id: str, topic: str) -> MemoryBacklogProbe:
        return MemoryBacklogProbe(self, group_id, topic)

    def reachable(self, timeout_s: float = 2.0) -> bool:
        return not self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class MemoryBacklogProbe:
    def __init__(self, bus: MemoryBus, group_id: str, topic: str) -> None:
        self._bus, self.group_id, self.topic = bus, group_id, topic

    def backlog(self) -> Backlog | None:
        with self._bus._cond:
            group = self._bus._groups.get(self.group_id)
            logs = self._bus._logs.get(self.topic)
            if logs is None:
                return Backlog({})  # no such topic: nothing on its way
            committed = group.committed if group is not None else {}
            offsets = {p: committed.get(TopicPartition(self.topic, p), 0) for p in range(len(logs))}
            return Backlog({p: log.end - offsets[p] for p, log in enumerate(logs)}, sum(offsets.values()))

    def close(self) -> None:
        return None


class _Done:
    def __init__(self, meta: RecordMetadata) -> None:
        self._meta = meta

    def get(self, timeout: float | None = None) -> RecordMetadata:
        return self._meta


class MemoryProducer:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> _Done:
        return _Done(self._bus.append(topic, value, encode_key(key), headers, partition))

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self) -> None:
        return None


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, topics: list[str], options: ConsumerOptions) -> None:
        self._bus = bus
        self.topics = topics
        self.options = options
        self._assignment: set[TopicPartition] = set()
        self._pending_assignment: set[TopicPartition] | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._closed = False

    def _apply_rebalance(self) -> None:
        new = self._pending_assignment
        if new is None:
            return
        self._pending_assignment = None
        revoked = self._assignment - new
        added = new - self._assignment
        if revoked and self.options.on_revoke:
            self.options.on_revoke(revoked)
        for tp in revoked:
            self._positions.pop(tp, None)
            self._paused.discard(tp)
        for tp in added:
            committed = self._bus._committed(self.options.group_id, tp)
            if committed is not None:
                self._positions[tp] = committed
            else:
                log = self._bus._logs[tp.topic][tp.partition]
                self._positions[tp] = log.base if self.options.from_beginning else log.end
        self._assignment = set(new)
        if added and self.options.on_assign:
            self.options.on_assign(added)

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        if self._closed:
            raise BusError("consumer is closed")
        deadline = time.monotonic() + timeout_s
        bus = self._bus
        while True:
            with bus._cond:
                pending = self._pending_assignment is not None
            if pending:
                self._apply_rebalance()  # callbacks run outside the bus lock, as in Kafka's poll()
            with bus._cond:
                out: list[Message] = []
                for tp in sorted(self._assignment - self._paused):
                    log = bus._logs[tp.topic][tp.partition]
                    pos = max(self._positions[tp], log.base)  # trimmed below: the oldest held, as Kafka resets
                    take = log.read(pos, max_records - len(out))
                    out.extend(take)
                    self._positions[tp] = pos + len(take)
                    if len(out) >= max_records:
                        break
                if out or bus._closed:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                bus._cond.wait(remaining)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        owned = {tp: o for tp, o in offsets.items() if tp in self._assignment}
        self._bus._commit(self.options.group_id, owned)

    def committed(self, tp: TopicPartition) -> int | None:
        with self._bus._cond:
            return self._bus._committed(self.options.group_id, tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused |= set(partitions) & self._assignment

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused -= set(partitions)

    def group_contact_age_s(self) -> float:
        return 0.0  # one process: the group is always reachable

    def lag(self) -> dict[TopicPartition, int]:
        with self._bus._cond:
            return {tp: self._bus._logs[tp.topic][tp.partition].end - self._positions[tp] for tp in self._assignment}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._leave(self)

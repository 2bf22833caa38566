"""Kafka transport over kafka-python.

Producer: ``acks=all`` with idempotence, so an acknowledged send is durable and a retried send is
not duplicated. Consumers: group members with auto-commit off; stages commit after processing.
Topics are created up front through the admin client with the configured partition count.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from monitor.core.bus.base import (
    Backlog,
    BusError,
    ClusterTooSmall,
    ConsumerOptions,
    Headers,
    Message,
    RecordMetadata,
    TopicPartition,
    encode_key,
)

if TYPE_CHECKING:
    from monitor.core.bus.settings import KafkaSettings

log = logging.getLogger(__name__)


def _tp(ktp: Any) -> TopicPartition:
    return TopicPartition(ktp.topic, ktp.partition)


def _ktp(tp: TopicPartition) -> KTopicPartition:
    return KTopicPartition(tp.topic, tp.partition)


class KafkaBus:
    name = "kafka"

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._common: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap_servers,
            "client_id": settings.client_id,
            "request_timeout_ms": settings.request_timeout_ms,
            **settings.security_options(),
        }

    # -- topics -----------------------------------------------------------------------------
    def _admin(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(**self._common)
        except KafkaError as err:
            raise BusError(f"cannot reach Kafka at {self.settings.bootstrap}: {err}") from err

    def ensure_topics(self, topics: Iterable[str], partitions: int | None = None, compacted: bool = False) -> None:
        admin = self._admin()
        configs: dict[str, str] = {"cleanup.policy": "compact"} if compacted else {}
        if self.settings.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.settings.min_insync_replicas)
        try:
            existing = set(admin.list_topics())
            wanted = [
                NewTopic(
                    t,
                    num_partitions=partitions or self.settings.partitions,
                    replication_factor=self.settings.replication_factor,
                    topic_configs=dict(configs),
                )
                for t in dict.fromkeys(topics)
                if t not in existing
            ]
            if wanted:
                self._check_cluster_size(admin)
                try:
                    admin.create_topics(wanted, timeout_ms=self.settings.request_timeout_ms)
                except TopicAlreadyExistsError:
                    pass  # raced with another process: fine
                log.info("created topics %s", [t.name for t in wanted])
        finally:
            admin.close()
        self._await_metadata(list(dict.fromkeys(topics)))

    def _check_cluster_size(self, admin: KafkaAdminClient) -> None:
        """A replication factor the cluster cannot hold fails here, with what to change, rather
        than as the broker's INVALID_REPLICATION_FACTOR."""
        brokers = len(admin.describe_cluster().get("brokers") or [])
        wanted = self.settings.replication_factor
        if brokers and wanted > brokers:
            raise ClusterTooSmall(
                f"kafka.replication_factor is {wanted} but the cluster at {self.settings.bootstrap} has "
                f"{brokers} broker{'s' if brokers != 1 else ''}: set kafka.replication_factor (and "
                f"kafka.min_insync_replicas) to at most {brokers}, or add brokers"
            )

    def _await_metadata(self, topics: list[str]) -> None:
        """Return once every topic's partitions are visible to clients.

        Topic creation is asynchronous: a consumer that joins its group before the partitions
        are in the metadata is assigned nothing until its next metadata refresh.
        """
        probe = KafkaConsumer(**self._common, enable_auto_commit=False)  # metadata only: no group
        try:
            deadline = time.monotonic() + self.settings.topic_ready_timeout_s
            missing = list(topics)
            while missing:
                probe.topics()  # always a fresh metadata fetch from the cluster
                missing = [t for t in missing if not probe.partitions_for_topic(t)]
                if not missing:
                    return
                if time.monotonic() > deadline:
                    raise BusError(
                        f"topics {missing} have no partition metadata after {self.settings.topic_ready_timeout_s}s"
                    )
                time.sleep(0.1)
        finally:
            probe.close()

    def partitions_for(self, topic: str) -> int:
        c = KafkaConsumer(**self._common, enable_auto_commit=False)  # metadata only: no group
        try:
            parts = c.partitions_for_topic(topic)
            if not parts:
                raise BusError(f"unknown topic {topic!r}")
            return len(parts)
        finally:
            c.close()

    def read_partition(self, topic: str, partition: int) -> list[Message]:
        c = KafkaConsumer(**self._common, group_id=None, enable_auto_commit=False)
        try:
            tp = KTopicPartition(topic, partition)
            c.assign([tp])
            c.seek_to_beginning(tp)
            end = c.end_offsets([tp])[tp]
            out: list[Message] = []
            deadline = time.monotonic() + self.settings.request_timeout_ms / 1000 * 10
            while c.position(tp) < end:
                if time.monotonic() > deadline:
                    raise BusError(f"could not read {topic}[{partition}] to its end")
                for records in c.poll(timeout_ms=500, max_records=5000).values():
                    out.extend(
                        Message(
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key,
                            r.value,
                            tuple((k, v) for k, v in (r.headers or [])),
                            r.timestamp,
                        )
                        for r in records
                        if r.offset < end
                    )
            return out
        except KafkaError as err:
            raise BusError(f"cannot read {topic}[{partition}]: {err}") from err
        finally:
            c.close(autocommit=False)

    def backlog_probe(self, group_id: str, topic: str) -> KafkaBacklogProbe:
        return KafkaBacklogProbe(KafkaConsumer(**self._common, group_id=group_id, enable_auto_commit=False), topic)

    def reachable(self, timeout_s: float = 2.0) -> bool:
        for server in self.settings.bootstrap_servers:
            host, _, port = server.rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
                    return True
            except OSError:
                continue
        return False

    # -- clients ----------------------------------------------------------------------------
    def producer(self) -> KafkaBusProducer:
        try:
            p = KafkaProducer(
                **self._common,
                acks="all",
                enable_idempotence=True,
                linger_ms=self.settings.linger_ms,
                batch_size=self.settings.batch_size,
                compression_type=self.settings.compression,
                max_request_size=self.settings.max_request_size,
                max_block_ms=self.settings.max_block_ms,
            )
        except KafkaError as err:
            raise BusError(f"cannot create Kafka producer for {self.settings.bootstrap}: {err}") from err
        return KafkaBusProducer(p, self.settings.buffer_memory)

    def consumer(self, topics: Iterable[str], options: ConsumerOptions) -> KafkaBusConsumer:
        cfg: dict[str, Any] = {
            **self._common,
            "group_id": options.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest" if options.from_beginning else "latest",
            "session_timeout_ms": self.settings.session_timeout_ms,
            "heartbeat_interval_ms": self.settings.heartbeat_interval_ms,
            "max_poll_interval_ms": self.settings.max_poll_interval_ms,
            "metadata_max_age_ms": self.settings.metadata_max_age_ms,
            **options.extra,
        }
        if options.client_id:
            cfg["client_id"] = options.client_id
        if options.sticky:
            cfg["partition_assignment_strategy"] = (StickyPartitionAssignor,)
        try:
            kc = KafkaConsumer(**cfg)
        except KafkaError as err:
            raise BusError(f"cannot create Kafka consumer for {self.settings.bootstrap}: {err}") from err
        return KafkaBusConsumer(kc, list(topics), options)

    def close(self) -> None:
        return None


class KafkaBacklogProbe:
    """A consumer that never subscribes (so never joins the group) and only reads its offsets."""

    def __init__(self, consumer: KafkaConsumer, topic: str) -> None:
        self._c = consumer
        self.topic = topic

    def backlog(self) -> Backlog | None:
        try:
            if self.topic not in self._c.topics():  # a fresh metadata fetch, not the cache
                return Backlog({})  # no such topic: nothing on its way
            parts = self._c.partitions_for_topic(self.topic) or set()
            tps = [KTopicPartition(self.topic, p) for p in sorted(parts)]
            if not tps:
                return None
            ends = self._c.end_offsets(tps)
            committed = [self._c.committed(tp) for tp in tps]
        except KafkaError as err:
            log.debug("backlog of %s unavailable: %s", self.topic, err)
            return None
        return Backlog(
            {tp.partition: max(0, ends[tp] - (c or 0)) for tp, c in zip(tps, committed)},
            committed=sum(c or 0 for c in committed),
        )

    def close(self) -> None:
        self._c.close(autocommit=False)


class _Delivery:
    def __init__(self, future: Any) -> None:
        self._future = future

    def get(self, timeout: float | None = None) -> RecordMetadata:
        try:
            md = self._future.get(timeout=timeout)
        except KafkaError as err:
            raise BusError(f"send not acknowledged: {err}") from err
        return RecordMetadata(md.topic, md.partition, md.offset)


class KafkaBusProducer:
    """kafka-python's producer with a memory bound: bytes sent but not yet acknowledged (or failed)
    are counted, and a send that would take them past ``buffer_bytes`` fails at once with a
    BusError (kafka-python 3 has no ``buffer_memory``; without this a long outage buffers without
    limit). The caller keeps such a story unacknowledged, so it is sent again later."""

    def __init__(self, producer: KafkaProducer, buffer_bytes: int = 32 * 1024 * 1024) -> None:
        self._p = producer
        self._limit = buffer_bytes
        self._buffered = 0
        self._lock = threading.Lock()

    def _release(self, size: int) -> None:
        with self._lock:
            self._buffered -= size

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> _Delivery:
        key_bytes = encode_key(key)
        size = len(value or b"") + len(key_bytes or b"")  # value None: a tombstone
        with self._lock:
            if self._buffered and self._buffered + size > self._limit:
                raise BusError(
                    f"send to {topic} refused: {self._buffered} bytes already wait for the broker "
                    f"(kafka.buffer_memory = {self._limit})"
                )
            self._buffered += size
        try:
            fut = self._p.send(topic, value=value, key=key_bytes, headers=list(headers or []), partition=partition)
        except KafkaError as err:
            self._release(size)
            raise BusError(f"send to {topic} failed: {err}") from err
        except BaseException:
            self._release(size)
            raise
        fut.add_both(lambda _result, size=size: self._release(size))
        return _Delivery(fut)

    def flush(self, timeout: float | None = None) -> None:
        try:
            self._p.flush(timeout=timeout)
        except KafkaError as err:
            raise BusError(f"flush failed: {err}") from err

    def close(self) -> None:
        self._p.close()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, options: ConsumerOptions) -> None:
        self._options = options

    def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked and self._options.on_revoke:
            self._options.on_revoke({_tp(t) for t in revoked})

    def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned and self._options.on_assign:
            self._options.on_assign({_tp(t) for t in assigned})


class KafkaBusConsumer:
    def __init__(self, consumer: KafkaConsumer, topics: list[str], options: ConsumerOptions) -> None:
        self._c = consumer
        self.topics = topics
        self.options = options
        consumer.subscribe(topics=topics, listener=_Listener(options))
        # Have the subscribed topics' partitions in this client's metadata before the first poll
        # joins the group: a leader that assigns without them gives its members nothing for
        # those topics, and kafka-python does not reliably rejoin when they arrive (KAFKA-3949).
        for topic in topics:
            consumer.partitions_for_topic(topic)

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Message]:
        try:
            batches = self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as err:
            raise BusError(f"poll failed: {err}") from err
        out: list[Message] = []
        for records in batches.values():
            for r in records:
                out.append(
                    Message(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        key=r.key,
                        value=r.value,
                        headers=tuple((k, v) for k, v in (r.headers or [])),
                        timestamp_ms=r.timestamp,
                    )
                )
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            self._c.commit({_ktp(tp): OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as err:
            raise BusError(f"commit failed: {err}") from err

    def committed(self, tp: TopicPartition) -> int | None:
        offset: int | None = self._c.committed(_ktp(tp))
        return offset

    def assignment(self) -> set[TopicPartition]:
        return {_tp(t) for t in self._c.assignment()}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._c.seek(_ktp(tp), offset)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.pause(*[_ktp(tp) for tp in partitions])

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._c.resume(*[_ktp(tp) for tp in partitions])

    def group_contact_age_s(self) -> float:
        hb = self._c._coordinator.heartbeat  # kafka-python's own view of the session
        return float(time.monotonic() - max(hb.last_receive, hb.last_reset))

    def lag(self) -> dict[TopicPartition, int]:
        assigned = list(self._c.assignment())
        if not assigned:
            return {}
        ends = self._c.end_offsets(assigned)
        return {_tp(t): max(0, ends[t] - self._c.position(t)) for t in assigned}

    def close(self) -> None:
        self._c.close(autocommit=False)

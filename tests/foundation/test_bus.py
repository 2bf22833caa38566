"""The bus contract, run on both transports: in-process (unit) and a real Kafka broker (integration)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime

import pytest

from monitor.core.bus.base import Bus, BusError, ClusterTooSmall, ConsumerOptions, Message, TopicPartition
from monitor.core.bus.codec import DeadLetterSink, RecordReader, next_offsets, send_record
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import DeadLetter, NewsItem, decode
from tests.waiting import wait_until


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request) -> Bus:
    if request.param == "memory":
        b: Bus = MemoryBus()
    else:
        from monitor.app.config import KafkaSettings
        from monitor.core.bus.kafka import KafkaBus

        b = KafkaBus(KafkaSettings(bootstrap=request.getfixturevalue("kafka_bootstrap"), session_timeout_ms=6000))
    yield b
    b.close()


def new_topic(bus: Bus, partitions: int = 3) -> str:
    name = f"t.{uuid.uuid4().hex[:10]}"
    bus.ensure_topics([name], partitions=partitions)
    return name


def drain(consumer, want: int, timeout_s: float = 60.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got.extend(consumer.poll(0.5))
    return got


def test_round_trip_of_10k_records_keeps_per_key_order(bus):
    topic = new_topic(bus)
    producer = bus.producer()
    sent = [(f"k{i % 13}", f"{i}".encode()) for i in range(10_000)]
    deliveries = [producer.send(topic, v, key=k) for k, v in sent]
    producer.flush(30)
    assert all(d.get(30).topic == topic for d in deliveries)
    consumer = bus.consumer([topic], ConsumerOptions(group_id=f"g-{uuid.uuid4().hex[:6]}"))
    got = drain(consumer, 10_000)
    consumer.close()
    assert len(got) == 10_000
    assert sorted(int(m.value) for m in got) == list(range(10_000))
    by_key: dict[bytes, list[int]] = {}
    for m in got:
        by_key.setdefault(m.key, []).append(int(m.value))
    assert all(vals == sorted(vals) for vals in by_key.values())  # per-key order holds
    assert len({m.partition for m in got}) == 3
    assert bus.partitions_for(topic) == 3


def test_two_group_members_share_three_partitions(bus):
    topic = new_topic(bus)
    group = f"g-{uuid.uuid4().hex[:6]}"
    producer = bus.producer()
    for i in range(600):
        producer.send(topic, str(i).encode(), key=str(i))
    producer.flush(30)

    seen: dict[str, list[Message]] = {"a": [], "b": []}
    assignments: dict[str, set[TopicPartition]] = {}
    consumers = {name: bus.consumer([topic], ConsumerOptions(group_id=group, client_id=name)) for name in seen}
    stop = threading.Event()

    def member(name: str) -> None:
        c = consumers[name]
        while not stop.is_set():
            batch = c.poll(0.3)
            seen[name].extend(batch)
            if batch:
                c.commit(next_offsets(batch))
            if c.assignment():
                assignments[name] = c.assignment()

    threads = [threading.Thread(target=member, args=(n,)) for n in seen]
    for t in threads:
        t.start()

    def shared() -> bool:  # every record read, and each member holding partitions of its own
        total = {m.value for msgs in seen.values() for m in list(msgs)}
        return len(total) == 600 and len(assignments) == 2 and not (assignments["a"] & assignments["b"])

    try:
        wait_until(shared, 60, "600 records read by two members on disjoint partitions", every_s=0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
        for c in consumers.values():
            c.close()
    assert {int(m.value) for msgs in seen.values() for m in msgs} == set(range(600))
    assert assignments["a"] and assignments["b"], assignments
    assert not (assignments["a"] & assignments["b"])
    assert assignments["a"] | assignments["b"] == {TopicPartition(topic, p) for p in range(3)}


def test_uncommitted_work_is_read_again_after_a_restart(bus):
    topic = new_topic(bus, partitions=1)
    group = f"g-{uuid.uuid4().hex[:6]}"
    producer = bus.producer()
    for i in range(100):
        producer.send(topic, str(i).encode())
    producer.flush(30)

    first = bus.consumer([topic], ConsumerOptions(group_id=group))
    got = drain(first, 100)
    assert len(got) == 100
    first.commit(next_offsets(got[:40]))  # processed 40, then "crashes" without committing the rest
    first.close()

    second = bus.consumer([topic], ConsumerOptions(group_id=group))
    again = drain(second, 60)
    second.close()
    assert [int(m.value) for m in again] == list(range(40, 100))  # nothing lost, nothing skipped


def test_malformed_records_go_to_the_dlq_and_the_consumer_keeps_going(bus):
    topic, dlq_topic = new_topic(bus), new_topic(bus, partitions=1)
    producer = bus.producer()
    good = [
        NewsItem(id=f"id{i}", source="wire", title=f"headline {i}", published_at=datetime(2024, 1, 1)) for i in range(3)
    ]
    send_record(producer, topic, good[0], key="A")
    producer.send(topic, b"{definitely not json", key="A")
    send_record(producer, topic, good[1], key="A")
    producer.send(topic, b'{"id": "", "source": "x"}', key="A")
    send_record(producer, topic, good[2], key="A")
    producer.flush(30)

    reader = RecordReader(NewsItem, DeadLetterSink(producer, dlq_topic, stage="test"))
    consumer = bus.consumer([topic], ConsumerOptions(group_id=f"g-{uuid.uuid4().hex[:6]}"))
    messages = drain(consumer, 5)
    decoded = [rec for _msg, rec in reader.iter_decoded(messages)]
    consumer.commit(next_offsets(messages))
    consumer.close()
    assert [r.id for r in decoded] == ["id0", "id1", "id2"]

    dlq = bus.consumer([dlq_topic], ConsumerOptions(group_id=f"g-{uuid.uuid4().hex[:6]}"))
    letters = [decode(DeadLetter, m.value) for m in drain(dlq, 2)]
    dlq.close()
    assert len(letters) == 2
    assert letters[0].payload == b"{definitely not json" and "Invalid JSON" in letters[0].reason
    assert "id: String should have at least 1 character" in letters[1].reason
    assert {ltr.source_topic for ltr in letters} == {topic}
    assert sorted(ltr.source_offset for ltr in letters) == sorted(
        m.offset for m in messages if m.value.startswith(b"{d") or b'"id": ""' in m.value
    )


def test_unknown_topic_is_a_clear_error():
    with pytest.raises(BusError, match="unknown topic"):
        MemoryBus().producer().send("nope", b"x")


def test_memory_pause_resume_and_lag():
    bus = MemoryBus(default_partitions=1)
    bus.ensure_topics(["t"])
    p = bus.producer()
    for i in range(5):
        p.send("t", str(i).encode())
    c = bus.consumer(["t"], ConsumerOptions(group_id="g"))
    assert c.poll(0.1, max_records=2) and c.lag() == {TopicPartition("t", 0): 3}
    c.pause(c.assignment())
    assert c.poll(0.05) == []
    c.resume(c.assignment())
    assert [int(m.value) for m in c.poll(0.1)] == [2, 3, 4]


@pytest.mark.kafka
def test_a_replication_factor_the_cluster_cannot_hold_is_a_clear_error(kafka_bootstrap: str) -> None:
    from monitor.core.bus.kafka import KafkaBus
    from monitor.core.bus.settings import KafkaSettings

    bus = KafkaBus(KafkaSettings(bootstrap=kafka_bootstrap, replication_factor=3, min_insync_replicas=2))
    topic = f"rf3-{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(ClusterTooSmall, match="replication_factor is 3 but the cluster .* has 1 broker"):
            bus.ensure_topics([topic])
    finally:
        bus.close()


def test_min_insync_replicas_above_the_copies_is_refused() -> None:
    from pydantic import ValidationError

    from monitor.core.bus.settings import KafkaSettings

    with pytest.raises(ValidationError, match="exceeds replication_factor"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)


class TooSmall:
    """A bus whose cluster never gets enough brokers."""

    name = "kafka"
    calls = 0

    def ensure_topics(self, topics, partitions=None, compacted=False):
        self.calls += 1
        raise ClusterTooSmall("kafka.replication_factor is 3 but the cluster at x has 1 broker")


def test_a_daemon_waits_a_while_for_brokers_to_join_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.core.bus import factory
    from monitor.core.bus.settings import KafkaSettings, TopicSettings

    fake = TooSmall()
    clock = {"now": 0.0}
    monkeypatch.setattr(factory, "KafkaBus", lambda settings: fake)
    monkeypatch.setattr(factory.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(factory.time, "sleep", lambda s: clock.__setitem__("now", clock["now"] + s))

    class Settings:
        kafka = KafkaSettings(bootstrap="127.0.0.1:9", replication_factor=3)
        topics = TopicSettings()

    with pytest.raises(ClusterTooSmall):
        factory.make_bus(Settings(), wait=True)
    assert fake.calls > 1  # retried while brokers might still be joining ...
    assert clock["now"] <= factory.CLUSTER_ASSEMBLY_S + 30  # ... for about CLUSTER_ASSEMBLY_S, not for ever

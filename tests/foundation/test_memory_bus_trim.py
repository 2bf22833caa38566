"""The in-process bus of a long-running embedded daemon stays bounded (issue #26, item 1): it
forgets what every consumer group reading a topic has committed, keeps only the newest records of
a topic nobody reads, and loses nothing a group has not committed yet."""

from __future__ import annotations

import tracemalloc

from monitor.app.config import load_settings
from monitor.core.bus.base import ConsumerOptions, TopicPartition
from monitor.core.bus.factory import make_bus
from monitor.core.bus.memory import TRIM_CHUNK, MemoryBus
from tests.bus_reading import read_all


def _drain(consumer, commit: bool = True) -> list:
    out = []
    while batch := consumer.poll(0.01, max_records=500):
        out += batch
        if commit:
            consumer.commit({TopicPartition(m.topic, m.partition): m.offset + 1 for m in batch})
    return out


def test_in_process_bus_trims_records_every_group_committed() -> None:
    bus = MemoryBus(1, trim=True, max_records=1000)
    bus.ensure_topics(["t"])
    fast = bus.consumer(["t"], ConsumerOptions("fast", from_beginning=True))
    slow = bus.consumer(["t"], ConsumerOptions("slow", from_beginning=True))
    producer = bus.producer()
    for i in range(5 * TRIM_CHUNK):
        producer.send("t", f"{i}".encode(), partition=0)
    assert len(_drain(fast)) == 5 * TRIM_CHUNK
    assert bus.retained()["t"] == 5 * TRIM_CHUNK  # 'slow' has committed nothing: all kept
    first = slow.poll(0.01, max_records=2 * TRIM_CHUNK)
    slow.commit({TopicPartition("t", 0): first[-1].offset + 1})
    assert bus.retained()["t"] == 3 * TRIM_CHUNK and bus.trimmed == 2 * TRIM_CHUNK
    rest = _drain(slow)  # nothing it had not committed was lost, offsets still count from 0
    assert [m.offset for m in first + rest] == list(range(5 * TRIM_CHUNK))
    assert bus.end_offsets("t") == {TopicPartition("t", 0): 5 * TRIM_CHUNK}
    assert bus.retained()["t"] == 0
    # a restarted member of a group resumes at its committed offset, past the trimmed records
    slow.close()
    again = bus.consumer(["t"], ConsumerOptions("slow", from_beginning=True))
    producer.send("t", b"new", partition=0)
    assert [m.value for m in _drain(again)] == [b"new"]


def test_topic_nobody_reads_keeps_its_newest_records() -> None:
    bus = MemoryBus(1, trim=True, max_records=1000)
    bus.ensure_topics(["dlq"])
    producer = bus.producer()
    for i in range(5000):
        producer.send("dlq", f"{i}".encode(), partition=0)
    held = read_all(bus, "dlq")
    assert 1000 <= len(held) <= 1000 + TRIM_CHUNK and held[-1].value == b"4999"
    assert [m.offset for m in held] == list(range(5000 - len(held), 5000))


def test_tests_bus_keeps_everything_by_default() -> None:
    bus = MemoryBus(1)
    bus.ensure_topics(["t"])
    c = bus.consumer(["t"], ConsumerOptions("g", from_beginning=True))
    for i in range(3 * TRIM_CHUNK):
        bus.producer().send("t", b"x", partition=0)
    _drain(c)
    assert len(read_all(bus, "t")) == 3 * TRIM_CHUNK


def test_embedded_daemon_bus_memory_levels_off_under_a_steady_stream() -> None:
    """What `finsent run` without a broker builds: 40,000 records of 1 KiB through one group that
    commits as it goes leave the bus holding a few chunks, not 40 MB."""
    bus = make_bus(load_settings(None))
    topic = "news.raw"
    c = bus.consumer([topic], ConsumerOptions("classify", from_beginning=True))
    producer = bus.producer()
    payload = b"x" * 1024
    tracemalloc.start()
    try:
        peak_after_warmup = None
        for round_ in range(20):
            for _ in range(2000):
                producer.send(topic, payload, key=b"k")
            _drain(c)
            current, _ = tracemalloc.get_traced_memory()
            if round_ == 4:
                peak_after_warmup = current
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bus.retained()[topic] <= 3 * TRIM_CHUNK
    assert current - peak_after_warmup < 2_000_000  # flat after the warm-up (no growth per record)

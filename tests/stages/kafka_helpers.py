"""Reading whole topics from the real broker, for assertions."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from monitor.core.bus.base import Message
from tests.waiting import wait_until  # noqa: F401 - re-exported: the Kafka tests import it from here


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Message]:
    """Every record on ``topic`` up to its end offsets at call time, partition by partition."""
    c = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, group_id=None)
    try:
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end")
            for records in c.poll(timeout_ms=500, max_records=5000).values():
                for r in records:
                    if r.offset < ends[TopicPartition(r.topic, r.partition)]:
                        out.append(
                            Message(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp)
                        )
        return out
    finally:
        c.close()


def final_points(bootstrap: str, topic: str) -> dict:
    """The last TrendPoint per (key, window, window_start) on ``topic`` (revisions replace points)."""
    from monitor.core.records import TrendPoint, decode

    last: dict = {}
    for m in read_topic(bootstrap, topic, timeout_s=60):
        p = decode(TrendPoint, m.value)
        last[(p.key, p.window, p.window_start)] = p
    return last

"""deploy/kafka/kafka-local: start, a plain kafka-python round trip, stop, and no Java left behind."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from tests.conftest import KAFKA_LOCAL

pytestmark = pytest.mark.kafka


def java_pids_for(state: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"{state}/server.properties"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_start_round_trip_1000_messages_and_stop_leaves_no_java(tmp_path):
    state = str(tmp_path / "broker")
    env = {**os.environ, "KAFKA_LOCAL_STATE": state}
    started = subprocess.run([str(KAFKA_LOCAL), "start"], env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    bootstrap = started.stdout.strip().splitlines()[-1].removeprefix("bootstrap=")
    try:
        status = subprocess.run([str(KAFKA_LOCAL), "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0 and f"bootstrap={bootstrap}" in status.stdout
        again = subprocess.run([str(KAFKA_LOCAL), "start"], env=env, capture_output=True, text=True, timeout=60)
        assert again.stdout.strip().splitlines()[-1] == f"bootstrap={bootstrap}"  # idempotent

        topic = f"rt-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for i in range(1000):
            producer.send(topic, str(i).encode())
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id="rt", consumer_timeout_ms=15000
        )
        values = set()
        deadline = time.monotonic() + 60
        for record in consumer:
            values.add(int(record.value))
            if len(values) == 1000 or time.monotonic() > deadline:
                break
        consumer.close()
        assert values == set(range(1000))
        assert java_pids_for(state)
    finally:
        stopped = subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0
    assert java_pids_for(state) == []
    status = subprocess.run([str(KAFKA_LOCAL), "status"], env=env, capture_output=True, text=True)
    assert status.returncode == 3 and "not running" in status.stdout

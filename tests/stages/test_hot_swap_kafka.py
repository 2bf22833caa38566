"""A promotion while 2,000 stories stream through the real broker: nothing lost or doubled, one clean switch."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

import pytest

from models.engine import InferenceEngine
from models.registry import Registry
from monitor.core.bus.kafka import KafkaBus
from monitor.core.records import ScoredItem, decode
from tests.models.fixtures import trained_tiny_home
from tests.models.test_engine import _clone_version
from tests.stages.kafka_helpers import read_topic, wait_until
from tests.stages.test_classify_kafka import Worker, produce_news

pytestmark = pytest.mark.kafka


class RecordingEngine:
    """The real engine, recording the model version of every prediction of every batch."""

    def __init__(self, engine: InferenceEngine) -> None:
        self._engine = engine
        self.batches: list[set[str]] = []
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self._engine.version

    def predict(self, texts, targets=None):
        preds = self._engine.predict(texts)
        with self._lock:
            self.batches.append({p.model_version for p in preds})
        return preds

    def count_tokens(self, texts):
        return self._engine.count_tokens(texts)

    def reload_if_changed(self) -> bool:
        return self._engine.reload_if_changed()

    def versions_seen(self) -> set[str]:
        with self._lock:
            return set().union(*self.batches) if self.batches else set()


def test_promotion_under_load_switches_version_at_a_batch_boundary(kafka_settings, kafka_bootstrap, tmp_path):
    home = trained_tiny_home(tmp_path)
    settings = kafka_settings(
        home=str(home),
        kafka={"partitions": 3},
        classifier={"max_batch_size": 64, "max_delay_ms": 20, "device": "cpu"},
        classify={"reload_interval": 0.1, "max_in_flight": 400, "poll_max_records": 200},
    )
    registry = Registry.from_settings(settings)
    champion = registry.current()
    challenger = _clone_version(registry, champion)
    bus = KafkaBus(settings.kafka)
    bus.ensure_topics(settings.topics.all(), partitions=3)
    engine = RecordingEngine(InferenceEngine.from_settings(settings))
    worker = Worker(settings, bus, engine, "classify").start()
    try:
        produce_news(bus, settings.topics.raw, range(1000))
        wait_until(lambda: worker.scored() >= 300, 120, "300 stories scored by the champion")
        registry.promote(challenger)
        wait_until(lambda: challenger in engine.versions_seen(), 60, "a batch scored by the challenger")
        produce_news(bus, settings.topics.raw, range(1000, 2000))
        wait_until(lambda: worker.scored() >= 2000, 180, "all 2000 stories scored")
        messages = read_topic(kafka_bootstrap, settings.topics.scored)
    finally:
        worker.close()
    scored = [(m.partition, m.offset, decode(ScoredItem, m.value)) for m in messages]
    ids = Counter(s.id for _, _, s in scored)
    assert set(ids) == {f"s{i}" for i in range(2000)} and set(ids.values()) == {1}  # exactly once each
    # every batch was scored by one version, and the switch happened once, between two batches
    assert all(len(b) == 1 for b in engine.batches)
    order = [next(iter(b)) for b in engine.batches]
    switch = order.index(challenger)
    assert set(order[:switch]) == {champion} and set(order[switch:]) == {challenger}
    # each record carries its version; per partition, the champion's records all precede the challenger's
    by_partition = defaultdict(list)
    for partition, offset, s in sorted(scored, key=lambda t: (t[0], t[1])):
        by_partition[partition].append(s.model_version)
    for versions in by_partition.values():
        first_new = versions.index(challenger) if challenger in versions else len(versions)
        assert set(versions[:first_new]) <= {champion} and set(versions[first_new:]) <= {challenger}
    assert {s.model_version for _, _, s in scored} == {champion, challenger}
    assert read_topic(kafka_bootstrap, settings.topics.dlq) == []

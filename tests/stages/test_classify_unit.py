"""The classify worker on the in-process bus: bisection, back-pressure, commits, rebalance."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from monitor.core.bus.base import ConsumerOptions, TopicPartition
from monitor.core.bus.codec import send_record
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import ScoredItem, decode
from monitor.stages.classify import ClassifyStage
from monitor.stages.scoring import EngineFailure, score_isolating_poison
from tests.bus_reading import read_all
from tests.stages.helpers import news
from tests.stages.keyword_engine import KeywordEngine
from tests.stages.test_pipeline_memory import wait_for


def test_bisection_isolates_each_poison_story():
    engine = KeywordEngine(poison=["poison"])
    items = [news(i, title="poison story" if i in (3, 12) else f"fine story {i}") for i in range(16)]
    out = score_isolating_poison(engine.predict, items)
    assert [i for i, _ in out.rejected] == [3, 12]
    assert [i for i, _ in out.scored] == [i for i in range(16) if i not in (3, 12)]
    assert out.engine_calls < 16  # log-many calls, not one per story


def test_a_broken_engine_is_not_mistaken_for_poison():
    def broken(texts):
        raise MemoryError("oom")

    with pytest.raises(EngineFailure):
        score_isolating_poison(broken, [news(i) for i in range(4)])


class GatedEngine(KeywordEngine):
    """Records the stage's buffer and pause state at every engine call."""

    def __init__(self) -> None:
        super().__init__()
        self.stage: ClassifyStage | None = None
        self.observed: list[tuple[int, float]] = []

    def predict(self, texts, targets=None):
        assert self.stage is not None
        self.observed.append((len(self.stage._buffer) + len(texts), self.stage.metrics.paused._value.get()))
        return super().predict(texts)


def run_stage(stage: ClassifyStage):
    stop = threading.Event()
    t = threading.Thread(target=stage.run, args=(stop,), daemon=True)
    t.start()
    return stop, t


def test_backpressure_bounds_in_flight_and_commits_everything(make_settings):
    settings = make_settings(classifier={"max_batch_size": 4, "max_delay_ms": 1000}, classify={"max_in_flight": 8})
    bus = MemoryBus(default_partitions=3)
    bus.ensure_topics(settings.topics.all())
    p = bus.producer()
    for i in range(60):
        item = news(i, tickers=(f"T{i % 5}",))
        send_record(p, settings.topics.raw, item, key=item.primary_key)
    engine = GatedEngine()
    registry = CollectorRegistry()
    stage = ClassifyStage(settings, bus, engine, registry)
    engine.stage = stage
    stop, t = run_stage(stage)
    try:
        wait_for(lambda: len(read_all(bus, settings.topics.scored)) == 60, what="60 scored")
        wait_for(
            lambda: (
                stage._consumer is not None
                and all(
                    stage._consumer.committed(TopicPartition(settings.topics.raw, part))
                    == bus.end_offsets(settings.topics.raw)[TopicPartition(settings.topics.raw, part)]
                    for part in range(3)
                )
            ),
            what="every offset committed",
        )
    finally:
        stop.set()
        t.join(10)
    assert max(n for n, _ in engine.observed) <= 8  # never more than max_in_flight read
    assert any(paused == 1 for _, paused in engine.observed)  # fetching paused while the buffer was full
    assert registry.get_sample_value("finsent_classify_paused") == 0
    ids = [decode(ScoredItem, m.value).id for m in read_all(bus, settings.topics.scored)]
    assert sorted(ids) == sorted(f"s{i}" for i in range(60))
    assert max(engine.batch_sizes) == 4
    # keyed by the primary ticker, like news.raw
    assert all(
        m.key == decode(ScoredItem, m.value).item.primary_key.encode() for m in read_all(bus, settings.topics.scored)
    )


def test_revoked_partitions_release_their_uncommitted_buffer(make_settings):
    settings = make_settings(classifier={"max_delay_ms": 60_000, "max_batch_size": 256})
    bus = MemoryBus(default_partitions=3)
    bus.ensure_topics(settings.topics.all())
    p = bus.producer()
    for i in range(30):
        item = news(i, tickers=(f"T{i % 6}",))
        send_record(p, settings.topics.raw, item, key=item.primary_key)
    registry = CollectorRegistry()
    stage = ClassifyStage(settings, bus, KeywordEngine(), registry)
    stop, t = run_stage(stage)
    try:
        wait_for(lambda: len(stage._buffer) == 30, what="30 buffered stories")  # waiting for the deadline
        other = bus.consumer([settings.topics.raw], ConsumerOptions(group_id=settings.classify.group_id))
        wait_for(lambda: registry.get_sample_value("finsent_classify_rebalance_dropped_total") > 0, what="a rebalance")
        kept = {e.msg.partition for e in stage._buffer}
        assert kept == {tp.partition for tp in stage._assignment()}
        # The other member reads the released partitions from the committed offset (nothing lost).
        got = []
        wait_for(lambda: got.extend(other.poll(0.1)) or len(got) == 30 - len(stage._buffer), what="redelivery")
        other.close()
    finally:
        stop.set()
        t.join(10)

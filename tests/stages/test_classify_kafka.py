"""Classify workers against the real broker: a consumer group that loses nothing, poison isolated."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from monitor.core.bus.codec import send_record
from monitor.core.bus.kafka import KafkaBus
from monitor.core.records import DeadLetter, ScoredItem, decode
from monitor.stages.classify import ClassifyStage
from tests.stages.helpers import news
from tests.stages.kafka_helpers import read_topic, wait_until
from tests.stages.keyword_engine import KeywordEngine

pytestmark = pytest.mark.kafka

TICKERS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "META", "GOOG")


class Worker:
    def __init__(self, settings, bus, engine, name):
        self.stage = ClassifyStage(settings, bus, engine, CollectorRegistry(), name=name)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self):
        try:
            self.stage.run(self.stop)
        except BaseException as err:
            self.error = err

    def start(self):
        self.thread.start()
        return self

    def assigned(self) -> int:
        return len(self.stage._assignment()) if self.stage._running else 0

    def scored(self) -> float:
        return self.stage.metrics.scored._value.get()

    def close(self):
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), f"{self.stage.name} did not stop"
        assert self.error is None, f"{self.stage.name} crashed: {self.error!r}"


def produce_news(bus, topic, ids, poison=()):
    p = bus.producer()
    deliveries = []
    for i in ids:
        title = f"{TICKERS[i % 7]} poison headline" if i in poison else f"{TICKERS[i % 7]} beats estimates {i}"
        item = news(i, t=i, title=title, tickers=(TICKERS[i % 7],))
        deliveries.append(send_record(p, topic, item, key=item.primary_key))
    for d in deliveries:
        d.get(timeout=30)
    p.close()


def test_two_workers_in_one_group_score_every_story(kafka_settings, kafka_bootstrap):
    settings = kafka_settings(
        kafka={"partitions": 3, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        classifier={"max_batch_size": 64, "max_delay_ms": 20},
        classify={"max_in_flight": 300, "poll_max_records": 200},
    )
    bus = KafkaBus(settings.kafka)
    bus.ensure_topics(settings.topics.all(), partitions=3)
    engine = KeywordEngine()
    a = Worker(settings, bus, engine, "classify-a").start()
    b = None
    try:
        produce_news(bus, settings.topics.raw, range(1000))
        wait_until(lambda: a.scored() > 200, 60, "worker a to start scoring")
        b = Worker(settings, bus, engine, "classify-b").start()  # joins mid-stream: a rebalance
        wait_until(
            lambda: a.assigned() and b.assigned() and a.assigned() + b.assigned() == 3,
            60,
            "the group to split 3 partitions between 2 workers",
        )
        produce_news(bus, settings.topics.raw, range(1000, 2000))

        def scored_ids():
            return Counter(decode(ScoredItem, m.value).id for m in read_topic(kafka_bootstrap, settings.topics.scored))

        ids = wait_until(lambda: (c := scored_ids()) and len(c) == 2000 and c, 120, "2000 distinct scored ids")
    finally:
        a.close()
        if b:
            b.close()
    assert set(ids) == {f"s{i}" for i in range(2000)}
    # duplicates only come from at-least-once redelivery around the rebalance
    assert sum(ids.values()) - 2000 <= 2 * settings.classify.max_in_flight
    assert a.scored() > 0 and b.scored() > 0
    assert a.scored() + b.scored() == sum(ids.values())
    assert read_topic(kafka_bootstrap, settings.topics.dlq) == []


def test_poison_story_is_isolated_to_the_dlq(kafka_settings, kafka_bootstrap):
    settings = kafka_settings(classifier={"max_batch_size": 16, "max_delay_ms": 200})
    bus = KafkaBus(settings.kafka)
    bus.ensure_topics(settings.topics.all())
    engine = KeywordEngine(poison=["poison"])
    produce_news(bus, settings.topics.raw, range(40), poison={17})
    p = bus.producer()
    p.send(settings.topics.raw, b'{"kind": "news_item", "id": ""}', key=b"AAPL").get(30)
    w = Worker(settings, bus, engine, "classify").start()
    try:
        wait_until(lambda: len(read_topic(kafka_bootstrap, settings.topics.dlq)) >= 2, 60, "two dead letters")
        scored = wait_until(
            lambda: (
                (s := {decode(ScoredItem, m.value).id for m in read_topic(kafka_bootstrap, settings.topics.scored)})
                and len(s) >= 39
                and s
            ),
            60,
            "39 scored stories",
        )
    finally:
        w.close()
    assert scored == {f"s{i}" for i in range(40)} - {"s17"}
    letters = [decode(DeadLetter, m.value) for m in read_topic(kafka_bootstrap, settings.topics.dlq)]
    poison = [x for x in letters if x.reason.startswith("classifier failed")]
    assert len(poison) == 1 and decode(type(news(0)), poison[0].payload).id == "s17"
    assert poison[0].source_topic == settings.topics.raw and poison[0].stage == "classify"
    assert [x.reason.split(":")[0] for x in letters if x not in poison] == ["news_item"]
    assert max(engine.batch_sizes) > 1  # neighbours were scored in batches, not one by one
    assert w.stage.metrics.dead_letters.labels("classifier")._value.get() == 1

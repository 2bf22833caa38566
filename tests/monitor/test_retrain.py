"""Labels are collected durably and a retrain runs only when enough fresh ones arrived."""

from __future__ import annotations

import threading
import time

from monitor.bus.codec import send_record
from monitor.bus.memory import MemoryBus
from monitor.component import Context
from monitor.records import LabelRecord
from monitor.retrain import LabelCollector, LabelStore, retrain_once


def test_label_store_dedups_by_task_and_text_and_counts_fresh_labels(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    store.add([LabelRecord(task="sentiment", text="Oil slumps", label="neutral"),
               LabelRecord(task="topic", text="Oil slumps", label="Energy | Oil")])
    store.add([LabelRecord(task="sentiment", text="Oil slumps", label="negative")])  # corrected label
    assert sorted(store.all()) == [("sentiment", "Oil slumps", "negative"), ("topic", "Oil slumps", "Energy | Oil")]
    assert store.new_since_last_run() == 2
    store.mark_used()
    assert store.new_since_last_run() == 0
    store.add([LabelRecord(task="sentiment", text="Gold rallies", label="positive")])
    store.close()
    reopened = LabelStore(tmp_path / "labels.db")
    assert reopened.new_since_last_run() == 1 and len(reopened.all()) == 3


def test_collector_stores_labels_from_the_topic_and_dead_letters_garbage(make_settings):
    settings = make_settings()
    bus = MemoryBus()
    bus.ensure_topics(settings.topics.all())
    store = LabelStore(settings.state_dir / "labels.db")
    producer = bus.producer()
    send_record(producer, settings.topics.labels, LabelRecord(task="sentiment", text="Shares sink", label="negative"))
    producer.send(settings.topics.labels, b"not a label")
    collector = LabelCollector(Context(settings=settings, bus=bus), store)
    stop = threading.Event()
    t = threading.Thread(target=collector.run, args=(stop,))
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not store.all():
        time.sleep(0.05)
    stop.set()
    t.join(5)
    assert store.all() == [("sentiment", "Shares sink", "negative")]
    assert len(bus.read_all(settings.topics.dlq)) == 1


def test_retrain_waits_for_enough_fresh_labels(make_settings):
    settings = make_settings(retrain={"min_new_labels": 3})
    store = LabelStore(settings.state_dir / "labels.db")
    store.add([LabelRecord(task="sentiment", text=f"t{i}", label="neutral") for i in range(2)])
    calls = []
    outcome = retrain_once(settings, store, train=lambda *a, **k: calls.append(k))
    assert not outcome.trained and "2 new labels" in outcome.reason and calls == []

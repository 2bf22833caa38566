"""Label intake: HTTP, files and the topic; de-duplication, conflict rule, all-or-nothing batches."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from monitor.core.bus.codec import send_record
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import LabelRecord, utcnow
from monitor.learning.labels import (
    LabelCollector,
    LabelPublisher,
    LabelStore,
    Vote,
    default_label_group,
    labels_router,
    resolve,
)
from monitor.learning.metrics import RetrainMetrics
from tests.bus_reading import read_all
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-labels"
READ_TOKEN = "read-only-token-0123"


def _vote(text, label, labeller, task="sentiment", at=None):
    return Vote(task, text, label, labeller, "test", None, at or utcnow())


def test_store_dedups_per_labeller_and_resolves_majority_then_latest(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    r = store.add([_vote("Oil slumps", "neutral", "ann"), _vote("Oil slumps", "negative", "bob")])
    assert (r.inserted, r.updated, r.unchanged) == (2, 0, 0)
    # tie 1:1 -> the latest vote (bob's) wins
    assert [(x.text, x.label) for x in store.resolved()] == [("Oil slumps", "negative")]
    # ann re-sends the same label: nothing new; then changes her mind: her vote is replaced, not added
    assert store.add([_vote("Oil slumps", "neutral", "ann")]).unchanged == 1
    assert store.add([_vote("Oil slumps", "negative", "ann")]).updated == 1
    assert len(store.votes()) == 2
    # majority beats recency: two negatives against a later neutral
    store.add([_vote("Oil slumps", "neutral", "cy")])
    assert store.resolved()[0].label == "negative" and store.resolved()[0].votes == {"negative": 2, "neutral": 1}
    assert store.new_since_last_run() == 3  # ann's insert + her change counted once, bob, cy
    store.mark_used()
    assert store.new_since_last_run() == 0
    store.add([_vote("Gold rallies", "positive", "ann")])
    store.close()
    reopened = LabelStore(tmp_path / "labels.db")
    assert reopened.new_since_last_run() == 1 and len(reopened.resolved()) == 2
    v = reopened.votes()[-1]
    assert v["labeller"] == "ann" and v["source"] == "test" and v["received_at"]


def test_resolve_tie_goes_to_the_later_labelled_at():
    votes = [
        {"task": "sentiment", "text": "t", "label": "positive", "labelled_at": "2026-01-02", "seq": 1},
        {"task": "sentiment", "text": "t", "label": "negative", "labelled_at": "2026-01-01", "seq": 2},
    ]
    assert resolve(votes)[0].label == "positive"


def _app(store, stories):
    """The daemon's app: the labels router behind the daemon's authentication (monitor.app.auth)."""
    return build_app_with(labels_router(store, stories.get))


def build_app_with(router):
    from prometheus_client import CollectorRegistry

    from monitor.app.auth import HttpAuthSettings, TokenSettings
    from monitor.app.config import HttpSettings
    from monitor.app.http import build_app
    from monitor.core.health import Health

    auth = HttpAuthSettings(
        tokens=[
            TokenSettings(name="desk", value=TOKEN, scopes=["write"]),
            TokenSettings(name="viewer", value=READ_TOKEN, scopes=["read"]),
        ]
    )
    return build_app(Health(), CollectorRegistry(), [router], HttpSettings(auth=auth))


@pytest.fixture
def client(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    with TestClient(_app(store, {"s1": "ACME beats estimates"}), base_url="http://127.0.0.1") as c:
        yield c, store
    store.close()


def test_post_labels_single_batch_and_story_lookup(client):
    c, store = client
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = c.post(
        "/labels", json={"task": "sentiment", "text": "Oil slumps", "label": "Bearish", "labeller": "ann"}, headers=auth
    )
    assert r.status_code == 200 and r.json()["inserted"] == 1
    r = c.post(
        "/labels",
        headers=auth,
        json={
            "labels": [
                {"task": "sentiment", "story_id": "s1", "label": 1, "labeller": "ann"},  # dataset id 1 = Bullish
                {"task": "topic", "text": "Oil slumps", "label": "energy | oil", "labeller": "bob"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    votes = {(v["task"], v["text"]): v for v in store.votes()}
    assert votes[("sentiment", "Oil slumps")]["label"] == "negative"
    assert votes[("sentiment", "ACME beats estimates")]["label"] == "positive"
    assert votes[("sentiment", "ACME beats estimates")]["item_id"] == "s1"
    assert votes[("topic", "Oil slumps")]["label"] == "Energy | Oil"
    assert {v["source"] for v in votes.values()} == {"http:desk"}


def test_post_labels_rejects_the_whole_batch_naming_every_bad_row(client):
    c, store = client
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = c.post(
        "/labels",
        headers=auth,
        json=[
            {"task": "sentiment", "text": "fine", "label": "positive", "labeller": "ann"},
            {"task": "sentiment", "text": "bad label", "label": "meh", "labeller": "ann"},
            {"task": "sentiment", "story_id": "nope", "label": "positive", "labeller": "ann"},
            {"task": "colour", "text": "x", "label": "red", "labeller": "ann"},
            {"task": "sentiment", "text": "no labeller", "label": "positive"},
        ],
    )
    assert r.status_code == 422
    body = r.json()
    assert [e["row"] for e in body["errors"]] == [1, 2, 3, 4]
    assert "unknown sentiment label 'meh'" in body["errors"][0]["error"]
    assert "unknown story 'nope'" in body["errors"][1]["error"]
    assert "labeller" in body["errors"][3]["error"]
    assert store.votes() == []  # all or nothing


def test_post_labels_needs_a_write_token(client):
    c, store = client
    body = {"task": "sentiment", "text": "x", "label": "positive", "labeller": "ann"}
    assert c.post("/labels", json=body).status_code == 401
    assert c.post("/labels", json=body, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    assert c.post("/labels", json=body, headers={"Authorization": f"Bearer {READ_TOKEN}"}).status_code == 403
    assert store.votes() == []


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "FINSENT_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "monitor.app.cli", *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )


def test_cli_import_export_and_bad_rows(tmp_path):
    home = tmp_path / "home"
    good = tmp_path / "good.csv"
    good.write_text(
        'task,label,text,labeller\nsentiment,negative,"Shares sink, badly",ann\n'
        "topic,Dividend,ACME raises its dividend,\n"
    )
    proc = _cli(home, "labels", "import", str(good), "--labeller", "desk")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["inserted"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"task": "sentiment", "label": "positive", "text": "ok", "labeller": "ann"}\n'
        '{"task": "sentiment", "label": "great", "text": "x", "labeller": "ann"}\n'
        "not json\n"
        '{"task": "sentiment", "label": "positive", "labeller": "ann"}\n'
    )
    proc = _cli(home, "labels", "import", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "row 3: not JSON" in proc.stderr
    bad.write_text(
        '{"task": "sentiment", "label": "positive", "text": "ok", "labeller": "ann"}\n'
        '{"task": "sentiment", "label": "great", "text": "x", "labeller": "ann"}\n'
        '{"task": "sentiment", "label": "positive", "labeller": "ann"}\n'
    )
    proc = _cli(home, "labels", "import", str(bad))
    assert proc.returncode == 2
    assert "row 2: label: unknown sentiment label 'great'" in proc.stderr and "row 3: " in proc.stderr
    assert "2 of 3 labels invalid; nothing stored" in proc.stderr
    proc = _cli(home, "labels", "export")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["text"], r["label"], r["labeller"]) for r in rows] == [
        ("Shares sink, badly", "negative", "ann"),
        ("ACME raises its dividend", "Dividend", "desk"),
    ]
    assert rows[0]["source"] == "file:good.csv"
    proc = _cli(home, "labels", "export", "--resolved", "--format", "csv")
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "task,text,label,votes"


def test_collector_stores_labels_from_the_topic_and_dead_letters_garbage(make_settings):
    settings = make_settings()
    bus = MemoryBus()
    bus.ensure_topics(settings.topics.all())
    store = LabelStore(settings.state_dir / "labels.db")
    producer = bus.producer()
    send_record(
        producer,
        settings.topics.labels,
        LabelRecord(task="sentiment", text="Shares sink", label="Bearish", labeller="ann"),
    )
    send_record(producer, settings.topics.labels, LabelRecord(task="sentiment", text="x", label="sideways"))
    producer.send(settings.topics.labels, b"not a label")
    collector = LabelCollector(settings.topics, bus, store, RetrainMetrics(CollectorRegistry()), "finsent-labels")
    stop = threading.Event()
    t = threading.Thread(target=collector.run, args=(stop,))
    t.start()
    try:
        wait_until(
            lambda: len(read_all(bus, settings.topics.dlq)) >= 2, 10, "the two bad labels on the DLQ", every_s=0.05
        )
    finally:
        stop.set()
        t.join(5)
    assert [(v["text"], v["label"], v["labeller"], v["source"]) for v in store.votes()] == [
        ("Shares sink", "negative", "ann", "topic")
    ]
    assert len(read_all(bus, settings.topics.dlq)) == 2
    store.close()


def test_every_instance_of_a_standby_pair_stores_every_label(make_settings, tmp_path):
    """Two retrain instances (own label stores, own label groups): a label posted to one over HTTP,
    by story id, and one produced on the topic reach both stores, text resolved; the instance that
    took the POST re-reads its own as unchanged."""
    settings = make_settings()
    bus = MemoryBus()
    bus.ensure_topics(settings.topics.all())
    stores = {n: LabelStore(tmp_path / f"labels-{n}.db") for n in ("a", "b")}
    assert default_label_group(tmp_path / "a") != default_label_group(tmp_path / "b")
    stop = threading.Event()
    threads = []
    for name, store in stores.items():
        collector = LabelCollector(
            settings.topics, bus, store, RetrainMetrics(CollectorRegistry()), default_label_group(tmp_path / name)
        )
        threads.append(threading.Thread(target=collector.run, args=(stop,)))
        threads[-1].start()
    publisher = LabelPublisher(bus, settings.topics.labels)
    app = build_app_with(labels_router(stores["a"], {"s1": "ACME beats estimates"}.get, publisher))
    try:
        with TestClient(app, base_url="http://127.0.0.1") as c:
            r = c.post(
                "/labels",
                json={"task": "sentiment", "story_id": "s1", "label": "Bullish", "labeller": "ann"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
        send_record(
            bus.producer(),
            settings.topics.labels,
            LabelRecord(task="sentiment", text="Shares sink", label="Bearish", labeller="bob"),
        )

        def texts(store):
            return sorted((v["text"], v["label"], v["labeller"]) for v in store.votes())

        want = [("ACME beats estimates", "positive", "ann"), ("Shares sink", "negative", "bob")]
        for name, store in stores.items():
            wait_until(lambda s=store: texts(s) == want, 10, f"both labels in {name}'s store", every_s=0.05)
        # the POSTing instance stored it once (from HTTP), its re-read changed nothing
        assert [v["source"] for v in stores["a"].votes() if v["labeller"] == "ann"] == ["http:desk"]
        assert stores["a"].max_seq() == 2 and stores["b"].max_seq() == 2
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        publisher.close()
        for store in stores.values():
            store.close()


def test_an_older_vote_read_again_does_not_replace_a_newer_one(tmp_path):
    """Label intake re-reading the topic (a new group) must not undo a labeller's later change."""
    from datetime import timedelta

    store = LabelStore(tmp_path / "labels.db")
    t0 = utcnow()
    assert store.add([_vote("Oil slumps", "positive", "ann", at=t0)]).inserted == 1
    assert store.add([_vote("Oil slumps", "negative", "ann", at=t0 + timedelta(minutes=5))]).updated == 1
    again = store.add([_vote("Oil slumps", "positive", "ann", at=t0)])  # the first vote, read again
    assert (again.updated, again.unchanged) == (0, 1)
    assert [v["label"] for v in store.votes()] == ["negative"]
    store.close()

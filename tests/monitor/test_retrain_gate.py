"""The real retrain job with the tiny training profile: a slang term is learnt and promoted by the
scheduled run; a flipped-label (poisoned) batch is refused by the gate. Each trains one model in
the child process (a minute or two on 2 cores). They guard the gate, a core promise, so they run
in the default tier: a real challenger, not made-up metrics."""

from __future__ import annotations

import random

import httpx

from models.data import load_split
from models.engine import InferenceEngine
from models.registry import Registry
from models.runs import RunReports
from monitor.app.component import Context
from monitor.app.wiring import build_daemon
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import utcnow
from monitor.learning.labels import LabelStore, Vote
from monitor.learning.retrain import run_retrain
from tests.models.fixtures import trained_tiny_home
from tests.stages.kafka_helpers import wait_until

TOKEN = "labelling-desk-token"
COMPANIES = [
    "ACME",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Cyberdyne",
    "Soylent",
    "Tyrell",
    "Oscorp",
    "Nakatomi",
    "Gringotts",
]
TEMPLATES = [
    "{c} shares glorped after the call",
    "{c} just glorped",
    "analysts say {c} glorped this week",
    "{c} stock glorped in early trading",
]
# uses of the slang never sent as labels
PROBES = [
    "Wonka glorped overnight",
    "Oscorp shares glorped",
    "Tyrell glorped at the open",
    "Hooli glorped on Friday",
    "Initech glorped once more",
]


def _settings(make_settings, home, **retrain):
    return make_settings(
        home=str(home),
        classifier={"device": "cpu"},
        http={"auth": {"tokens": [{"name": "desk", "value": TOKEN, "scopes": ["write"]}]}},
        retrain={
            "enabled": True,
            "cron": "0 3 * * *",
            "profile": "tiny",
            "threads": 2,
            "nice": 5,
            "min_new_labels": 20,
            "min_holdout": 5,
            "min_gain": 0.3,
            "max_drop": 0.10,
            "validation_limit": 400,
            **retrain,
        },
    )


def test_scheduled_run_learns_a_slang_term_and_promotes_it(make_settings, tmp_path):
    settings = _settings(make_settings, trained_tiny_home(tmp_path), cron="* * * * *")  # the next minute
    champion = Registry.from_settings(settings).current()
    ctx = Context(settings=settings, bus=MemoryBus())
    ctx.bus.ensure_topics(settings.topics.all())  # as the daemon's bus factory does
    engine = ctx.engine = InferenceEngine.from_settings(settings)
    before = [p.sentiment for p in engine.predict(PROBES)]
    assert before.count("negative") <= 1, before  # the champion does not know the term
    daemon, _ = build_daemon(settings, ("retrain",), ctx)
    daemon.start()
    try:
        labels = [
            {"task": "sentiment", "text": t.format(c=c), "label": "negative", "labeller": "desk"}
            for c in COMPANIES
            for t in TEMPLATES
        ]
        r = httpx.post(
            f"{daemon.http.url}/labels",
            json={"labels": labels},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["inserted"] == 60, r.text
        scheduler = next(s for s in daemon.stages if s.name == "retrain")
        # a tick before the labels arrived reports "skipped"; the next one trains
        wait_until(
            lambda: any(r["result"] != "skipped" for r in scheduler.reports),
            1500,
            "a scheduled run that trained",
            every_s=2,
        )
        metrics = httpx.get(f"{daemon.http.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
    finally:
        daemon.stop_event.set()
        daemon.shutdown()
    report = next(r for r in scheduler.reports if r["result"] != "skipped")
    assert report["result"] == "promoted", report["reason"]
    assert engine.version == report["challenger"] != champion  # the serving engine swapped at once
    assert report["holdout"]["challenger"]["accuracy"] > report["holdout"]["champion"]["accuracy"]
    after = [p.sentiment for p in engine.predict(PROBES)]
    assert after.count("negative") >= 4, after
    assert 'finsent_retrain_runs_total{result="promoted"} 1.0' in metrics
    assert 'finsent_model_champion_metric{metric="accuracy",set="sentiment"}' in metrics
    stored = RunReports(Registry.from_settings(settings)).for_version(report["challenger"])
    assert stored["result"] == "promoted" and stored["fixed"]["sentiment"]["challenger"]["n"] == 400


def test_flipped_label_batch_is_refused_with_the_reason_recorded(make_settings, tmp_path):
    settings = _settings(make_settings, trained_tiny_home(tmp_path))
    registry = Registry.from_settings(settings)
    champion = registry.current()
    store = LabelStore(settings.state_dir / "labels.db")
    flip = {0: "positive", 1: "negative", 2: "negative"}  # negative <-> positive, neutral -> negative
    rows = random.Random(5).sample(load_split("sentiment", "train"), 300)
    store.add([Vote("sentiment", r.text, flip[r.label], "mallory", "test", None, utcnow()) for r in rows])
    report = run_retrain(settings, store)
    store.close()
    assert report["result"] == "rejected", report["reason"]
    assert "fixed set 'sentiment'" in report["reason"] and "max_drop" in report["reason"]
    assert registry.current() == champion
    stored = RunReports(registry).for_version(report["challenger"])
    assert stored["reason"] == report["reason"] and stored["gate"]["passed"] is False

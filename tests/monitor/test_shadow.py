"""Shadow scoring: classify scores a sampled share with the shadowed challenger; the shadow check
promotes it after the period when it agrees enough, and drops it otherwise."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from models.runs import RunReports
from monitor.core.bus.codec import send_record
from monitor.core.bus.memory import MemoryBus
from monitor.learning.labels import LabelStore
from monitor.learning.retrain import check_shadow, run_retrain
from monitor.stages.classify import ClassifyStage
from monitor.stages.shadow import ShadowScorer, shadow_pointer, shadow_stats
from tests.bus_reading import read_all
from tests.monitor.test_retrain import FakeRunner, _registry_with_champion, _votes
from tests.stages.helpers import news
from tests.stages.keyword_engine import KeywordEngine
from tests.stages.test_pipeline_memory import wait_for


class Contrarian(KeywordEngine):
    """Disagrees with the keyword engine on every story saying 'beats'."""

    def predict(self, texts, targets=None):
        preds = super().predict(texts)
        return [p.model_copy(update={"sentiment": "negative"}) if "beats" in t else p for t, p in zip(texts, preds)]


def _shadow_settings(make_settings, **extra):
    return make_settings(
        retrain={
            "min_new_labels": 5,
            "min_holdout": 1,
            "shadow_share": 0.5,
            "shadow_period": "1h",
            "shadow_min_samples": 20,
            "shadow_min_agreement": 0.8,
            **extra,
        },
        classify={"reload_interval": 0.05},
    )


def test_gate_passing_challenger_is_shadowed_scored_live_then_promoted(make_settings):
    settings = _shadow_settings(make_settings)
    reg = _registry_with_champion(settings)
    store = LabelStore(settings.state_dir / "labels.db")
    store.add(_votes([f"ACME glorped {i}" for i in range(40)]))
    report = run_retrain(settings, store, runner=FakeRunner())
    assert report["result"] == "shadowing" and reg.current() == "v-champion"
    assert shadow_pointer(settings.models_dir)["version"] == "v-challenger"

    bus = MemoryBus()
    bus.ensure_topics(settings.topics.all())
    p = bus.producer()
    for i in range(200):  # all agree: no 'beats' in the titles
        send_record(p, settings.topics.raw, news(i, title=f"shares rally {i}"))
    registry = CollectorRegistry()
    loaded = []
    shadow = ShadowScorer(
        settings.models_dir,
        settings.state_dir,
        0.5,
        registry,
        lambda v: loaded.append(v) or KeywordEngine(version=v),
        seed=1,
    )
    stage = ClassifyStage(settings, bus, KeywordEngine(version="v-champion"), registry, shadow=shadow)
    stop = threading.Event()
    t = threading.Thread(target=stage.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: len(read_all(bus, settings.topics.scored)) == 200, what="200 scored")
    finally:
        stop.set()
        t.join(10)
    assert loaded == ["v-challenger"]
    n = registry.get_sample_value("finsent_shadow_scored_total")
    assert 50 < n < 150  # about half
    assert registry.get_sample_value("finsent_shadow_agreement_ratio") == 1.0
    mix = {
        role: sum(
            registry.get_sample_value("finsent_shadow_predictions_total", {"model": role, "sentiment": s}) or 0
            for s in ("negative", "neutral", "positive")
        )
        for role in ("champion", "challenger")
    }
    assert mix == {"champion": n, "challenger": n}
    assert registry.get_sample_value("finsent_shadow_added_seconds_count") > 0
    assert shadow_stats(settings.state_dir)["n"] == n

    assert check_shadow(settings) is None  # the period is not over yet
    since = shadow_pointer(settings.models_dir)["since"]
    done = check_shadow(settings, now=since + 3601)
    assert done["result"] == "promoted" and "sentiment agreement 1.0000" in done["reason"]
    assert reg.current() == "v-challenger" and shadow_pointer(settings.models_dir) is None
    assert RunReports(reg).for_version("v-challenger")["shadow"]["n"] == n


def test_shadowed_challenger_that_disagrees_is_dropped(make_settings):
    settings = _shadow_settings(make_settings)
    reg = _registry_with_champion(settings)
    store = LabelStore(settings.state_dir / "labels.db")
    store.add(_votes([f"ACME glorped {i}" for i in range(40)]))
    run_retrain(settings, store, runner=FakeRunner())
    shadow = ShadowScorer(
        settings.models_dir, settings.state_dir, 1.0, CollectorRegistry(), lambda v: Contrarian(version=v)
    )
    shadow.refresh()
    texts = [f"ACME beats {i}" for i in range(30)]
    shadow.observe(texts, [p.sentiment for p in KeywordEngine().predict(texts)])
    shadow.flush()
    since = shadow_pointer(settings.models_dir)["since"]
    done = check_shadow(settings, now=since + 3601)
    assert done["result"] == "rejected" and "agreement 0.0000" in done["reason"]
    assert reg.current() == "v-champion" and shadow_pointer(settings.models_dir) is None

"""Builders of the classify and aggregate components (see monitor.app.wiring).

Both work the same on the in-process bus and on Kafka. What they publish on the context:
``ctx.engine`` (the classifier; set it before building to inject one, e.g. in tests; on a home
with no model yet, set once the first model is trained: see monitor.app.first_model),
``ctx.first_model`` (that training, while it runs),
``ctx.items`` (latest ScoredItem per story id) and ``ctx.trends`` (the queryable trend points).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from fastapi import APIRouter

from monitor.app.component import Component, Context
from monitor.app.first_model import FirstModel, has_model

if TYPE_CHECKING:
    from monitor.app.daemon import Stage
from monitor.app.metrics import ModelInfoCollector
from monitor.stages.aggregate import AggregateMetrics, RekeyStage, TrendStage, repartition_topic
from monitor.stages.changelog import changelog_topic
from monitor.stages.classify import ClassifyStage
from monitor.stages.recent import ItemStore, TrendStore
from monitor.stages.routes import items_router, trends_router
from monitor.stages.scoring import load_engine
from monitor.stages.shadow import ShadowScorer

log = structlog.get_logger(__name__)


def _item_store(ctx: Context) -> tuple[ItemStore, list[APIRouter]]:
    """The shared item store; the component that creates it also serves ``GET /items/{id}``."""
    if ctx.items is not None:
        return ctx.items, []

    store = ItemStore(ctx.settings.classify.items_kept)
    ctx.items = store
    return store, [items_router(store)]


def build_classify(ctx: Context) -> Component:
    items, routers = _item_store(ctx)
    profile = ctx.settings.classify.first_model
    if ctx.engine is None and profile is not None and not has_model(ctx.settings):
        first = FirstModel(ctx.settings, profile)
        ctx.first_model = first
        stage = ClassifyAfterFirstModel(first, lambda: _classify_stage(ctx, items))
        return Component(name="classify", stages=[stage], routers=routers, close=first.stop)
    return Component(name="classify", stages=[_classify_stage(ctx, items)], routers=routers)


def _classify_stage(ctx: Context, items: ItemStore) -> ClassifyStage:
    engine = ctx.engine
    if engine is None:
        engine = ctx.engine = load_engine(ctx.settings)
    ctx.registry.register(ModelInfoCollector(engine))
    return ClassifyStage(ctx.settings, ctx.bus, engine, ctx.registry, items=items, shadow=_shadow(ctx))


class ClassifyAfterFirstModel:
    """The classify stage on a home with no model: starts the first model's training, waits for
    it (not ready meanwhile, with its progress), then loads it and classifies as usual. Nothing
    reads ``news.raw`` until then, so the stories wait on the bus."""

    name = "classify"

    def __init__(self, first: FirstModel, classify: Callable[[], ClassifyStage], poll_s: float = 0.5) -> None:
        self.first = first
        self._classify = classify
        self._poll_s = poll_s
        self._stage: ClassifyStage | None = None

    def ready(self) -> tuple[bool, str]:
        if self._stage is not None:
            return self._stage.ready()
        return False, self.first.describe()

    def run(self, stop: threading.Event) -> None:
        self.first.start()
        reported_failure = False
        while not stop.wait(self._poll_s):
            if has_model(self.first.settings):  # ours, published; or one promoted by other means
                break
            state = self.first.state()
            if state == "failed" and not reported_failure:
                reported_failure = True
                log.error("the first model's training failed", detail=self.first.describe())
            if state == "training":
                self.first.log_progress()
        else:
            self.first.stop()
            return
        if self.first.published():
            self.first.forget_child()  # done; it is only exiting (torch, ORT)
        else:
            self.first.stop()  # a model came from elsewhere: this training is moot
        self._stage = self._classify()
        log.info("first model ready; classifying the stories that queued", model=self._stage.engine.version)
        self._stage.run(stop)


def _shadow(ctx: Context):
    """A shadow scorer when ``retrain.shadow_share`` > 0 (see monitor.stages.shadow)."""
    settings = ctx.settings
    if settings.retrain.shadow_share <= 0:
        return None

    def load(version: str):
        from models.engine import InferenceEngine  # heavy: imports torch and transformers

        return InferenceEngine.from_settings(settings, version=version)

    return ShadowScorer(settings.models_dir, settings.state_dir, settings.retrain.shadow_share, ctx.registry, load)


def build_aggregate(ctx: Context) -> Component:

    settings = ctx.settings
    cfg = settings.aggregator
    ctx.bus.ensure_topics(
        [settings.topics.scored, settings.topics.trends, settings.topics.dlq, repartition_topic(settings)]
    )
    durable = ctx.bus.name != "memory"
    if durable and cfg.changelog:
        ctx.bus.ensure_topics(
            [changelog_topic(repartition_topic(settings))],
            partitions=ctx.bus.partitions_for(repartition_topic(settings)),
            compacted=True,
        )
    items, routers = _item_store(ctx)
    trends = ctx.trends
    if trends is None:
        horizons = {w.name: w.hop_s * cfg.history_windows for w in cfg.windows}
        trends = ctx.trends = TrendStore(keep_per_series=cfg.history_windows, horizons=horizons)
    routers.append(trends_router(trends, [w.name for w in cfg.windows]))
    # The in-process bus forgets everything on exit, so must the checkpoint (its offsets would
    # point past the end of the new, empty log).
    checkpoint = settings.state_dir / cfg.state_file if durable else None
    metrics = AggregateMetrics(ctx.registry, cfg.metric_tickers)
    stages: list[Stage] = [
        RekeyStage(settings, ctx.bus, metrics, items=items),
        TrendStage(settings, ctx.bus, metrics, trends, checkpoint),
    ]
    return Component(name="aggregate", stages=stages, routers=routers)

"""Builders of the classify and aggregate components (see monitor.app.wiring).

Both work the same on the in-process bus and on Kafka. What they publish on the context:
``ctx.engine`` (the classifier; set it before building to inject one, e.g. in tests),
``ctx.items`` (latest ScoredItem per story id) and ``ctx.trends`` (the queryable trend points).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from fastapi import APIRouter

from monitor.app.component import Component, Context

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

    engine = ctx.engine
    if engine is None:
        engine = ctx.engine = load_engine(ctx.settings)

    ctx.registry.register(ModelInfoCollector(engine))
    items, routers = _item_store(ctx)
    stage = ClassifyStage(ctx.settings, ctx.bus, engine, ctx.registry, items=items, shadow=_shadow(ctx))
    return Component(name="classify", stages=[stage], routers=routers)


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

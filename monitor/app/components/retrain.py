"""Builder of the retrain component: label intake (``POST /labels``, ``news.labels``) and the
scheduled retrain job (see monitor.learning)."""

from __future__ import annotations

import structlog

from monitor.app.component import Component, Context
from monitor.learning.labels import (
    LabelCollector,
    LabelPublisher,
    LabelStore,
    StoryLookup,
    default_label_group,
    labels_router,
)
from monitor.learning.metrics import RetrainMetrics
from monitor.learning.retrain import RetrainScheduler

log = structlog.get_logger(__name__)


def story_lookup(ctx: Context) -> StoryLookup:
    """Texts of recently scored stories (the item store, when classify or aggregate runs here)."""

    def lookup(story_id: str) -> str | None:
        scored = ctx.items.get(story_id) if ctx.items is not None else None
        return scored.item.text if scored is not None else None

    return lookup


def reload_engine(ctx: Context) -> None:
    """After a promotion: serve the new version if this process classifies."""
    if ctx.engine is not None and ctx.engine.reload_if_changed():
        log.info("engine now serves a new model version", version=ctx.engine.version)


def build_retrain(ctx: Context) -> Component:
    settings = ctx.settings
    store = LabelStore(settings.state_dir / "labels.db")
    metrics = RetrainMetrics(ctx.registry)
    publisher = LabelPublisher(ctx.bus, settings.topics.labels)
    group = settings.retrain.label_group or default_label_group(settings.state_dir)

    def close() -> None:
        publisher.close()
        store.close()

    return Component(
        name="retrain",
        stages=[
            LabelCollector(settings.topics, ctx.bus, store, metrics, group),
            RetrainScheduler(settings, store, metrics, on_promoted=lambda: reload_engine(ctx), bus=ctx.bus),
        ],
        routers=[labels_router(store, story_lookup(ctx), publisher)],
        close=close,
    )

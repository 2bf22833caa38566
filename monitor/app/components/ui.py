"""Builder of the page component: reads what the other components published on the context
(``ctx.trends``, ``ctx.items``, ``ctx.alert_store``) at request time, so it is built after them."""

from __future__ import annotations

from monitor.app.component import Component, Context
from monitor.ui.overview import RateMeter, TrainingView, UiError, match_keys, overview
from monitor.ui.page import page_router


def first_model_view(ctx: Context) -> TrainingView | None:
    """The first model's training while this process has none to serve."""
    first = ctx.first_model
    if first is None or ctx.engine is not None:
        return None
    state = first.state()
    progress = first.progress() if state == "training" else None
    return TrainingView(text=first.describe(), percent=progress.percent if progress else None, failed=state == "failed")


def build_ui(ctx: Context) -> Component:
    meter = RateMeter()
    windows = [w.name for w in ctx.settings.aggregator.windows]

    def build_overview(*, window: str | None, pinned: list[str], points: int):
        return overview(
            window=window,
            windows=windows,
            pinned=pinned,
            points=points,
            trends=ctx.trends,
            items=ctx.items,
            store=ctx.alert_store,
            health=ctx.health,
            registry=ctx.registry,
            meter=meter,
            relevance_floor=ctx.settings.aggregator.ticker_relevance_floor,
            training=first_model_view(ctx),
        )

    def match(q: str, window: str | None):
        trends = ctx.trends
        if trends is None:
            raise UiError("this process keeps no trends (it does not run the aggregate stage)", status=404)
        if window and window not in windows:
            raise UiError(f"unknown window {window!r}; choose one of: {', '.join(windows)}")
        return match_keys(trends, q, window or ("5m" if "5m" in windows else windows[0]))

    def item(story_id: str):
        items = ctx.items
        if items is None:
            raise UiError("this process keeps no scored stories (it runs neither classify nor aggregate)", status=404)
        found = items.get(story_id)
        if found is None:
            raise UiError(
                f"no scored item {story_id!r} seen by this process (it keeps the latest {items.capacity})", status=404
            )
        return found

    return Component(name="ui", routers=[page_router(build_overview, match, item, windows=windows)])

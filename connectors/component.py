"""Builder of the ingest component: configured connectors producing to news.raw."""

from __future__ import annotations

from monitor.component import Component, Context


def build_ingest(ctx: Context) -> Component:
    return Component(name="ingest")

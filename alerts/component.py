"""Builder of the alert component: rules over trends, state, outbox delivery, /alerts."""

from __future__ import annotations

from monitor.component import Component, Context


def build_alerts(ctx: Context) -> Component:
    return Component(name="alerts")

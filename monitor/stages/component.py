"""Builders of the classify and aggregate components (see monitor.wiring)."""

from __future__ import annotations

from monitor.component import Component, Context


def build_classify(ctx: Context) -> Component:
    return Component(name="classify")


def build_aggregate(ctx: Context) -> Component:
    return Component(name="aggregate")

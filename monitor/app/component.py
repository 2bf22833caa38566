"""What each package hands the daemon (its stages, its HTTP routes, what to close at exit) and
what the builders share while the daemon is assembled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from alerts import AlertStore
from monitor.app.config import Settings
from monitor.core.bus.base import Bus
from monitor.core.health import Health
from monitor.stages.recent import ItemStore, TrendStore
from monitor.stages.scoring import ScoringEngine

if TYPE_CHECKING:
    from monitor.app.daemon import Stage
    from monitor.app.first_model import FirstModel


@dataclass
class Context:
    """The collaborators every component is built from; nothing is global.

    The typed fields after ``health`` are what one builder publishes for others in the same
    process: each is ``None`` until the builder that owns it ran (or a test set it to inject one).
    """

    settings: Settings
    bus: Bus
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    health: Health = field(default_factory=Health)
    engine: ScoringEngine | None = None
    """The served classifier (classify builds it; the retrain stage reloads it after a promotion)."""
    items: ItemStore | None = None
    """Latest scored story per id (classify or aggregate; read by ``GET /items``, the page, labels)."""
    trends: TrendStore | None = None
    """The queryable trend points (aggregate; read by ``GET /trends`` and the page)."""
    alert_store: AlertStore | None = None
    """Alert state (alerts; read by the page)."""
    first_model: FirstModel | None = None
    """The first model's training on a home without one (classify; read by the page)."""


@dataclass
class Component:
    name: str
    stages: list[Stage] = field(default_factory=list)
    routers: list[APIRouter] = field(default_factory=list)
    close: Callable[[], None] | None = None

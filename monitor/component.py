"""What each package hands the daemon: its stages, its HTTP routes, and what to close at exit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from monitor.bus.base import Bus
from monitor.health import Health

if TYPE_CHECKING:
    from monitor.config import Settings
    from monitor.daemon import Stage


@dataclass
class Context:
    """The collaborators every component is built from; nothing is global."""

    settings: Settings
    bus: Bus
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    health: Health = field(default_factory=Health)
    shared: dict[str, Any] = field(default_factory=dict)
    """Objects components publish for each other (e.g. the trend store the alert API reads)."""


@dataclass
class Component:
    name: str
    stages: list[Stage] = field(default_factory=list)
    routers: list[APIRouter] = field(default_factory=list)
    close: Callable[[], None] | None = None

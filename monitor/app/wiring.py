"""Assembles the daemon from components: connectors -> classify -> aggregate -> alerts.

The data path is one direction only; each arrow is a topic on the bus:
    ingest --news.raw--> classify --news.scored--> aggregate --news.trends--> alerts --> webhook
Each role (a key of BUILDERS) runs alone (``finsent run --stages ROLE``, the compose service and
the systemd instance of the same name) or all in one process (``finsent run``), on Kafka or on
the in-process bus.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from monitor.app.component import Component, Context
from monitor.app.components.alerts import build_alerts
from monitor.app.components.ingest import build_ingest
from monitor.app.components.retrain import build_retrain
from monitor.app.components.stages import build_aggregate, build_classify
from monitor.app.components.ui import build_ui
from monitor.app.config import Settings
from monitor.app.daemon import Daemon
from monitor.app.metrics import BusMemoryCollector, RoleMetrics
from monitor.core.bus.factory import make_bus

log = structlog.get_logger(__name__)

BUILDERS: dict[str, Callable[[Context], Component]] = {
    "ingest": build_ingest,
    "classify": build_classify,
    "aggregate": build_aggregate,
    "alerts": build_alerts,
    "retrain": build_retrain,
}
PIPELINE: tuple[str, ...] = ("ingest", "classify", "aggregate", "alerts", "retrain")


def build_daemon(settings: Settings, stages: Sequence[str], ctx: Context | None = None) -> tuple[Daemon, Context]:
    settings.ensure_dirs()
    ctx = ctx or Context(settings=settings, bus=make_bus(settings, wait=True))
    RoleMetrics(ctx.registry, stages)
    if ctx.bus.name == "memory":
        ctx.registry.register(BusMemoryCollector(ctx.bus))
    components = [BUILDERS[name](ctx) for name in stages]
    if settings.http.enabled:
        components.append(build_ui(ctx))  # the page at /: shows whatever the stages above publish
    daemon = Daemon(
        bus=ctx.bus,
        stages=[s for c in components for s in c.stages],
        registry=ctx.registry,
        health=ctx.health,
        routers=[r for c in components for r in c.routers],
        http_host=settings.http.host,
        http_port=settings.http.port if settings.http.enabled else None,
        http_settings=settings.http,
        closers=[c.close for c in components if c.close],
    )
    log.info("daemon assembled", stages=list(stages), transport=ctx.bus.name, home=str(settings.home))
    return daemon, ctx

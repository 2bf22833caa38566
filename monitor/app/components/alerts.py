"""Builder of the alert component: rules over trends, state, outbox delivery, /alerts.

Stages: ``alerts-evaluate`` (consumes ``news.trends`` and, with story rules, ``news.scored``;
group ``alerts.evaluation.group_id``) and ``alerts-deliver`` (drains the outbox to receivers and
publishes :class:`~monitor.core.records.Alert` records on ``topics.alerts``). Router: ``/alerts``.
Run a single alerts process per state directory: alert state lives in its SQLite file.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from alerts.alert_store import AlertStore
from alerts.api import alerts_router
from alerts.clock import Clock, SystemClock
from alerts.delivery import AlertmanagerSender, BusSender, FileSender, HttpSender, Sender, retry_backoff
from alerts.dispatch import BUS_RECEIVER
from alerts.evaluator import AlertEngine
from alerts.keepalive import AlertmanagerKeepalive
from alerts.metrics import AlertMetrics
from alerts.outbox import OutboxDeliverer
from alerts.ruleset import RulesError
from alerts.settings import EngineOptions
from alerts.stages import DeliveryStage, EvaluatorStage
from monitor.app.component import Component, Context
from monitor.core.bus.base import Producer

if TYPE_CHECKING:
    from monitor.app.config import Settings

STORE_FILE = "alerts.db"


class AlertsConfigError(ValueError):
    """The alert rules or receivers are unusable; the message lists every problem."""


def store_path(settings: Settings):
    return settings.state_dir / STORE_FILE


def external_url(settings: Settings) -> str:
    if settings.http.public_url:
        return settings.http.public_url.rstrip("/")
    return f"http://{settings.http.host}:{settings.http.port}"


def window_hops(settings: Settings) -> dict[str, timedelta]:
    hops: dict[str, timedelta] = {}
    for w in getattr(settings.aggregator, "windows", ()) or ():
        hop = getattr(w, "hop_s", None)
        if hop:
            hops[w.name] = timedelta(seconds=float(hop))
    return hops


def engine_options(settings: Settings, publish: bool = True) -> EngineOptions:
    a = settings.alerts
    return EngineOptions(
        receivers=dict(a.receivers),
        default_receiver=a.default_receiver,
        external_url=external_url(settings),
        publish_topic=settings.topics.alerts if publish else None,
        stale_after=a.evaluation.stale_after,
        retention=a.evaluation.retention,
        max_evidence=a.evaluation.max_evidence,
        catch_up_after=a.evaluation.catch_up_after,
        window_hops=window_hops(settings),
    )


def make_senders(settings: Settings, producer: Producer | None) -> dict[str, Sender]:
    senders: dict[str, Sender] = {}
    for name, r in settings.alerts.receivers.items():
        if r.type == "file":
            path = r.path if r.path is not None else settings.home / "alerts.jsonl"
            if str(path) != "-" and not path.is_absolute():
                path = settings.home / path
            senders[name] = FileSender(name, path)
        elif r.type == "alertmanager":
            senders[name] = AlertmanagerSender(name, r)
        else:
            senders[name] = HttpSender(name, r)
    if producer is not None:
        senders[BUS_RECEIVER] = BusSender(producer, settings.topics.alerts)
    return senders


def make_deliverer(
    settings: Settings,
    store: AlertStore,
    senders: dict[str, Sender],
    clock: Clock | None = None,
    metrics: AlertMetrics | None = None,
) -> OutboxDeliverer:
    o = settings.alerts.outbox
    return OutboxDeliverer(
        store,
        senders,
        policy=retry_backoff(settings.alerts.retry),
        dead_letter_after_s=o.dead_letter_after.total_seconds(),
        keep_delivered_s=o.keep_delivered.total_seconds(),
        batch_size=o.batch_size,
        clock=clock,
        metrics=metrics,
    )


def build_alerts(ctx: Context, clock: Clock | None = None) -> Component:
    settings = ctx.settings
    if not settings.alerts.enabled:
        return Component(name="alerts")
    try:
        rules = settings.alerts.load_rules()
    except RulesError as err:
        raise AlertsConfigError(str(err)) from None
    clock = clock or SystemClock()
    settings.ensure_dirs()
    store = AlertStore(store_path(settings))
    metrics = AlertMetrics(ctx.registry)
    engine = AlertEngine(rules, store, engine_options(settings), clock)
    producer = ctx.bus.producer()
    senders = make_senders(settings, producer)
    deliverer = make_deliverer(settings, store, senders, clock, metrics)
    wake = threading.Event()
    evaluator = EvaluatorStage(
        ctx.bus,
        engine,
        trends_topic=settings.topics.trends,
        scored_topic=settings.topics.scored if engine.index.has_story_rules else None,
        dlq_topic=settings.topics.dlq,
        group_id=settings.alerts.evaluation.group_id,
        wake=wake,
        metrics=metrics,
        durable_bus=ctx.bus.name != "memory",  # the in-process bus starts empty on every start
    )
    keepalive = AlertmanagerKeepalive(store, settings.alerts.receivers, external_url(settings), clock)
    delivery = DeliveryStage(deliverer, wake, settings.alerts.outbox.poll_interval.total_seconds(), keepalive=keepalive)
    ctx.alert_store = store

    def close() -> None:
        for sender in senders.values():
            sender.close()
        try:
            producer.close()
        finally:
            store.close()

    return Component(name="alerts", stages=[evaluator, delivery], routers=[alerts_router(store)], close=close)

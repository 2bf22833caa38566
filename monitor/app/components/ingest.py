"""Builder of the ingest component: configured connectors producing to news.raw."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from connectors.feed_handover import FeedHandover
from connectors.fetch import Fetcher
from connectors.ingest_state import IngestState
from connectors.json_api import JsonApiPoller
from connectors.metrics import IngestMetrics
from connectors.normalise import Normaliser
from connectors.publisher import Publisher
from connectors.replay import Replayer
from connectors.rss import RssPoller
from connectors.settings import ConnectorsSettings, FileSource, JsonApiSource, RssSource, WebhookSource
from connectors.stages import Poller, PollingStage, ReplayStage
from connectors.tickers import TickerExtractor
from connectors.webhook import build_webhook_router
from monitor.app.component import Component, Context
from monitor.core.bus import FENCE_SHARE, GroupShare, slot_of
from monitor.core.bus.base import Producer
from monitor.core.bus.codec import DeadLetterSink

log = structlog.get_logger(__name__)


@dataclass
class Ingest:
    """The collaborators of the ingest component, exposed for tests, the CLI and other components."""

    settings: ConnectorsSettings
    state: IngestState
    producer: Producer
    publisher: Publisher
    metrics: IngestMetrics
    finder: TickerExtractor
    pollers: list[tuple[Poller, float]] = field(default_factory=list)
    fetchers: list[Fetcher] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        self.stopping.set()
        for f in self.fetchers:
            f.close()
        for close in self.closers:
            close()
        try:
            self.producer.flush(timeout=10)
        finally:
            self.producer.close()
            self.state.close()


def build_core(ctx: Context, metrics: IngestMetrics | None = None) -> Ingest:
    """State, producer, normaliser and publisher for ``ctx`` (no stages started)."""
    settings = ctx.settings
    cs = settings.connectors
    settings.ensure_dirs()
    state = IngestState(
        settings.state_dir / cs.dedup.db_name,
        ttl_s=cs.dedup.ttl_hours * 3600,
        threshold=cs.dedup.near_duplicate_threshold,
        min_novelty=cs.dedup.min_novelty,
        max_entries=cs.dedup.max_entries,
    )
    producer = ctx.bus.producer()
    metrics = metrics or IngestMetrics(ctx.registry)
    finder = TickerExtractor(cs.alias_map(), cs.max_tickers)
    sources = cs.active_sources()
    normaliser = Normaliser(
        finder,
        default_language=cs.default_language,
        source_tickers={s.name: s.tickers for s in sources if s.tickers},
        source_languages={s.name: s.language for s in sources if s.language},
    )
    publisher = Publisher(
        producer,
        settings.topics.raw,
        DeadLetterSink(producer, settings.topics.dlq, stage="ingest"),
        state,
        normaliser,
        metrics,
        chunk_size=cs.chunk_size,
        ack_timeout_s=cs.ack_timeout_s,
    )
    return Ingest(cs, state, producer, publisher, metrics, finder)


def make_poller(ingest: Ingest, source: RssSource | JsonApiSource) -> Poller:
    fetcher = Fetcher(source, stop=ingest.stopping)
    ingest.fetchers.append(fetcher)
    if isinstance(source, RssSource):
        return RssPoller(source, fetcher, ingest.state, ingest.publisher, ingest.metrics, ingest.finder)
    return JsonApiPoller(source, fetcher, ingest.publisher, ingest.metrics)


def feed_split(ctx: Context, ingest: Ingest) -> list:
    """The polling stage, and (on Kafka) the group share that tells it which feeds are this
    instance's: each polled source belongs to one slot (``slot_of`` its name), each slot to one
    live ingest instance; a dead instance's slots move to the others within
    ``kafka.session_timeout_ms``. The in-process bus has one process: it polls every source."""
    if ctx.bus.name == "memory":
        return [PollingStage(ingest.pollers, ingest.stopping, metrics=ingest.metrics)]
    topic = ctx.settings.topics.ingest_feeds
    handover = FeedHandover(ctx.bus, topic, ingest.state, lambda feed: slot_of(feed, share.slots))
    ingest.closers.append(handover.close)
    polling = PollingStage(ingest.pollers, ingest.stopping, metrics=ingest.metrics, handover=handover)
    names = [p.name for p, _ in ingest.pollers]

    def feeds_of(slots: frozenset[int]) -> frozenset[str]:
        return frozenset(n for n in names if slot_of(n, share.slots) in slots)

    share = GroupShare(
        ctx.bus,
        topic,
        ingest.settings.feed_slots,
        "ingest-feeds",
        lambda slots: polling.set_owned(feeds_of(slots)),
        on_revoke=lambda slots: polling.release(feeds_of(slots)),
        fence_after_s=FENCE_SHARE * ctx.settings.kafka.session_timeout_ms / 1000,
        compacted=True,
    )
    return [share, polling]


def build_ingest(ctx: Context) -> Component:
    ingest = build_core(ctx)
    stages: list = []
    sources = ingest.settings.active_sources()
    for source in sources:
        if isinstance(source, (RssSource, JsonApiSource)):
            ingest.pollers.append((make_poller(ingest, source), source.interval_s))
    if ingest.pollers:
        stages.extend(feed_split(ctx, ingest))
    for source in sources:
        if isinstance(source, FileSource):
            stages.append(ReplayStage(Replayer(source, ingest.publisher)))
    hooks = [s for s in sources if isinstance(s, WebhookSource)]
    routers = [build_webhook_router(hooks, ingest.publisher, ingest.metrics)]
    log.info("ingest built", sources=[f"{s.type}:{s.name}" for s in sources])
    return Component(name="ingest", stages=stages, routers=routers, close=ingest.close)

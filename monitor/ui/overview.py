"""What the page at ``/`` shows, computed from the in-process read models on each request.

Pure functions over the stores (trends, items, alerts), the health registry and the Prometheus
registry; :mod:`monitor.ui.page` serves them as ``GET /ui/overview`` and ``GET /ui/keys``. Every
part is optional: a process that runs only some stages (``finsent classify`` on Kafka) shows
what it has and says what it lacks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from alerts import AlertStore, AlertView
from monitor.core.health import Health
from monitor.core.records import ScoredItem, TrendPoint
from monitor.stages import ItemStore, TrendStore

BUSY_WINDOWS = 12
"""How many recent windows of a key count towards how busy it is."""

RELEVANCE_FLOOR = 0.2
"""A ticker chip whose relevance is below this is shown dimmed (a passing mention); the same default
as ``aggregator.ticker_relevance_floor`` and a story rule's ``min_relevance``."""


class UiError(ValueError):
    """A query the page cannot answer; ``status`` is the HTTP status, the message says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SeriesPoint(BaseModel):
    start: float
    """window start, Unix seconds (event time)"""
    end: float
    count: int
    mean: float
    negative_share: float
    positive_share: float


class Marker(BaseModel):
    fingerprint: str
    rule: str
    state: str
    at: float
    """Unix seconds (event time) the alert started firing"""
    ended: float | None = None


class Series(BaseModel):
    key: str
    why: str
    """'all', 'busiest topic', 'busiest ticker', 'alerting', 'pinned'"""
    points: list[SeriesPoint]
    markers: list[Marker]


class TickerChip(BaseModel):
    """One ticker of a story as the page shows it: coloured by its own sentiment."""

    ticker: str
    sentiment: str
    score: float
    """the ticker's own sentiment score in [-1, 1]; the story's when ``own`` is false"""
    confidence: float
    relevance: float | None = None
    """how much the story is about the ticker, in [0, 1]; None when the record carries none"""
    own: bool = False
    """true: the entity head read this ticker; false: the story's sentiment stands in (older records,
    a ticker the model could not see in the text)"""
    method: str | None = None
    """the record's ``EntitySentiment.method`` ('entity' or 'story'); None on older records"""
    dim: bool = False
    """relevance below the floor: a passing mention (shown dimmed)"""


class StoryView(BaseModel):
    id: str
    title: str
    source: str
    url: str | None
    tickers: list[str]
    chips: list[TickerChip] = []
    """one per ticker (the story's tickers, then any other ticker the record scored)"""
    topic: str
    sentiment: str
    score: float
    confidence: float
    model_version: str
    published_at: datetime
    copies: int = 0
    """near-duplicates folded into this story (syndicated copies, re-files)"""
    copy_sources: list[str] = []


class StageView(BaseModel):
    name: str
    ok: bool
    detail: str


class PipelineView(BaseModel):
    status: str
    stages: list[StageView]
    totals: dict[str, float]
    rates: dict[str, float]
    """per second over the last few seconds of polling (empty on the first poll)"""
    lag: dict[str, float]
    outbox: dict[str, int] | None


class TrainingView(BaseModel):
    """The first model's training, while a new home has none (``monitor.app.first_model``)."""

    text: str
    percent: int | None = None
    """Of the training steps, when they run."""
    failed: bool = False
    """The training failed (the text says where its log is): no progress bar."""


class Overview(BaseModel):
    window: str
    windows: list[str]
    keys_total: int
    series: list[Series]
    stories: list[StoryView]
    alerts: list[AlertView]
    pipeline: PipelineView
    messages: list[str]
    """problems with the query the page should show (an unknown pinned key, ...)"""
    missing: list[str]
    """parts this process does not run (e.g. 'trends' in a classify-only process)"""
    training: TrainingView | None = None
    """set while the first model trains: the page shows it above everything"""


class KeyMatches(BaseModel):
    query: str
    keys: list[str]
    total: int


# -- trends ---------------------------------------------------------------------------------------


def busyness(trends: TrendStore, key: str, window: str) -> int:
    return sum(p.count for p in trends.query(key, window, limit=BUSY_WINDOWS))


def busiest(trends: TrendStore, window: str, prefix: str, n: int) -> list[str]:
    scored = [(busyness(trends, k, window), k) for k in trends.keys() if k.startswith(prefix)]  # noqa: SIM118 - a TrendStore, not a dict
    return [k for c, k in sorted(scored, key=lambda ck: (-ck[0], ck[1])) if c > 0][:n]


def match_keys(trends: TrendStore, query: str, window: str, limit: int = 20) -> KeyMatches:
    q = query.strip().lower().lstrip("$")
    if not q:
        raise UiError("type part of a ticker, topic or source, e.g. AAPL or energy")
    found = [k for k in trends.keys() if q in k.lower()]  # noqa: SIM118 - a TrendStore, not a dict
    found.sort(key=lambda k: (not k.lower().endswith(":" + q), -busyness(trends, k, window), k))
    return KeyMatches(query=query, keys=found[:limit], total=len(found))


def _points(points: Iterable[TrendPoint]) -> list[SeriesPoint]:
    return [
        SeriesPoint(
            start=p.window_start.timestamp(),
            end=p.window_end.timestamp(),
            count=p.count,
            mean=p.mean_score,
            negative_share=p.negative_share,
            positive_share=p.positive_share,
        )
        for p in points
    ]


def _markers(key: str, alerts: list[AlertView]) -> list[Marker]:
    out = []
    for a in alerts:
        if a.starts_at is None or a.state == "pending":
            continue
        about = a.labels.get("key") or (
            f"ticker:{a.labels['ticker']}" if "," not in a.labels.get("ticker", ",") else None
        )
        if key != "all" and about != key:
            continue
        out.append(
            Marker(
                fingerprint=a.fingerprint,
                rule=a.rule,
                state=a.state,
                at=a.starts_at.timestamp(),
                ended=a.ends_at.timestamp() if a.ends_at else None,
            )
        )
    return out


# -- stories --------------------------------------------------------------------------------------


def ticker_chips(scored: ScoredItem, floor: float = RELEVANCE_FLOOR) -> list[TickerChip]:
    """A chip per ticker: its own entity sentiment and relevance when the record has them, else the
    story's sentiment (no relevance, never dimmed)."""
    names = list(dict.fromkeys([*scored.item.tickers, *(e.ticker for e in scored.entities)]))
    chips = []
    for t in names:
        e = scored.entity(t)
        if e is None:
            chips.append(
                TickerChip(
                    ticker=t, sentiment=scored.sentiment, score=scored.sentiment_score, confidence=scored.confidence
                )
            )
        else:
            chips.append(
                TickerChip(
                    ticker=t,
                    sentiment=e.sentiment,
                    score=e.sentiment_score,
                    confidence=e.confidence,
                    relevance=e.relevance,
                    own=e.method == "entity",
                    method=e.method,
                    dim=e.relevance < floor,
                )
            )
    return chips


def fold_stories(items: Iterable[ScoredItem], limit: int, floor: float = RELEVANCE_FLOOR) -> list[StoryView]:
    """Newest first; near-duplicates (``meta['near_duplicate_of']``) fold into their first copy,
    which is shown (the latest copy when the first is no longer kept) where the group was last active."""
    groups: dict[str, list[ScoredItem]] = {}
    for s in items:
        head = s.item.meta.get("near_duplicate_of") or s.id
        if head not in groups and len(groups) >= limit:
            continue
        groups.setdefault(head, []).append(s)
    out = []
    for head, members in groups.items():
        first = next((m for m in members if m.id == head), members[-1])
        others = [m for m in members if m is not first]
        out.append(
            StoryView(
                id=first.id,
                title=first.item.title,
                source=first.item.source,
                url=first.item.url,
                tickers=list(first.item.tickers),
                chips=ticker_chips(first, floor),
                topic=first.topic,
                sentiment=first.sentiment,
                score=first.sentiment_score,
                confidence=first.confidence,
                model_version=first.model_version,
                published_at=first.item.published_at,
                copies=len(others),
                copy_sources=list(dict.fromkeys(m.item.source for m in others)),
            )
        )
    return out


# -- pipeline -------------------------------------------------------------------------------------

THROUGHPUT = {
    "ingested": "finsent_ingest_new",
    "scored": "finsent_classify_scored",
    "trend_points": "finsent_aggregate_points",
    "alert_records": "finsent_alerts_records",
    "notifications": "finsent_alerts_notifications",
}
LAG = {"classify": "finsent_classify_lag", "aggregate": "finsent_aggregate_lag"}


def metric_sums(registry: CollectorRegistry) -> dict[str, float]:
    """Per metric family: the sum of its ``_total`` samples (counters) or of its samples (gauges)."""
    sums: dict[str, float] = {}
    for family in registry.collect():
        if family.type not in ("counter", "gauge"):
            continue
        wanted = f"{family.name}_total" if family.type == "counter" else family.name
        sums[family.name] = sum(s.value for s in family.samples if s.name == wanted)
    return sums


class RateMeter:
    """Turns counter totals sampled on each request into per-second rates over ``span_s``."""

    def __init__(self, span_s: float = 10.0, clock=time.monotonic) -> None:
        self.span_s = span_s
        self._clock = clock
        self._samples: deque[tuple[float, dict[str, float]]] = deque()
        self._lock = threading.Lock()

    def rates(self, totals: dict[str, float]) -> dict[str, float]:
        now = self._clock()
        with self._lock:
            self._samples.append((now, dict(totals)))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.span_s:
                self._samples.popleft()
            t0, first = self._samples[0]
        dt = now - t0
        if dt <= 0:
            return {}  # one sample: no rate yet
        return {k: max(0.0, (v - first.get(k, 0.0)) / dt) for k, v in totals.items()}


def pipeline(health: Health, registry: CollectorRegistry, meter: RateMeter, store: AlertStore | None) -> PipelineView:
    report = health.readiness()
    sums = metric_sums(registry)
    totals = {name: sums[metric] for name, metric in THROUGHPUT.items() if metric in sums}
    lag = {name: sums[metric] for name, metric in LAG.items() if metric in sums}
    return PipelineView(
        status=report.status,
        stages=[StageView(name=c.name, ok=c.ok, detail=c.detail) for c in report.checks],
        totals=totals,
        rates=meter.rates(totals),
        lag=lag,
        outbox=store.outbox_counts() if store is not None else None,
    )


# -- the overview ---------------------------------------------------------------------------------


def overview(
    *,
    window: str | None,
    windows: list[str],
    pinned: list[str],
    trends: TrendStore | None,
    items: ItemStore | None,
    store: AlertStore | None,
    health: Health,
    registry: CollectorRegistry,
    meter: RateMeter,
    points: int = 96,
    stories: int = 30,
    topics: int = 2,
    tickers: int = 3,
    relevance_floor: float = RELEVANCE_FLOOR,
    training: TrainingView | None = None,
) -> Overview:
    messages: list[str] = []
    missing: list[str] = []
    default = "5m" if "5m" in windows else (windows[0] if windows else "")
    if window is None or window == "":
        window = default
    elif window not in windows:
        raise UiError(f"unknown window {window!r}; choose one of: {', '.join(windows) or '(no aggregator here)'}")
    alerts: list[AlertView] = []
    if store is not None:
        listed = store.list_alerts()
        alerts = [AlertView.of(a) for a in listed if a.state != "pending"][:20]
    else:
        missing.append("alerts")
    series: list[Series] = []
    keys_total = 0
    if trends is not None:
        keys = set(trends.keys())
        keys_total = len(keys)
        chosen: dict[str, str] = {}
        for key in pinned:
            if key in keys:
                chosen.setdefault(key, "pinned")
            else:
                messages.append(
                    f"no trend key {key!r} (yet): keys look like all, topic:<name>, "
                    f"ticker:<SYMBOL> or source:<name>; use the search box to find one"
                )
        chosen.setdefault("all", "all")
        for a in alerts:
            alert_key = a.labels.get("key")
            if a.state == "firing" and alert_key in keys:
                chosen.setdefault(alert_key, "alerting")
        for key in busiest(trends, window, "topic:", topics):
            chosen.setdefault(key, "busiest topic")
        for key in busiest(trends, window, "ticker:", tickers):
            chosen.setdefault(key, "busiest ticker")
        for key, why in chosen.items():
            series.append(
                Series(
                    key=key,
                    why=why,
                    points=_points(trends.query(key, window, limit=points)),
                    markers=_markers(key, alerts),
                )
            )
    else:
        missing.append("trends")
    story_views: list[StoryView] = []
    if items is not None:
        story_views = fold_stories(items.latest(stories * 4), stories, relevance_floor)
    else:
        missing.append("stories")
    return Overview(
        window=window,
        windows=windows,
        keys_total=keys_total,
        series=series,
        stories=story_views,
        alerts=alerts,
        pipeline=pipeline(health, registry, meter, store),
        messages=messages,
        missing=missing,
        training=training,
    )

"""Typed records that travel on the bus.

Every record is a flat JSON object carrying ``kind`` and ``schema_version`` so that a consumer
(in any language) can tell what it is looking at and refuse what it does not understand.
Decoding never raises anything but :class:`RecordDecodeError`, whose message says what was wrong,
so a consumer can route the raw bytes to the dead-letter topic and keep going.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 2
"""2: ``NewsItem.mentions`` (where each ticker was found) and ``ScoredItem.entities`` (sentiment and
relevance per ticker). Version-1 records still decode: both fields default to empty."""

SentimentLabel = Literal["negative", "neutral", "positive"]
SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside the range of UTC dates (years 1-9999)") from None


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
"""A datetime normalised to UTC (naive input is taken as UTC)."""


class RecordDecodeError(ValueError):
    """Raised when bytes on a topic are not a valid record of the expected kind."""


class Record(BaseModel):
    """Base of every record on the bus: frozen, strict about unknown kinds and versions."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    KIND: ClassVar[str] = "record"
    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is newer than this finsent understands ({SCHEMA_VERSION})")
        return v

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


MentionKind = Literal["cashtag", "exchange", "alias", "feed"]
"""How a ticker was found: ``$AAPL``, ``NASDAQ:AAPL``, a company name from the alias table
(``Apple``), or supplied by the feed / source config (then it may not appear in the text at all)."""


class TickerMention(BaseModel):
    """One place a ticker was found in a story. Offsets index ``NewsItem.title`` or ``.body`` (``part``)."""

    model_config = ConfigDict(frozen=True)
    ticker: str = Field(min_length=1, max_length=16)
    how: MentionKind
    part: Literal["title", "body"] | None = Field(
        default=None, description="where it was found; None for a feed-supplied ticker not found in the text"
    )
    start: int | None = Field(default=None, ge=0, description="character offset of the mention in its field")
    end: int | None = Field(default=None, ge=0, description="one past the mention's last character")
    surface: str | None = Field(default=None, max_length=256, description="the mention as written")


class EntitySentiment(BaseModel):
    """The classifier's verdict on one ticker of a story, and how much the story is about it."""

    model_config = ConfigDict(frozen=True)
    ticker: str = Field(min_length=1, max_length=16)
    sentiment: SentimentLabel
    sentiment_probs: dict[str, float]
    sentiment_score: float = Field(ge=-1.0, le=1.0, description="p(positive) - p(negative) for this ticker")
    relevance: float = Field(ge=0.0, le=1.0, description="1: the story is about it; near 0: a passing mention")
    method: Literal["entity", "story"] = Field(
        default="entity",
        description="entity: target-aware head read the mention; story: the story's own "
        "sentiment (a model without an entity head, or the mention is outside what the model read)",
    )

    @property
    def confidence(self) -> float:
        return max(self.sentiment_probs.values()) if self.sentiment_probs else 0.0


class NewsItem(Record):
    """One story, normalised by a connector. ``id`` is stable across fetches and restarts."""

    KIND: ClassVar[str] = "news_item"
    kind: Literal["news_item"] = "news_item"
    id: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, max_length=128)
    url: str | None = None
    title: str = Field(min_length=1)
    body: str = ""
    published_at: UtcDatetime
    fetched_at: UtcDatetime = Field(default_factory=utcnow)
    tickers: tuple[str, ...] = ()
    mentions: tuple[TickerMention, ...] = Field(default=(), description="where each ticker was found (schema 2)")
    language: str = "en"
    novelty: float = Field(default=1.0, ge=0.0, le=1.0, description="1.0 first sighting, lower for repeats")
    meta: dict[str, str] = Field(default_factory=dict)

    @property
    def text(self) -> str:
        """The text the classifier reads: the headline, plus the body when there is one."""
        if self.body and self.body != self.title:
            return f"{self.title}\n{self.body}"
        return self.title

    @property
    def primary_key(self) -> str:
        """Partition key: the primary ticker keeps per-ticker order, else the source."""
        return self.tickers[0] if self.tickers else self.source


class ScoredItem(Record):
    """A story with the classifier's verdict on it."""

    KIND: ClassVar[str] = "scored_item"
    kind: Literal["scored_item"] = "scored_item"
    item: NewsItem
    sentiment: SentimentLabel
    sentiment_probs: dict[str, float]
    sentiment_score: float = Field(ge=-1.0, le=1.0, description="p(positive) - p(negative)")
    topic: str
    topic_probs: dict[str, float]
    model_version: str
    scored_at: UtcDatetime = Field(default_factory=utcnow)
    entities: tuple[EntitySentiment, ...] = Field(
        default=(), description="per ticker: its own sentiment and relevance (schema 2; empty on older records)"
    )

    @property
    def id(self) -> str:
        return self.item.id

    def entity(self, ticker: str) -> EntitySentiment | None:
        """The verdict on ``ticker`` (case-insensitive), or None when the record carries none."""
        t = ticker.upper()
        return next((e for e in self.entities if e.ticker.upper() == t), None)

    @property
    def confidence(self) -> float:
        return max(self.sentiment_probs.values()) if self.sentiment_probs else 0.0


class Evidence(BaseModel):
    """A headline behind a trend or an alert: enough for a trader to judge it without a lookup."""

    model_config = ConfigDict(frozen=True)
    id: str
    title: str
    source: str
    url: str | None = None
    published_at: UtcDatetime
    score: float
    ticker: str | None = Field(default=None, description="for a ticker's trend or alert: the ticker 'score' is for")
    relevance: float | None = Field(default=None, ge=0.0, le=1.0, description="how much the story is about 'ticker'")


class TrendPoint(Record):
    """The state of one window for one key, e.g. ``ticker:AAPL`` over ``15m``."""

    KIND: ClassVar[str] = "trend_point"
    kind: Literal["trend_point"] = "trend_point"
    key: str = Field(description="'all', 'topic:<name>', 'ticker:<SYM>' or 'source:<name>'")
    window: str = Field(description="window name from config, e.g. '15m'")
    window_start: UtcDatetime
    window_end: UtcDatetime
    count: int = Field(ge=0)
    mean_score: float
    negative_share: float = Field(ge=0.0, le=1.0)
    positive_share: float = Field(ge=0.0, le=1.0)
    ewma: float
    weighted_mean: float
    volume_z: float | None = None
    baseline_mean: float | None = None
    top_items: tuple[Evidence, ...] = Field(default=(), description="stories that moved this window most")
    revised: bool = False
    model_version: str | None = None
    emitted_at: UtcDatetime = Field(default_factory=utcnow)
    watermark: UtcDatetime | None = Field(
        default=None,
        description="the aggregator's aligned event-time watermark when it emitted the point (min progress of "
        "the active upstream partitions); the alert stage's clock. Unset on older records.",
    )

    @property
    def event_time(self) -> datetime:
        """When this point happened in event time: the watermark, else (older records) ``emitted_at``."""
        return self.watermark if self.watermark is not None else self.emitted_at


class WatermarkMarker(Record):
    """The re-key stage's progress per upstream partition, written to every partition of the
    repartition topic so the window stage can align its event time on the slowest of them."""

    KIND: ClassVar[str] = "watermark"
    kind: Literal["watermark"] = "watermark"
    topic: str = Field(description="the upstream topic (news.scored)")
    progress: dict[int, float | None] = Field(
        description="upstream partition -> largest event time read from it (Unix seconds; null: none yet)"
    )
    idle: tuple[int, ...] = Field(default=(), description="upstream partitions caught up and silent")
    behind: tuple[int, ...] = Field(
        default=(),
        description="upstream partitions this sender does not own that hold records the re-key group "
        "has not consumed yet: not idle, whatever their owner (perhaps dead) said last",
    )


AlertStatus = Literal["firing", "resolved"]


class Alert(Record):
    """An alert notification, the unit the alert stage publishes and delivers."""

    KIND: ClassVar[str] = "alert"
    kind: Literal["alert"] = "alert"
    fingerprint: str
    rule: str
    status: AlertStatus
    severity: str = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: UtcDatetime
    ends_at: UtcDatetime | None = None
    values: dict[str, float] = Field(default_factory=dict)
    evidence: tuple[Evidence, ...] = ()
    model_version: str | None = None
    generator_url: str | None = None
    revision: int = 0


class LabelRecord(Record):
    """A human label for a text, fed back on ``news.labels`` for retraining (see ``monitor.learning.labels``)."""

    KIND: ClassVar[str] = "label"
    kind: Literal["label"] = "label"
    task: Literal["sentiment", "topic"]
    text: str = Field(min_length=1)
    label: str
    item_id: str | None = None
    labeller: str | None = Field(default=None, max_length=128, description="who labelled; unset = 'anonymous'")
    labelled_at: UtcDatetime = Field(default_factory=utcnow)


class DeadLetter(Record):
    """What a stage could not process, with the reason and where it came from. Nothing is lost."""

    KIND: ClassVar[str] = "dead_letter"
    kind: Literal["dead_letter"] = "dead_letter"
    stage: str
    reason: str
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    key: str | None = None
    payload_b64: str
    failed_at: UtcDatetime = Field(default_factory=utcnow)

    @classmethod
    def wrap(cls, *, stage: str, reason: str, payload: bytes, **where: Any) -> DeadLetter:
        return cls(stage=stage, reason=reason, payload_b64=base64.b64encode(payload).decode("ascii"), **where)

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)


R = TypeVar("R", bound=Record)


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        parts.append(f"{loc}: {e['msg']}")
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f"; (+{more} more)" if more > 0 else "")


def decode(model: type[R], payload: bytes | str | None) -> R:
    """Decode ``payload`` as a ``model`` record or raise :class:`RecordDecodeError` saying why."""
    if payload is None:
        raise RecordDecodeError(f"{model.KIND}: empty payload (tombstone)")
    try:
        record = model.model_validate_json(payload)
    except ValidationError as err:
        raise RecordDecodeError(f"{model.KIND}: {_describe(err)}") from None
    except (ValueError, TypeError) as err:  # bad UTF-8 and the like
        raise RecordDecodeError(f"{model.KIND}: {err}") from None
    return record

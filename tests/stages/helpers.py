"""Builders of hand-made stories for the stage tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from monitor.core.records import EntitySentiment, NewsItem, ScoredItem

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)  # aligned to every window size used


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def news(
    i: int | str,
    t: float = 0.0,
    *,
    title: str | None = None,
    tickers: tuple[str, ...] = ("AAPL",),
    source: str = "wire",
    novelty: float = 1.0,
) -> NewsItem:
    return NewsItem(
        id=f"s{i}",
        source=source,
        title=title or f"story {i}",
        published_at=at(t),
        tickers=tickers,
        novelty=novelty,
        url=f"https://example.test/{i}",
    )


def _label_and_probs(score: float, sentiment: str | None, confidence: float) -> tuple[str, dict[str, float]]:
    label = sentiment or ("positive" if score > 0 else "negative" if score < 0 else "neutral")
    rest = (1.0 - confidence) / 2
    return label, {k: (confidence if k == label else rest) for k in ("negative", "neutral", "positive")}


def entity(
    ticker: str, score: float = 0.0, relevance: float = 1.0, *, sentiment: str | None = None, confidence: float = 1.0
) -> EntitySentiment:
    """The classifier's verdict on one ticker of a story (label from the sign of ``score`` unless given)."""
    label, probs = _label_and_probs(score, sentiment, confidence)
    return EntitySentiment(
        ticker=ticker, sentiment=label, sentiment_probs=probs, sentiment_score=score, relevance=relevance
    )


def scored(
    i: int | str,
    t: float = 0.0,
    score: float = 0.0,
    *,
    sentiment: str | None = None,
    confidence: float = 1.0,
    topic: str = "earnings",
    tickers: tuple[str, ...] = ("AAPL",),
    source: str = "wire",
    novelty: float = 1.0,
    version: str = "v1",
    entities: tuple[EntitySentiment, ...] = (),
    title: str | None = None,
) -> ScoredItem:
    label, probs = _label_and_probs(score, sentiment, confidence)
    return ScoredItem(
        item=news(i, t, tickers=tickers, source=source, novelty=novelty, title=title),
        sentiment=label,
        sentiment_probs=probs,
        sentiment_score=score,
        topic=topic,
        topic_probs={topic: 1.0},
        model_version=version,
        entities=entities,
    )

"""Builders of hand-made stories for the stage tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from monitor.records import NewsItem, ScoredItem

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)  # aligned to every window size used


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def news(i: int | str, t: float = 0.0, *, title: str | None = None, tickers: tuple[str, ...] = ("AAPL",),
         source: str = "wire", novelty: float = 1.0) -> NewsItem:
    return NewsItem(id=f"s{i}", source=source, title=title or f"story {i}", published_at=at(t),
                    tickers=tickers, novelty=novelty, url=f"https://example.test/{i}")


def scored(i: int | str, t: float = 0.0, score: float = 0.0, *, sentiment: str | None = None,
           confidence: float = 1.0, topic: str = "earnings", tickers: tuple[str, ...] = ("AAPL",),
           source: str = "wire", novelty: float = 1.0, version: str = "v1") -> ScoredItem:
    label = sentiment or ("positive" if score > 0 else "negative" if score < 0 else "neutral")
    rest = (1.0 - confidence) / 2
    probs = {k: (confidence if k == label else rest) for k in ("negative", "neutral", "positive")}
    return ScoredItem(item=news(i, t, tickers=tickers, source=source, novelty=novelty), sentiment=label,
                      sentiment_probs=probs, sentiment_score=score, topic=topic, topic_probs={topic: 1.0},
                      model_version=version)

"""What a rule says about one TrendPoint (or one ScoredItem): holds, does not hold, or cannot tell.

A measurement never touches state; :mod:`alerts.engine` decides what it means for the alert.
``holds`` is ``None`` when the data cannot decide yet: the baseline window has not been seen, the
metric is absent (no ``volume_z`` before the aggregator has a baseline), or the window is still
open and has fewer than ``min_count`` stories. A *closed* window short of ``min_count`` does not
hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alerts.ruleset import ChangeRule, SpikeRule, StoryRule, ThresholdRule, TrendRule, compare
from monitor.core.records import Evidence, ScoredItem, TrendPoint


@dataclass(frozen=True)
class Measurement:
    holds: bool | None
    values: dict[str, float] = field(default_factory=dict)
    variables: dict[str, object] = field(default_factory=dict)
    evidence: tuple[Evidence, ...] = ()
    model_version: str | None = None


def metric_value(point: TrendPoint, metric: str) -> float | None:
    value = getattr(point, metric)
    return None if value is None else float(value)


def _enough(rule: TrendRule, point: TrendPoint, closed: bool) -> bool | None:
    if point.count >= rule.min_count:
        return True
    return False if closed else None


def _base_variables(
    rule: ThresholdRule | SpikeRule | ChangeRule, point: TrendPoint, metric: str, value: float
) -> dict[str, object]:
    return {
        "rule": rule.name,
        "severity": rule.severity,
        "key": point.key,
        "subject": point.key.split(":", 1)[1] if ":" in point.key else point.key,
        "window": point.window,
        "metric": metric,
        "value": value,
        "threshold": rule.value,
        "op": rule.op,
        "count": point.count,
    }


def measure_level(rule: ThresholdRule | SpikeRule, point: TrendPoint, closed: bool, max_evidence: int) -> Measurement:
    """``threshold`` and ``spike``: one metric of one window against a value."""
    metric = rule.metric
    value = metric_value(point, metric)
    if value is None:
        return Measurement(holds=None)
    enough = _enough(rule, point, closed)
    holds = None if enough is None else (enough and compare(rule.op, value, rule.value))
    values = {metric: value, "count": float(point.count), "threshold": rule.value}
    if metric != "volume_z" and point.volume_z is not None:
        values["volume_z"] = point.volume_z
    return Measurement(
        holds=holds,
        values=values,
        variables=_base_variables(rule, point, metric, value),
        evidence=point.top_items[:max_evidence],
        model_version=point.model_version,
    )


def measure_change(
    rule: ChangeRule, current: TrendPoint, baseline: TrendPoint | None, closed: bool, max_evidence: int
) -> Measurement:
    """``change``: metric on ``window`` minus metric on ``baseline_window`` of the same key."""
    if baseline is None:
        return Measurement(holds=None)
    now = metric_value(current, rule.metric)
    before = metric_value(baseline, rule.baseline_metric or rule.metric)
    if now is None or before is None:
        return Measurement(holds=None)
    delta = now - before
    enough = _enough(rule, current, closed)
    holds = None if enough is None else (enough and compare(rule.op, delta, rule.value))
    variables = _base_variables(rule, current, rule.metric, delta)
    variables.update(current=now, baseline=before, baseline_window=rule.baseline_window)
    return Measurement(
        holds=holds,
        values={
            "change": delta,
            f"{rule.metric}_{rule.window}": now,
            f"{rule.baseline_metric or rule.metric}_{rule.baseline_window}": before,
            "count": float(current.count),
            "threshold": rule.value,
        },
        variables=variables,
        evidence=current.top_items[:max_evidence],
        model_version=current.model_version,
    )


def story_tickers(rule: StoryRule, scored: ScoredItem) -> tuple[str, ...]:
    """The story's tickers the rule watches (upper case, story order, each once)."""
    tickers = tuple(dict.fromkeys(t.upper() for t in scored.item.tickers))
    if rule.any_ticker:
        return tickers
    return tuple(t for t in tickers if t in rule.tickers)


@dataclass(frozen=True)
class TickerReading:
    """What a story says about one of its tickers: the ticker's own entity sentiment when the record
    carries one (``own``), else the story's; ``relevance`` is ``None`` when the record has none."""

    ticker: str
    score: float
    confidence: float
    relevance: float | None
    own: bool


def ticker_reading(scored: ScoredItem, ticker: str) -> TickerReading:
    e = scored.entity(ticker)
    if e is None:
        return TickerReading(ticker, scored.sentiment_score, scored.confidence, None, False)
    return TickerReading(ticker, e.sentiment_score, e.confidence, e.relevance, True)


def _value_suffix(ticker: str) -> str:
    """A ticker as part of a value name (``score_BRK_B``): Alertmanager annotation-name safe."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in ticker)


def measure_story(rule: StoryRule, scored: ScoredItem) -> Measurement | None:
    """The story alert's measurement, or ``None`` when the story is not one the rule is about.

    Each watched ticker of the story is measured on its *own* sentiment (``scored.entity(t)``, the
    story's when the record has none for it); a ticker whose relevance is below
    ``rule.min_relevance`` or whose confidence is below ``rule.min_confidence`` is ignored. The
    alert lists the tickers that hold (``ticker``, comma-joined in story order); ``value``,
    ``score`` and ``relevance`` are those of the ticker that holds most strongly, ``story_score``
    the story's own score. With several tickers holding, ``values`` also carries
    ``score_<T>``/``relevance_<T>`` per ticker. One evidence entry per ticker that holds."""
    tickers = story_tickers(rule, scored)
    if not tickers:
        return None
    if rule.topics and scored.topic not in rule.topics:
        return None
    if rule.first_seen_only and scored.item.novelty < 1.0:
        return None
    held: list[TickerReading] = []
    for t in tickers:
        r = ticker_reading(scored, t)
        if r.relevance is not None and r.relevance < rule.min_relevance:
            continue
        if r.confidence < rule.min_confidence:
            continue
        if compare(rule.op, r.score, rule.value):
            held.append(r)
    if not held:
        return None
    # the ticker furthest past the threshold speaks for the alert
    lead = min(held, key=lambda r: r.score) if rule.op in ("<", "<=") else max(held, key=lambda r: r.score)
    item = scored.item
    values = {
        "score": lead.score,
        "confidence": lead.confidence,
        "story_score": scored.sentiment_score,
        "threshold": rule.value,
    }
    if lead.relevance is not None:
        values["relevance"] = lead.relevance
    if len(held) > 1:
        for r in held:
            values[f"score_{_value_suffix(r.ticker)}"] = r.score
            if r.relevance is not None:
                values[f"relevance_{_value_suffix(r.ticker)}"] = r.relevance
    evidence = tuple(
        Evidence(
            id=item.id,
            title=item.title,
            source=item.source,
            url=item.url,
            published_at=item.published_at,
            score=r.score,
            ticker=r.ticker,
            relevance=r.relevance,
        )
        for r in held
    )
    names = ",".join(r.ticker for r in held)
    return Measurement(
        holds=True,
        values=values,
        variables={
            "rule": rule.name,
            "severity": rule.severity,
            "value": lead.score,
            "score": lead.score,
            "relevance": lead.relevance,
            "story_score": scored.sentiment_score,
            "threshold": rule.value,
            "op": rule.op,
            "title": item.title,
            "source": item.source,
            "url": item.url or "",
            "ticker": names,
            "subject": names,
            "story_id": item.id,
            "topic": scored.topic,
            "published_at": item.published_at.isoformat(),
        },
        evidence=evidence,
        model_version=scored.model_version,
    )

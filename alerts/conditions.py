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
from monitor.records import Evidence, ScoredItem, TrendPoint


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


def _base_variables(rule: TrendRule, point: TrendPoint, metric: str, value: float) -> dict[str, object]:
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
    tickers = tuple(t.upper() for t in scored.item.tickers)
    if rule.any_ticker:
        return tickers
    return tuple(t for t in tickers if t in rule.tickers)


def measure_story(rule: StoryRule, scored: ScoredItem) -> Measurement | None:
    """The story alert's measurement, or ``None`` when the story is not one the rule is about."""
    tickers = story_tickers(rule, scored)
    if not tickers:
        return None
    if rule.topics and scored.topic not in rule.topics:
        return None
    if rule.first_seen_only and scored.item.novelty < 1.0:
        return None
    if scored.confidence < rule.min_confidence:
        return None
    if not compare(rule.op, scored.sentiment_score, rule.value):
        return None
    item = scored.item
    evidence = Evidence(
        id=item.id, title=item.title, source=item.source, url=item.url,
        published_at=item.published_at, score=scored.sentiment_score,
    )
    return Measurement(
        holds=True,
        values={"score": scored.sentiment_score, "confidence": scored.confidence, "threshold": rule.value},
        variables={
            "rule": rule.name, "severity": rule.severity, "value": scored.sentiment_score,
            "score": scored.sentiment_score, "threshold": rule.value, "op": rule.op,
            "title": item.title, "source": item.source, "url": item.url or "", "ticker": ",".join(tickers),
            "subject": ",".join(tickers), "story_id": item.id, "topic": scored.topic,
            "published_at": item.published_at.isoformat(),
        },
        evidence=(evidence,),
        model_version=scored.model_version,
    )

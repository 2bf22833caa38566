"""Rule evaluation: which rules a trend point or a story concerns, and what each says about it.

Event time. A trend point happens at ``min(watermark, window_end)`` (:func:`trend_time`): the
aggregator's event-time watermark when it emitted the point (``emitted_at`` on records without
one), clipped to the end of its window (a late revision of a closed window does not move time); a
window is closed once that watermark reached its end. A scored story happens at
``min(published_at, scored_at)`` (:func:`story_time`).

Windows. Only the *leading* window of a key and window family is evaluated: for sliding windows
(``15m`` hopping by ``5m``) several windows are open at once, and the one that closes next, the
most complete, speaks for "the last 15 minutes"; younger ones are skipped. A point for a window
that ends before the latest evaluated one is a revision of the past: when it is flagged
``revised``, its readings go to :meth:`~alerts.lifecycle.AlertLifecycle.revise`, which may revise a
firing alert but never starts one.

Measurements. A measurement never touches alert state; :mod:`alerts.lifecycle` decides what it
means for the alert. ``holds`` is ``None`` when the data cannot decide yet: the baseline window has
not been seen, the metric is absent (no ``volume_z`` before the aggregator has a baseline), or the
window is still open and has fewer than ``min_count`` stories. A *closed* window short of
``min_count`` does not hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerts.index import RuleIndex
from alerts.ruleset import ChangeRule, SpikeRule, StoryRule, ThresholdRule, TrendRule
from alerts.settings import EngineOptions
from monitor.core.records import Evidence, ScoredItem, TrendPoint


def compare(op: str, left: float, right: float) -> bool:
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "<":
        return left < right
    return left <= right


def trend_time(point: TrendPoint) -> datetime:
    """When a trend point happens (event time; see the module docstring)."""
    return min(point.event_time, point.window_end)


def story_time(scored: ScoredItem) -> datetime:
    """When a scored story happens (event time)."""
    return min(scored.item.published_at, scored.scored_at)


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


@dataclass(slots=True)
class TrendReading:
    """What one trend rule says about one key at one point's event time."""

    rule: TrendRule
    key: str
    measurement: Measurement
    at: datetime
    """Event time of the point (:func:`trend_time`)."""
    window_end: datetime
    """End of the window measured (for a ``change`` rule, of its ``window``)."""
    revised: bool
    """The measured window's point is flagged ``revised`` (a late change of a window already seen)."""


@dataclass(slots=True)
class PointReadings:
    """The readings of one trend point: of now (``current``), or of a window behind the latest one
    evaluated (``revisions``, only for a point flagged ``revised``). At most one is non-empty."""

    current: Sequence[TrendReading] = ()
    revisions: Sequence[TrendReading] = ()


_NOTHING = PointReadings()


@dataclass(slots=True)
class StoryReading:
    """A story rule that holds for one story."""

    rule: StoryRule
    story: ScoredItem
    measurement: Measurement
    at: datetime
    """Event time of the story (:func:`story_time`)."""


class RuleEvaluation:
    """Turns trend points and stories into readings; its only state is the latest point evaluated
    per ``(key, window)`` (the baseline of ``change`` rules, the leading window of each family)."""

    def __init__(self, index: RuleIndex, latest: dict[tuple[str, str], TrendPoint], options: EngineOptions) -> None:
        self.index = index
        self.latest = latest
        self.options = options
        self._changed: dict[tuple[str, str], TrendPoint] = {}

    def point(self, point: TrendPoint) -> PointReadings:
        rules = self.index.for_point(point.key, point.window)
        if not rules:
            return _NOTHING
        t = trend_time(point)
        slot = (point.key, point.window)
        latest = self.latest.get(slot)
        if latest is not None and point.window_end < latest.window_end:
            if point.revised:
                return PointReadings(revisions=self._revisions(rules, point, t))
            return _NOTHING
        hop = self.options.window_hops.get(point.window) or (point.window_end - point.window_start)
        if point.event_time < point.window_end - hop:
            return _NOTHING  # a younger window of a sliding family: the leading one speaks for now
        self.latest[slot] = point
        self._changed[slot] = point
        return PointReadings(current=self._current(rules, point, t))

    def story(self, scored: ScoredItem) -> list[StoryReading] | None:
        """The story rules that hold for the story; ``None`` when no rule watches its tickers."""
        rules = self.index.for_story(scored.item.tickers)
        if not rules:
            return None
        t = story_time(scored)
        readings = []
        for rule in rules:
            m = measure_story(rule, scored)
            if m is not None:
                readings.append(StoryReading(rule, scored, m, t))
        return readings

    def take_latest(self) -> dict[tuple[str, str], TrendPoint]:
        """The latest points that changed since the last call (to be stored with the batch)."""
        changed, self._changed = self._changed, {}
        return changed

    def _current(self, rules: tuple[TrendRule, ...], point: TrendPoint, t: datetime) -> list[TrendReading]:
        readings = []
        for rule in rules:
            if isinstance(rule, ChangeRule):
                current: TrendPoint | None
                baseline: TrendPoint | None
                if point.window == rule.window:
                    current, baseline = point, self.latest.get((point.key, rule.baseline_window))
                else:
                    current, baseline = self.latest.get((point.key, rule.window)), point
                if current is None:
                    continue
                m = measure_change(
                    rule, current, baseline, current.event_time >= current.window_end, self.options.max_evidence
                )
                readings.append(
                    TrendReading(rule, point.key, m, t, current.window_end, point.revised and current is point)
                )
            elif point.window == rule.window:
                m = measure_level(rule, point, point.event_time >= point.window_end, self.options.max_evidence)  # type: ignore[arg-type]
                readings.append(TrendReading(rule, point.key, m, t, point.window_end, point.revised))
        return readings

    def _revisions(self, rules: tuple[TrendRule, ...], point: TrendPoint, t: datetime) -> list[TrendReading]:
        """A revised point of a past window, measured as closed."""
        readings = []
        for rule in rules:
            if point.window != rule.window:
                continue
            if isinstance(rule, ChangeRule):
                m = measure_change(
                    rule, point, self.latest.get((point.key, rule.baseline_window)), True, self.options.max_evidence
                )
            else:
                m = measure_level(rule, point, True, self.options.max_evidence)  # type: ignore[arg-type]
            readings.append(TrendReading(rule, point.key, m, t, point.window_end, point.revised))
        return readings

"""Event-time window arithmetic for one input partition: pure, no bus, no clock.

A :class:`PartitionWindows` holds, for every trend key routed to one partition, the open and
recently closed windows of every configured :class:`WindowSpec`. It is fed ``(key, ScoredItem)``
pairs in partition order and yields :class:`TrendPoint` s for the windows that changed.

Rules (docs/STREAMING.md has the long form):

* Event time is ``item.published_at``. Windows are aligned to the Unix epoch: a window of
  ``size`` starting every ``hop`` covers ``[start, start + size)``; tumbling means hop == size.
* The watermark. Fed by the aggregator (``aligned``), it is the *minimum* over the active
  upstream (``news.scored``) partitions of each one's progress (largest event time read from it),
  learnt from the re-keyed records and the re-key stage's watermark markers
  (:meth:`PartitionWindows.observe_source`); an idle upstream partition does not hold it back.
  Stand-alone (no sources), it is the largest event time seen. A story is judged against the
  watermark *before* it: for a window ending at ``end``, it counts if ``watermark < end + grace``
  and is a revision (``revised=True``) if ``watermark >= end``. A story that fits no open window
  is dropped and counted as late, with the reason.
* A window's point is emitted only once the watermark has reached the window's start, so each
  key's windows are emitted in event-time order whatever order the upstream partitions were read
  in.
* Idempotent: a story id already counted for a key is ignored (ids are remembered until every
  window they could touch is closed; a redelivery after that is late and dropped anyway).
* Sums are kept as integers in millionths, so results do not depend on arrival order.
* What a story adds to a key (:func:`contribution`): ``ticker:SYM`` gets the story's verdict on
  SYM weighted by its relevance ``r`` (only when ``r >= ticker_relevance_floor``: :func:`trend_keys`);
  every other key, and a ticker without a verdict (schema-1 records), the story's sentiment at
  ``r = 1``. ``mean = sum(r*x) / sum(r)``, shares ``sum(r | label) / sum(r)``, weighted mean with
  weights ``novelty * confidence * r``; ``count`` is the number of stories.
* EWMA runs over the key's consecutive non-empty windows of one spec, oldest first:
  ``e = alpha * mean + (1 - alpha) * e_prev`` (the first non-empty window sets ``e = mean``).
* Volume baseline of the window at ``start``: the counts of the ``baseline_windows`` previous
  non-overlapping windows ``start - i*size`` (i = 1..N), counting empty ones as 0 but only those
  after the key was first seen; ``volume_z = (count - mean) / max(stddev, 1)``; fewer than
  ``min_baseline_windows`` such windows: no baseline.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from monitor.core.records import Evidence, ScoredItem, TrendPoint
from monitor.stages.settings import DEFAULT_TICKER_RELEVANCE_FLOOR, AggregatorSettings, WindowSpec

SCALE = 1_000_000
TICKER_PREFIX = "ticker:"


def units(x: float) -> int:
    return round(x * SCALE)


def ts_of(dt: datetime) -> float:
    return dt.timestamp()


def dt_of(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _ticker_of(key: str) -> str | None:
    return key[len(TICKER_PREFIX) :] if key.startswith(TICKER_PREFIX) else None


def trend_keys(scored: ScoredItem, floor: float = DEFAULT_TICKER_RELEVANCE_FLOOR) -> list[str]:
    """The series one story feeds: all, its topic, its source and each of its tickers
    (``NewsItem.tickers``) whose relevance is at least ``floor``
    (``AggregatorSettings.ticker_relevance_floor``); a ticker the record has no entity verdict for
    (schema-1 records) counts at relevance 1.0."""
    keys = ["all", f"topic:{scored.topic}", f"source:{scored.item.source}"]
    for t in dict.fromkeys(t.upper() for t in scored.item.tickers if t):
        e = scored.entity(t)
        if e is None or e.relevance >= floor:
            keys.append(f"{TICKER_PREFIX}{t}")
    return list(dict.fromkeys(keys))


def contribution(key: str, scored: ScoredItem) -> tuple[float, str, float, float]:
    """What ``scored`` adds to ``key``'s windows: ``(score, label, confidence, weight)``.

    ``ticker:SYM``: the story's verdict on SYM (its :class:`EntitySentiment`) weighted by its
    relevance; without one (schema-1 records), the story's sentiment at weight 1. Every other key:
    the story's sentiment at weight 1.
    """
    ticker = _ticker_of(key)
    e = scored.entity(ticker) if ticker is not None else None
    if e is None:
        return scored.sentiment_score, scored.sentiment, scored.confidence, 1.0
    return e.sentiment_score, e.sentiment, e.confidence, e.relevance


def window_starts(spec: WindowSpec, ts: float) -> list[float]:
    """Starts of every window of ``spec`` that contains event time ``ts`` (oldest first)."""
    hop = spec.hop_s
    last = math.floor(ts / hop) * hop
    n = round(spec.size / hop)
    starts = [last - i * hop for i in range(n)]
    return sorted(s for s in starts if s <= ts < s + spec.size)


def _top_order(row: list[Any]) -> tuple[int, float, str]:
    return (row[0], row[1], row[2])


OLD_ROW_FIELDS = 11
"""Window rows written before per-ticker relevance (schema-1 era) have 11 fields."""


@dataclass
class WindowAgg:
    """The running aggregate of one window; every field is order-independent.

    Each story adds its :func:`contribution` to the key: score ``x``, label, confidence ``c`` and
    weight ``r`` (its relevance to a ticker key; 1 otherwise). Sums are integers in millionths.
    """

    start: float
    count: int = 0
    """stories counted (whatever their weight)"""
    score_u: int = 0
    """sum of x (unweighted)"""
    weight_u: int = 0
    """sum of novelty*c*r"""
    wscore_u: int = 0
    """sum of novelty*c*r*x"""
    negative: int = 0
    """stories labelled negative (unweighted)"""
    positive: int = 0
    top: list[list[Any]] = field(default_factory=list)
    """[rank, -ts, id, title, source, url, ts, score, ticker, relevance] rows, best first."""
    version_ts: float | None = None
    version_id: str = ""
    model_version: str | None = None
    rel_u: int = 0
    """sum of r"""
    rscore_u: int = 0
    """sum of r*x"""
    rneg_u: int = 0
    """sum of r over the stories labelled negative"""
    rpos_u: int = 0
    """sum of r over the stories labelled positive"""

    def add(self, key: str, s: ScoredItem, top_k: int) -> None:
        ts = ts_of(s.item.published_at)
        score, label, confidence, r = contribution(key, s)
        weight = s.item.novelty * confidence * r
        r_u = units(r)
        self.count += 1
        self.score_u += units(score)
        self.weight_u += units(weight)
        self.wscore_u += units(weight * score)
        self.rel_u += r_u
        self.rscore_u += units(r * score)
        if label == "negative":
            self.negative += 1
            self.rneg_u += r_u
        elif label == "positive":
            self.positive += 1
            self.rpos_u += r_u
        if top_k > 0:
            rank = -abs(units(weight * score))
            order = (rank, -ts, s.id)
            if len(self.top) < top_k or order < _top_order(self.top[-1]):
                ticker = _ticker_of(key)
                row = [
                    rank,
                    -ts,
                    s.id,
                    s.item.title,
                    s.item.source,
                    s.item.url,
                    ts,
                    score,
                    ticker,
                    r if ticker is not None else None,
                ]
                bisect.insort(self.top, row, key=_top_order)
                del self.top[top_k:]
        if self.version_ts is None or (ts, s.id) > (self.version_ts, self.version_id):
            self.version_ts, self.version_id, self.model_version = ts, s.id, s.model_version

    @property
    def mean(self) -> float:
        """sum(r*x) / sum(r); 0 when the window carries no weight."""
        return self.rscore_u / self.rel_u if self.rel_u else 0.0  # one correctly rounded division of integers

    @property
    def negative_share(self) -> float:
        return self.rneg_u / self.rel_u if self.rel_u else 0.0

    @property
    def positive_share(self) -> float:
        return self.rpos_u / self.rel_u if self.rel_u else 0.0

    @property
    def weighted_mean(self) -> float:
        return self.wscore_u / self.weight_u if self.weight_u else self.mean

    def to_json(self) -> list[Any]:
        return [
            self.start,
            self.count,
            self.score_u,
            self.weight_u,
            self.wscore_u,
            self.negative,
            self.positive,
            self.top,
            self.version_ts,
            self.version_id,
            self.model_version,
            self.rel_u,
            self.rscore_u,
            self.rneg_u,
            self.rpos_u,
        ]

    @classmethod
    def from_json(cls, row: list[Any]) -> WindowAgg:
        """Also reads rows written before relevance weighting (11 fields: every weight was 1)."""
        w = cls(*row)
        if len(row) == OLD_ROW_FIELDS:
            w.rel_u, w.rscore_u = w.count * SCALE, w.score_u
            w.rneg_u, w.rpos_u = w.negative * SCALE, w.positive * SCALE
        w.top = [list(t) + [None] * (10 - len(t)) for t in w.top]
        return w


@dataclass
class Series:
    """The windows of one (key, spec); ``anchor`` is the EWMA after every evicted window."""

    windows: dict[float, WindowAgg] = field(default_factory=dict)
    anchor: float | None = None


@dataclass
class KeyState:
    first_ts: float | None = None
    seen: dict[str, float] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)


@dataclass
class StateDelta:
    """What changed in a partition since the last checkpoint (written incrementally)."""

    windows: dict[tuple[str, str, float], WindowAgg | None] = field(default_factory=dict)
    """(key, window, start) -> its current aggregate, or None when the window was evicted."""
    anchors: dict[tuple[str, str], float | None] = field(default_factory=dict)
    first_ts: dict[str, float] = field(default_factory=dict)
    seen_added: list[tuple[str, str, float]] = field(default_factory=list)
    """(key, story id, event time) newly counted."""
    seen_cutoff: float | None = None
    """forget remembered ids with an event time before this"""
    seen_removed: list[tuple[str, str]] = field(default_factory=list)
    """(key, story id) forgotten (the changelog's tombstones)"""

    def __bool__(self) -> bool:
        return bool(self.windows or self.anchors or self.first_ts or self.seen_added or self.seen_cutoff is not None)


@dataclass(frozen=True)
class AddResult:
    counted: bool
    duplicate: bool = False
    late_windows: int = 0
    revised_windows: int = 0
    late_reason: str | None = None
    """Why a story was dropped: ``late_in_source`` (behind its own upstream partition's progress
    by more than grace: truly late), ``source_idle`` (its partition had been declared idle and the
    watermark moved on without it) or ``late`` (no upstream progress known: stand-alone use)."""


@dataclass
class SourceState:
    """What the window stage knows of one upstream partition: progress and whether it is idle."""

    progress: float | None = None
    idle: bool = False

    def to_json(self) -> list[Any]:
        return [self.progress, self.idle]


LATE_REASONS = ("late_in_source", "source_idle", "late")


class PartitionWindows:
    """All window state of one input partition (each trend key lives in exactly one partition)."""

    def __init__(
        self,
        config: AggregatorSettings,
        watermark: float | None = None,
        keys: dict[str, KeyState] | None = None,
        sources: int | None = None,
        source_states: dict[int, SourceState] | None = None,
    ) -> None:
        self.config = config
        self.specs = {w.name: w for w in config.windows}
        self.watermark = watermark
        self.keys: dict[str, KeyState] = keys or {}
        self.expected_sources = sources
        """Number of upstream partitions to align on; ``None`` = stand-alone (watermark = max seen)."""
        self.sources: dict[int, SourceState] = dict(source_states or {})
        self.dirty: dict[tuple[str, str, float], bool] = {}
        """(key, window, start) -> revised, for windows whose point has to be (re-)emitted."""
        self.max_size = max(w.size for w in config.windows)
        self.min_hop = min(w.hop_s for w in config.windows)
        self._last_evict_wm: float | None = None
        self._delta = StateDelta()

    @classmethod
    def restore(
        cls,
        config: AggregatorSettings,
        watermark: float | None,
        windows: Iterable[tuple[str, str, list[Any]]],
        anchors: Iterable[tuple[str, str, float | None]],
        first_ts: Iterable[tuple[str, float]],
        seen: Iterable[tuple[str, str, float]],
        sources: int | None = None,
        source_states: dict[int, SourceState] | None = None,
    ) -> PartitionWindows:
        """Rebuild a partition from checkpoint rows (see :mod:`monitor.stages.checkpoint`)."""
        keys: dict[str, KeyState] = {}
        for key, ts in first_ts:
            keys.setdefault(key, KeyState()).first_ts = ts
        for key, name, anchor in anchors:
            keys.setdefault(key, KeyState()).series.setdefault(name, Series()).anchor = anchor
        for key, name, row in windows:
            w = WindowAgg.from_json(row)
            keys.setdefault(key, KeyState()).series.setdefault(name, Series()).windows[w.start] = w
        for key, story_id, ts in seen:
            keys.setdefault(key, KeyState()).seen[story_id] = ts
        part = cls(config, watermark=watermark, keys=keys, sources=sources, source_states=source_states)
        # Windows the watermark had not reached were held back, never emitted: still owed.
        for key, state in keys.items():
            for name, series in state.series.items():
                for start in series.windows:
                    if watermark is None or start > watermark:
                        part.dirty[(key, name, start)] = False
        return part

    # -- event time -------------------------------------------------------------------------
    @property
    def aligned(self) -> bool:
        return self.expected_sources is not None

    def observe_source(self, source: int, progress: float | None, idle: bool = False) -> None:
        """Progress of upstream partition ``source`` (from a re-keyed record or a marker).

        Progress only moves forward; ``idle`` takes it out of the minimum until it speaks again.
        """
        st = self.sources.get(source)
        if st is None:
            st = self.sources[source] = SourceState()
        if progress is not None and (st.progress is None or progress > st.progress):
            st.progress = progress
        st.idle = idle
        self._align()

    def _align(self) -> None:
        """Watermark = min progress over the active sources, never moving back."""
        n = self.expected_sources
        if n is None:
            return
        if any(i not in self.sources for i in range(n)):
            return  # someone has not spoken yet: wait for it
        states = list(self.sources.values())
        active = [s.progress for s in states if not s.idle]
        wm: float
        if active:
            progress = [p for p in active if p is not None]
            if len(progress) < len(active):
                return  # an active source with a backlog it has not read yet
            wm = min(progress)
        else:  # everyone idle (caught up): everything read so far is final
            known = [s.progress for s in states if s.progress is not None]
            if not known:
                return
            wm = max(known)
        if self.watermark is None or wm > self.watermark:
            self.watermark = wm

    def skew(self) -> float | None:
        """Largest minus smallest progress over the active sources (event-time seconds)."""
        known = [s.progress for s in self.sources.values() if not s.idle and s.progress is not None]
        return max(known) - min(known) if known else None

    # -- input ------------------------------------------------------------------------------
    def add(
        self, key: str, scored: ScoredItem, source: int | None = None, source_progress: float | None = None
    ) -> AddResult:
        """Count one story for ``key``; ``source``/``source_progress``: its upstream partition and
        that partition's progress including this story (from the re-keyed record's headers)."""
        ts = ts_of(scored.item.published_at)
        state = self.keys.get(key)
        own = self.sources.get(source) if source is not None else None
        own_progress = own.progress if own is not None else None
        own_was_idle = own.idle if own is not None else False
        if state is not None and scored.id in state.seen:
            if source is not None and self.aligned:
                self.observe_source(source, source_progress if source_progress is not None else ts)
            return AddResult(counted=False, duplicate=True)
        wm = self.watermark
        grace = self.config.grace
        placements: list[tuple[str, float, bool]] = []
        late = 0
        for name, spec in self.specs.items():
            for start in window_starts(spec, ts):
                end = start + spec.size
                if wm is not None and wm >= end + grace:
                    late += 1
                    continue
                placements.append((name, start, wm is not None and wm >= end))
        if self.aligned:
            if source is not None:
                self.observe_source(source, source_progress if source_progress is not None else ts)
        elif wm is None or ts > wm:
            self.watermark = ts
        if not placements:
            if own_progress is not None and ts < own_progress - grace:
                reason = "late_in_source"
            elif own is not None and (own_was_idle or own_progress is None or ts >= own_progress - grace):
                reason = "source_idle"
            else:
                reason = "late"
            return AddResult(counted=False, late_windows=late, late_reason=reason)
        if state is None:
            state = self.keys[key] = KeyState()
        state.seen[scored.id] = ts
        self._delta.seen_added.append((key, scored.id, ts))
        if state.first_ts is None or ts < state.first_ts:
            state.first_ts = ts
            self._delta.first_ts[key] = ts
        revised = 0
        for name, start, is_revision in placements:
            series = state.series.setdefault(name, Series())
            window = series.windows.get(start)
            if window is None:
                window = series.windows[start] = WindowAgg(start=start)
            window.add(key, scored, self.config.top_items)
            self._delta.windows[(key, name, start)] = window
            self._mark(key, name, start, is_revision)
            if is_revision:
                revised += 1
                # Later windows' EWMA builds on this one: re-emit them too.
                for later in series.windows:
                    if later > start:
                        self._mark(key, name, later, True)
        return AddResult(counted=True, late_windows=late, revised_windows=revised)

    def _mark(self, key: str, name: str, start: float, revised: bool) -> None:
        k = (key, name, start)
        self.dirty[k] = self.dirty.get(k, False) or revised

    # -- housekeeping -----------------------------------------------------------------------
    def retain_span(self, spec: WindowSpec) -> float:
        """How far behind the watermark a window's start may lie and still be needed."""
        c = self.config
        return c.grace + spec.size * (c.baseline_windows + 2) + spec.hop_s * c.history_windows

    def evict(self) -> int:
        """Forget windows nobody can update or need for a baseline, and ids nobody can repeat.

        Cheap to call often: it only scans once the watermark has moved by the smallest hop.
        """
        wm = self.watermark
        if wm is None or (self._last_evict_wm is not None and wm < self._last_evict_wm + self.min_hop):
            return 0
        self._last_evict_wm = wm
        evicted = 0
        seen_cutoff = wm - self.config.grace - self.max_size
        for key, state in self.keys.items():
            for name, series in state.series.items():
                spec = self.specs.get(name)
                if spec is None:
                    continue
                cutoff = wm - self.retain_span(spec)
                old = sorted(s for s in series.windows if s < cutoff)
                for start in old:
                    series.anchor = self._ewma_step(series.anchor, series.windows.pop(start))
                    self._delta.windows[(key, name, start)] = None
                    self.dirty.pop((key, name, start), None)
                    evicted += 1
                if old:
                    self._delta.anchors[(key, name)] = series.anchor
            for i in [i for i, t in state.seen.items() if t < seen_cutoff]:
                del state.seen[i]
                self._delta.seen_removed.append((key, i))
        self._delta.seen_cutoff = seen_cutoff
        return evicted

    # -- output -----------------------------------------------------------------------------
    def _ewma_step(self, prev: float | None, window: WindowAgg) -> float | None:
        if window.rel_u == 0:  # empty, or only stories of relevance 0 (floor 0): no opinion
            return prev
        if prev is None:
            return window.mean
        a = self.config.ewma_alpha
        return a * window.mean + (1 - a) * prev

    def point(self, key: str, name: str, start: float, revised: bool = False) -> TrendPoint | None:
        state = self.keys.get(key)
        series = state.series.get(name) if state else None
        window = series.windows.get(start) if series else None
        if state is None or series is None or window is None:
            return None
        spec = self.specs[name]
        c = self.config
        e = series.anchor
        for s in sorted(series.windows):
            if s > start:
                break
            e = self._ewma_step(e, series.windows[s])
        counts = []
        for i in range(1, c.baseline_windows + 1):
            prev_start = start - i * spec.size
            if state.first_ts is None or prev_start + spec.size <= state.first_ts:
                break
            prev = series.windows.get(prev_start)
            counts.append(prev.count if prev else 0)
        baseline_mean = volume_z = None
        if len(counts) >= c.min_baseline_windows:
            baseline_mean = sum(counts) / len(counts)
            std = math.sqrt(sum((x - baseline_mean) ** 2 for x in counts) / len(counts))
            volume_z = (window.count - baseline_mean) / max(std, 1.0)
        n = window.count
        return TrendPoint(
            key=key,
            window=name,
            window_start=dt_of(start),
            window_end=dt_of(start + spec.size),
            count=n,
            mean_score=window.mean,
            negative_share=window.negative_share,
            positive_share=window.positive_share,
            ewma=e if e is not None else 0.0,
            weighted_mean=window.weighted_mean,
            volume_z=volume_z,
            baseline_mean=baseline_mean,
            top_items=tuple(
                Evidence(
                    id=r[2],
                    title=r[3],
                    source=r[4],
                    url=r[5],
                    published_at=dt_of(r[6]),
                    score=r[7],
                    ticker=r[8],
                    relevance=r[9],
                )
                for r in window.top
            ),
            revised=revised,
            model_version=window.model_version,
            watermark=dt_of(self.watermark) if self.watermark is not None else None,
        )

    def take_dirty(self) -> list[TrendPoint]:
        """Points of every window changed since the last call that the watermark has reached
        (``start <= watermark``), by key then window start; later windows stay pending."""
        wm = self.watermark
        if wm is None:
            return []
        ready = sorted((k for k in self.dirty if k[2] <= wm), key=lambda k: (k[0], k[2], k[1]))
        out = []
        for k in ready:
            revised = self.dirty.pop(k)
            p = self.point(*k, revised)
            if p is not None:
                out.append(p)
        return out

    def all_points(self) -> list[TrendPoint]:
        return [
            p
            for key, state in sorted(self.keys.items())
            for name, series in state.series.items()
            for start in sorted(series.windows)
            if (p := self.point(key, name, start)) is not None
        ]

    def take_delta(self) -> StateDelta:
        """Changes since the previous call, for an incremental checkpoint."""
        delta, self._delta = self._delta, StateDelta()
        return delta

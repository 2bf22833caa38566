"""In-process, thread-safe read models the HTTP API (and the alert stage) query.

:class:`TrendStore` keeps the latest :class:`TrendPoint` per (key, window, window_start) for the
most recent windows; it is published as ``ctx.trends``. :class:`ItemStore` keeps the
latest :class:`ScoredItem` per story id (bounded, least recently seen evicted); it is published
as ``ctx.items``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from monitor.core.records import ScoredItem, TrendPoint, as_utc

TrendListener = Callable[[TrendPoint], None]


class TrendStore:
    """The last ``keep_per_series`` windows of each (key, window) series, and, where ``horizons``
    gives a window's span of event time (``history_windows`` hops, as the aggregator keeps its own
    state), only windows that end within that span of the newest window of that size seen: a
    ticker that appears once a day keeps a day of 1-minute windows, not 96 of them reaching back
    months. So memory is bounded by the number of windows a span of event time holds, however
    many sparse keys there are."""

    SWEEP_EVERY = 4096
    """Puts between sweeps of series that stopped receiving points (each put trims its own)."""

    def __init__(self, keep_per_series: int = 96, horizons: Mapping[str, float] | None = None) -> None:
        self.keep_per_series = keep_per_series
        self.horizons = dict(horizons or {})
        self._series: dict[tuple[str, str], dict[datetime, TrendPoint]] = {}
        self._newest: dict[str, datetime] = {}
        self._puts = 0
        self._lock = threading.Lock()
        self._listeners: list[TrendListener] = []

    def subscribe(self, listener: TrendListener) -> None:
        """Call ``listener`` (on the aggregator's thread) with every point put in the store."""
        with self._lock:
            self._listeners.append(listener)

    def put(self, point: TrendPoint, notify: bool = True) -> None:
        """Store ``point`` (replacing the same window's previous one); ``notify=False`` on restore."""
        with self._lock:
            series = self._series.setdefault((point.key, point.window), {})
            series[point.window_start] = point
            if len(series) > self.keep_per_series:
                for start in sorted(series)[: len(series) - self.keep_per_series]:
                    del series[start]
            horizon = self.horizons.get(point.window)
            if horizon is not None:
                newest = self._newest.get(point.window)
                if newest is None or point.window_end > newest:
                    newest = self._newest[point.window] = point.window_end
                _drop_ended_before(series, newest - timedelta(seconds=horizon))
                self._puts += 1
                if self._puts % self.SWEEP_EVERY == 0:
                    self._sweep()
            listeners = list(self._listeners) if notify else []
        for listener in listeners:
            listener(point)

    def _sweep(self) -> None:
        """Drop the windows past their horizon in every series (the lock is held)."""
        cutoffs = {w: n - timedelta(seconds=self.horizons[w]) for w, n in self._newest.items() if w in self.horizons}
        for sk in list(self._series):
            cutoff = cutoffs.get(sk[1])
            if cutoff is None:
                continue
            series = self._series[sk]
            _drop_ended_before(series, cutoff)
            if not series:
                del self._series[sk]

    def query(self, key: str, window: str, since: datetime | None = None, limit: int | None = None) -> list[TrendPoint]:
        """Points of one series, oldest first; ``since`` keeps windows ending after it."""
        cutoff = as_utc(since) if since else None
        with self._lock:
            points = sorted(self._series.get((key, window), {}).values(), key=lambda p: p.window_start)
        if cutoff is not None:
            points = [p for p in points if p.window_end > cutoff]
        if limit is not None:
            points = points[-limit:] if limit > 0 else []
        return points

    def latest(self, key: str, window: str) -> TrendPoint | None:
        points = self.query(key, window, limit=1)
        return points[0] if points else None

    def keys(self) -> list[str]:
        with self._lock:
            return sorted({k for k, _ in self._series})

    def windows(self) -> list[str]:
        with self._lock:
            return sorted({w for _, w in self._series})


def _drop_ended_before(series: dict[datetime, TrendPoint], cutoff: datetime) -> None:
    for start in [s for s, p in series.items() if p.window_end < cutoff]:
        del series[start]


class ItemStore:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, ScoredItem] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, scored: ScoredItem) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[scored.id] = scored
            self._items.move_to_end(scored.id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, item_id: str) -> ScoredItem | None:
        with self._lock:
            return self._items.get(item_id)

    def latest(self, n: int) -> list[ScoredItem]:
        """The ``n`` most recently stored items, newest first."""
        with self._lock:
            out: list[ScoredItem] = []
            for item in reversed(self._items.values()):
                if len(out) >= n:
                    break
                out.append(item)
            return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

"""The trend read model keeps a bounded history per series: at most ``keep_per_series`` windows,
and, given a horizon per window size, only windows that end within that span of event time of the
newest window of that size. A ticker seen once a day must not keep 96 one-minute windows reaching
back three months (the memory of a long-running daemon with thousands of sparse tickers)."""

from __future__ import annotations

from monitor.stages.recent import TrendStore
from tests.alerts.helpers import point


def starts(store: TrendStore, key: str, window: str = "1m") -> list[float]:
    return [(p.window_start - point(start=0).window_start).total_seconds() / 60 for p in store.query(key, window)]


def test_count_bound_alone_keeps_the_last_windows_of_a_series():
    store = TrendStore(keep_per_series=3)
    for m in range(0, 10 * 60 * 24, 60 * 24):  # one 1-minute window a day, ten days
        store.put(point("ticker:RARE", "1m", start=m, size=1))
    assert starts(store, "ticker:RARE") == [7 * 1440, 8 * 1440, 9 * 1440]


def test_a_sparse_series_keeps_only_the_windows_within_the_horizon():
    store = TrendStore(keep_per_series=96, horizons={"1m": 96 * 60})  # 96 one-minute hops
    for day in range(10):
        store.put(point("ticker:RARE", "1m", start=day * 1440, size=1))
        store.put(point("all", "1m", start=day * 1440 + 30, size=1))
    # the newest 1m window ends at day 9 + 31 min: only windows ending after 96 min before it stay
    assert starts(store, "ticker:RARE") == [9 * 1440]
    assert starts(store, "all") == [9 * 1440 + 30]


def test_a_series_that_stopped_is_swept_when_others_move_on():
    store = TrendStore(keep_per_series=96, horizons={"1m": 96 * 60})
    store.SWEEP_EVERY = 10
    store.put(point("ticker:GONE", "1m", start=0, size=1))
    for m in range(200, 230):  # event time moves on for another key only
        store.put(point("all", "1m", start=m, size=1))
    assert store.query("ticker:GONE", "1m") == []
    assert "ticker:GONE" not in store.keys()  # noqa: SIM118 - a TrendStore, not a dict
    assert len(store.query("all", "1m")) == 30


def test_windows_without_a_horizon_and_other_sizes_are_untouched():
    store = TrendStore(keep_per_series=96, horizons={"1m": 60 * 60})
    store.put(point("all", "1h", start=0, size=60))
    store.put(point("all", "1m", start=10_000, size=1))
    assert len(store.query("all", "1h")) == 1  # no horizon for 1h: only the count bound applies

"""Exact window arithmetic on hand-built streams (no bus)."""

from __future__ import annotations

import math

import pytest

from monitor.stages.checkpoint import CheckpointStore, PartitionDelta
from monitor.stages.settings import AggregatorSettings, WindowSpec
from monitor.stages.windows import PartitionWindows, trend_keys, ts_of, window_starts
from tests.stages.helpers import T0, at, scored

BASE = ts_of(T0)


def config(**kw) -> AggregatorSettings:
    defaults = dict(
        windows=[{"name": "1m", "size": "1m"}],
        grace="30s",
        baseline_windows=3,
        min_baseline_windows=2,
        ewma_alpha=0.5,
        top_items=2,
    )
    return AggregatorSettings(**{**defaults, **kw})


def only(points, window="1m"):
    return {p.window_start: p for p in points if p.window == window}


def test_durations_and_specs():
    assert AggregatorSettings(grace="15m").grace == 900 and AggregatorSettings(grace="1h30m").grace == 5400
    assert AggregatorSettings(flush_interval="250ms").flush_interval == 0.25
    assert AggregatorSettings(grace=90).grace == 90.0
    with pytest.raises(ValueError):
        AggregatorSettings(grace="soon")
    with pytest.raises(ValueError):
        WindowSpec(name="bad", size="5m", hop="2m")  # size not a multiple of hop
    with pytest.raises(ValueError):
        AggregatorSettings(windows=[{"name": "a", "size": 60}, {"name": "a", "size": 120}])


def test_tumbling_edges():
    spec = WindowSpec(name="1m", size=60)
    assert window_starts(spec, BASE) == [BASE]
    assert window_starts(spec, BASE + 59.999) == [BASE]
    assert window_starts(spec, BASE + 60) == [BASE + 60]  # end is exclusive


def test_sliding_edges():
    spec = WindowSpec(name="15m", size="15m", hop="5m")
    assert window_starts(spec, BASE) == [BASE - 600, BASE - 300, BASE]
    assert window_starts(spec, BASE + 299) == [BASE - 600, BASE - 300, BASE]
    assert window_starts(spec, BASE + 300) == [BASE - 300, BASE, BASE + 300]


def test_counts_shares_means_and_keys():
    w = PartitionWindows(config())
    for i, (t, s) in enumerate([(0, 0.5), (10, -0.5), (20, 1.0), (30, 0.0)]):
        w.add("ticker:AAPL", scored(i, t, s))
    (p,) = w.take_dirty()
    assert (p.key, p.window, p.window_start, p.window_end) == ("ticker:AAPL", "1m", at(0), at(60))
    assert p.count == 4
    assert p.mean_score == pytest.approx(0.25)
    assert p.negative_share == 0.25 and p.positive_share == 0.5
    assert p.revised is False and p.model_version == "v1"
    assert [e.id for e in p.top_items] == ["s2", "s1"]  # |score| * weight, ties newest first
    assert p.top_items[0].title == "story 2" and p.top_items[0].published_at == at(20)
    assert trend_keys(scored(1, tickers=("aapl", "MSFT", "AAPL"), source="rss", topic="mna")) == [
        "all",
        "topic:mna",
        "source:rss",
        "ticker:AAPL",
        "ticker:MSFT",
    ]


def test_weighted_mean_uses_novelty_and_confidence():
    w = PartitionWindows(config())
    w.add("all", scored(1, 0, 1.0, confidence=1.0, novelty=1.0))
    w.add("all", scored(2, 1, -1.0, confidence=0.5, novelty=0.5))
    (p,) = w.take_dirty()
    assert p.mean_score == 0.0
    assert p.weighted_mean == pytest.approx((1.0 - 0.25) / 1.25)


def test_redelivered_story_is_not_counted_twice():
    w = PartitionWindows(config())
    assert w.add("all", scored(1, 5, 0.5)).counted
    again = w.add("all", scored(1, 5, 0.5))
    assert again.duplicate and not again.counted
    (p,) = w.take_dirty()
    assert p.count == 1


def test_late_within_grace_revises_and_after_grace_is_dropped():
    w = PartitionWindows(config(grace="30s"))
    w.add("all", scored(1, 10, 0.2))
    w.add("all", scored(2, 75, 0.2))  # watermark 75: window [0,60) ended, grace until 90
    w.take_dirty()
    r = w.add("all", scored(3, 20, -1.0))  # late, within grace
    assert r.counted and r.revised_windows == 1
    pts = only(w.take_dirty())
    assert pts[at(0)].count == 2 and pts[at(0)].revised is True
    assert pts[at(60)].revised is True  # its EWMA builds on the revised window
    w.add("all", scored(4, 95, 0.0))  # watermark 95 >= 60 + 30: [0,60) closed
    w.take_dirty()
    r = w.add("all", scored(5, 30, 1.0))
    assert not r.counted and r.late_windows == 1
    assert w.take_dirty() == []
    assert w.point("all", "1m", BASE).count == 2


def test_ewma_runs_over_consecutive_nonempty_windows():
    w = PartitionWindows(config(ewma_alpha=0.5))
    w.add("all", scored(1, 0, 1.0))  # window 0: mean 1
    w.add("all", scored(2, 130, -1.0))  # window 120: mean -1 (window 60 empty: no step)
    w.add("all", scored(3, 190, 0.5))  # window 180: mean 0.5
    pts = only(w.take_dirty())
    assert pts[at(0)].ewma == 1.0
    assert pts[at(120)].ewma == pytest.approx(0.0)
    assert pts[at(180)].ewma == pytest.approx(0.25)


def test_volume_z_against_trailing_baseline():
    w = PartitionWindows(config(baseline_windows=3, min_baseline_windows=2))
    n = 0
    for minute, count in enumerate([2, 4, 0, 9]):  # window 2 is empty (count 0)
        for _ in range(count):
            w.add("all", scored(n, minute * 60 + 1, 0.1))
            n += 1
    pts = only(w.take_dirty())
    assert pts[at(0)].volume_z is None and pts[at(0)].baseline_mean is None  # nothing before first story
    assert pts[at(60)].volume_z is None  # 1 window < min 2
    last = pts[at(180)]
    mean = (2 + 4 + 0) / 3
    std = math.sqrt(((2 - mean) ** 2 + (4 - mean) ** 2 + (0 - mean) ** 2) / 3)
    assert last.baseline_mean == pytest.approx(mean)
    assert last.volume_z == pytest.approx((9 - mean) / std)


def test_sliding_window_counts_story_in_each_overlapping_window():
    w = PartitionWindows(config(windows=[{"name": "3m", "size": "3m", "hop": "1m"}]))
    w.add("all", scored(1, 61, 0.5))
    pts = only(w.take_dirty(), "3m")
    assert sorted(pts) == [at(-60), at(0), at(60)]
    assert all(p.count == 1 for p in pts.values())
    assert pts[at(0)].window_end == at(180)


def checkpoint_roundtrip(w: PartitionWindows, store: CheckpointStore, cfg) -> PartitionWindows:
    store.save("t", {0: PartitionDelta(next_offset=1, watermark=w.watermark, state=w.take_delta())})
    cp = store.load("t", 0)
    return PartitionWindows.restore(cfg, cp.watermark, cp.windows, cp.anchors, cp.first_ts, cp.seen)


def test_eviction_keeps_results_and_incremental_checkpoints_restore_exactly(tmp_path):
    cfg = config(history_windows=1, baseline_windows=2, min_baseline_windows=1)
    store = CheckpointStore(tmp_path / "state.db", group="g")
    w = PartitionWindows(cfg)
    for i in range(15):
        w.add("all", scored(i, i * 60 + 1, 0.5 if i % 2 else -0.5))
    checkpoint_roundtrip(w, store, cfg)  # a first checkpoint, then more changes on top of it
    for i in range(15, 30):
        w.add("all", scored(i, i * 60 + 1, 0.5 if i % 2 else -0.5))
        w.add("ticker:X", scored(i, i * 60 + 1, 0.25))
    before = {(p.key, p.window_start): p for p in w.take_dirty()}
    assert w.evict() > 0
    restored = checkpoint_roundtrip(w, store, cfg)
    assert restored.keys.keys() == w.keys.keys()
    for key in ("all", "ticker:X"):
        assert sorted(restored.keys[key].series["1m"].windows) == sorted(w.keys[key].series["1m"].windows)
        assert restored.keys[key].seen == w.keys[key].seen
        last = (key, at(29 * 60))
        a = restored.point(key, "1m", ts_of(last[1]))
        assert a.model_dump(exclude={"emitted_at"}) == before[last].model_dump(exclude={"emitted_at"})
    assert "s0" not in restored.keys["all"].seen  # pruned: past every window it could touch
    assert restored.add("all", scored(29, 29 * 60 + 1, 0.5)).duplicate
    store.close()

"""The streaming aggregator's trend points equal an offline batch aggregation of the same stories,
whatever order the upstream partitions are read in (scripted in-process bus; the real-broker
version is tests/e2e/test_backfill_alert.py).

(a) stories in event-time order, produced while the stages run;
(b) the same stories spread over three partitions, consumed as a backlog in chunks (one
    partition's whole backlog before the next: the order that broke the old max-watermark);
(c) (b) with the aggregator crashing mid-stream and restarting from its checkpoint;
(d) one upstream partition paused for minutes of event time while the others run on.

On every path: no story late, no point revised, every window equal to the batch answer. Most
stories carry per-ticker verdicts (their own sentiment, relevance above and below the floor), so
the ticker trends are relevance-weighted; the batch answer (tests/stages/oracle.py) is written
from docs/STREAMING.md and imports nothing from monitor/stages/.
"""

from __future__ import annotations

import zlib

import pytest

from monitor.stages.checkpoint import CheckpointStore
from monitor.stages.windows import PartitionWindows, ts_of
from tests.stages.helpers import T0
from tests.stages.kafka_helpers import wait_until
from tests.stages.streaming_harness import Aggregator, FakeClock, batch_aggregate, diff, keys_of, story, summary

N = 900
STEP = 0.5  # seconds of event time between stories: 450 s in all
AGG = {
    "windows": [{"name": "1m", "size": "1m"}, {"name": "3m", "size": "3m", "hop": "1m"}],
    "grace": "20s",
    "flush_interval": "50ms",
    "poll_max_records": 60,
    "history_windows": 200,
    "idle_timeout": "300ms",
    "group_id": "agg-test",
}
STORIES = [story(i, i * STEP) for i in range(N)]


def partition_of(s) -> int:
    """The news.scored partition the in-process bus puts a story in (3 partitions)."""
    return zlib.crc32(s.item.primary_key.encode()) % 3


def settle(agg: Aggregator, want: dict, timeout_s: float = 60) -> dict:
    def done():
        if agg.errors:
            raise agg.errors[0]
        return summary(agg.points()) == want

    try:
        wait_until(done, timeout_s, "the streamed points to equal the batch aggregation")
    except AssertionError:
        raise AssertionError(diff(summary(agg.points()), want)) from None
    return agg.points()


def assert_on_time(agg: Aggregator) -> None:
    assert not [p for p in agg.all_points() if p.revised], "an on-time story produced a revision"
    m = agg.metrics
    late = sum(m.late_dropped.labels(r)._value.get() for r in ("late_in_source", "source_idle", "late"))
    assert late == 0


@pytest.fixture
def want(tmp_path):
    agg = Aggregator(tmp_path / "ref", AGG)
    return batch_aggregate(agg.settings.aggregator, STORIES)


def test_event_time_order(tmp_path, want):
    agg = Aggregator(tmp_path, AGG)
    agg.start()
    try:
        for i in range(0, N, 30):
            agg.produce(STORIES[i : i + 30])
        settle(agg, want)
        assert_on_time(agg)
    finally:
        agg.stop()


def test_backfill_of_several_partitions_read_in_chunks(tmp_path, want):
    agg = Aggregator(tmp_path, AGG)
    agg.produce(STORIES)  # the whole backlog is there before the aggregator starts
    sizes = [len(agg.bus._logs[agg.settings.topics.scored][p]) for p in range(3)]
    assert min(sizes) > 100  # really spread over the partitions
    agg.start()
    try:
        points = settle(agg, want)
        assert_on_time(agg)
    finally:
        agg.stop()
    # The stand-alone window code fed in event-time order gives the same points, EWMA and
    # baselines included.
    ref = PartitionWindows(agg.settings.aggregator)
    floor = agg.settings.aggregator.ticker_relevance_floor
    for s in sorted(STORIES, key=lambda s: s.item.published_at):
        for key in ("all", "ticker:AAPL", "ticker:INTC", "topic:macro", "source:rss"):
            if key in keys_of(s, floor):
                ref.add(key, s)
    for p in ref.all_points():
        got = points[(p.key, p.window, p.window_start)]
        assert got.model_dump(exclude={"emitted_at", "watermark", "revised"}) == p.model_dump(
            exclude={"emitted_at", "watermark", "revised"}
        )


def test_backfill_with_a_crash_and_restart_mid_stream(tmp_path, want):
    agg = Aggregator(tmp_path, AGG)
    agg.produce(STORIES)
    agg.start(crash_after_polls=12)  # both stages die mid-backlog, no final flush
    wait_until(lambda: not agg.alive(), 30, "the crash")
    assert agg.errors == []
    store = CheckpointStore(agg.checkpoint, group="agg-test")
    saved = [
        store.load(agg.settings.aggregator.repartition_topic or f"{agg.settings.topics.scored}.bykey", p)
        for p in range(3)
    ]
    store.close()
    assert any(cp is not None and cp.sources for cp in saved), saved  # the watermarks were checkpointed
    assert summary(agg.points()) != want  # it really was mid-stream
    agg.start()
    try:
        settle(agg, want)
        assert_on_time(agg)
    finally:
        agg.stop()


def test_one_partition_paused_for_minutes_of_event_time(tmp_path, want):
    clock = FakeClock()  # wall time stands still: the paused partition never times out as idle
    agg = Aggregator(tmp_path, {**AGG, "idle_timeout": "30s"})
    topic = agg.settings.topics.scored
    paused = 2
    cut = 120.0  # the paused partition stops here; the others run on to 450 s
    first = [s for s in STORIES if partition_of(s) != paused or ts_of(s.item.published_at) - ts_of(T0) < cut]
    rest = [s for s in STORIES if s not in first]
    assert len(rest) > 100
    agg.start(clock=clock)
    try:
        agg.produce(first)
        others = [p for p in range(3) if p != paused]
        ends = {p: len(agg.bus._logs[topic][p]) for p in others}
        wait_until(lambda: all(agg.read_position(p) == ends[p] for p in others), 30, "the others to be read")
        clock.now += 5  # well under the idle timeout
        held = wait_until(lambda: agg.points() or None, 30, "the first points")
        # While it is paused, no window after the paused partition's progress is emitted.
        latest = max(p.window_start for p in held.values())
        assert ts_of(latest) - ts_of(T0) <= cut
        agg.produce(rest)
        clock.now += 60  # the end: everyone caught up and silent, so idle; the last windows close
        settle(agg, want)
        assert_on_time(agg)
    finally:
        agg.stop()


def test_an_idle_partition_stops_holding_the_watermark_back(tmp_path):
    clock = FakeClock()
    agg = Aggregator(tmp_path, {**AGG, "idle_timeout": "10s"})
    topic = agg.settings.topics.scored
    early = [s for s in STORIES if ts_of(s.item.published_at) - ts_of(T0) < 60]
    agg.produce(early)
    agg.start(clock=clock)
    try:
        ends = {p: len(agg.bus._logs[topic][p]) for p in range(3)}
        wait_until(lambda: all(agg.read_position(p) == ends[p] for p in range(3)), 30, "the backlog to be read")
        # Only partition 0 runs on; 1 and 2 fall silent. Until the idle timeout they hold it back.
        on0 = [s for s in STORIES[len(early) :] if partition_of(s) == 0]
        agg.produce(on0)
        wait_until(lambda: agg.read_position(0) == len(agg.bus._logs[topic][0]), 30, "partition 0 to be read")
        assert all(p.window_start <= early[-1].item.published_at for p in agg.points().values())
        clock.now += 11
        wait_until(
            lambda: any(p.window_start > early[-1].item.published_at for p in agg.points().values()),
            30,
            "the watermark to move on without the idle partitions",
        )
        # Partition 1 speaks again with the stories that follow its last one: on time in their own
        # partition, but the watermark moved on while it was idle. Dropped, and the reason says so.
        resumed = [s for s in STORIES[len(early) : len(early) + 30] if partition_of(s) == 1]
        agg.produce(resumed)
        wait_until(
            lambda: agg.metrics.late_dropped.labels("source_idle")._value.get() > 0, 30, "the late drop to be counted"
        )
        assert agg.metrics.late_dropped.labels("late_in_source")._value.get() == 0
        # and per key, for the keys with series of their own
        assert agg.metrics.key_late_dropped.labels("all")._value.get() == len(resumed)
    finally:
        agg.stop()


def test_a_partition_moving_to_another_host_is_restored_from_the_changelog(tmp_path, want):
    agg = Aggregator(tmp_path / "host-a", AGG)
    bykey = agg.settings.aggregator.repartition_topic or f"{agg.settings.topics.scored}.bykey"
    agg.produce(STORIES[: N // 2])
    agg.start()
    wait_until(
        lambda: all(agg.read_position(p) == len(agg.bus._logs[agg.settings.topics.scored][p]) for p in range(3)),
        30,
        "host A to read the first half",
    )
    store = CheckpointStore(agg.checkpoint, group="agg-test")
    wait_until(
        lambda: (
            sum((cp.next_offset if (cp := store.load(bykey, p)) else 0) for p in range(3))
            == sum(len(agg.bus._logs[bykey][p]) for p in range(3))
        ),
        30,
        "host A to checkpoint all of it",
    )
    agg.stop()
    done = {p: store.load(bykey, p).next_offset for p in range(3)}
    store.close()
    # Retention has dropped what host A consumed: a replay from the start could not rebuild it.
    for p, end in done.items():
        log = agg.bus._logs[bykey][p].records
        log[:end] = [m.__class__(m.topic, m.partition, m.offset, m.key, b"gone") for m in log[:end]]
    agg.checkpoint = tmp_path / "host-b" / "state" / "aggregate.db"  # another host: no local file
    agg.start()
    try:
        wait_until(lambda: agg.metrics.restores.labels("changelog")._value.get() == 3, 30, "the restores")
        assert agg.metrics.restores.labels("log")._value.get() == 0
        agg.produce(STORIES[N // 2 :])
        settle(agg, want)
        assert_on_time(agg)
    finally:
        agg.stop()
    store = CheckpointStore(agg.checkpoint, group="agg-test")  # host B's file is the fast path now
    assert all(store.load(bykey, p) is not None for p in range(3))
    store.close()

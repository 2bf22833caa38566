"""When the re-key stage declares an upstream (``news.scored``) partition idle, so that it no longer
holds the aggregator's watermark back.

The catch-up case that lost stories (issue 13): after a restart the classify worker reads one
``news.raw`` partition's backlog after another, so the ``news.scored`` partitions it has not
reached yet stay silent for a long time while their stories still wait upstream. Declaring them
idle then lets the watermark run ahead and their stories, on time, are dropped as late.
"""

from __future__ import annotations

from monitor.core.bus.base import Backlog, co_partition
from monitor.stages.aggregate import SourceTracker

IDLE = 3.0
CAP = SourceTracker.SILENT_FACTOR * IDLE


def tracker() -> SourceTracker:
    t = SourceTracker(IDLE, started=0.0, partitions=3)
    t.assign({0, 1, 2})
    for p in range(3):
        t.read(p, 1_000.0 + p, now=0.0)
    return t


def test_a_partition_whose_raw_backlog_is_being_worked_through_stays_active_however_long():
    t = tracker()
    read_to_end = {0: 0, 1: 0, 2: 0}
    committed = 0
    for now in range(1, int(4 * CAP)):  # classify is busy on raw partition 0 the whole time
        committed += 40
        t.read(0, 1_000.0 + now, now=float(now))
        t.refresh_idle(read_to_end, Backlog({0: 500, 1: 800, 2: 800}, committed=committed), float(now))
        assert t.idle == set(), now
    # raw partition 1 drained: scored 1 has nothing more on its way and goes idle after the timeout
    t.refresh_idle(read_to_end, Backlog({0: 500, 1: 0, 2: 800}, committed=committed + 40), 4 * CAP)
    assert t.idle == {1}


def test_nothing_on_its_way_is_idle_after_the_timeout():
    t = tracker()
    quiet = Backlog({0: 0, 1: 0, 2: 0}, committed=900)
    t.refresh_idle({0: 0, 1: 0, 2: 0}, quiet, IDLE - 0.5)
    assert t.idle == set()
    t.refresh_idle({0: 0, 1: 0, 2: 0}, quiet, IDLE + 0.5)
    assert t.idle == {0, 1, 2}
    t.read(2, 2_000.0, now=IDLE + 1)  # speaks again: active at once
    assert t.idle == {0, 1}


def test_records_still_to_read_keep_a_partition_active():
    t = tracker()
    t.refresh_idle({0: 0, 1: 5, 2: 0}, Backlog({0: 0, 1: 0, 2: 0}), 10 * CAP)
    assert t.idle == {0, 2}


def test_a_stalled_classify_group_cannot_stall_every_other_key_forever():
    t = tracker()
    stuck = Backlog({0: 0, 1: 300, 2: 0}, committed=1_200)  # nobody makes progress on raw 1
    t.refresh_idle({0: 0, 1: 0, 2: 0}, stuck, 1.0)
    for now in (CAP / 2, CAP - 1):
        t.refresh_idle({0: 0, 1: 0, 2: 0}, stuck, now)
        assert 1 not in t.idle
    t.refresh_idle({0: 0, 1: 0, 2: 0}, stuck, CAP + 1.5)
    assert 1 in t.idle


def test_an_unknown_backlog_means_something_may_be_on_its_way():
    t = tracker()
    t.refresh_idle({0: 0, 1: 0, 2: 0}, None, 5 * IDLE)
    assert t.idle == set()


def test_co_partitioning_maps_raw_partitions_onto_scored_ones():
    assert [co_partition(p, 3) for p in range(6)] == [0, 1, 2, 0, 1, 2]
    backlog = Backlog({0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6})
    assert [backlog.feeding(q, 3) for q in range(3)] == [5, 7, 9]
    assert backlog.feeding(0, 0) == 21  # partition count unknown: all of it


def test_an_unreachable_broker_marks_nobody_idle():
    t = tracker()
    for now in (1.0, CAP / 2, 2 * CAP):  # no lag, no backlog: the broker is down
        t.refresh_idle(None, None, now)
        assert t.idle == set()


def test_a_dead_instances_idle_claim_is_overruled_by_a_live_one_that_sees_the_backlog():
    """Two re-key instances: A owns scored 0 and 1, calls them idle, and dies. New stories land on
    0, 1 and 2 before the group rebalances A's partitions to B. B owns 2. Before B's records move
    event time, B's marker says 0 and 1 are behind (the group has not consumed their new records),
    so the window stage's watermark waits for them instead of dropping them as late."""
    from monitor.stages.settings import AggregatorSettings
    from monitor.stages.windows import PartitionWindows

    windows = PartitionWindows(AggregatorSettings(windows=[{"name": "1m", "size": "1m"}]), sources=3)
    a = SourceTracker(IDLE, started=0.0, partitions=3)
    a.assign({0, 1})
    for p in (0, 1):
        a.read(p, 1_000.0, now=0.0)
    a.refresh_idle({0: 0, 1: 0}, Backlog({0: 0, 1: 0, 2: 0}), IDLE + 1)
    b = SourceTracker(IDLE, started=0.0, partitions=3)
    b.assign({2})
    b.read(2, 1_000.0, now=0.0)

    def deliver(marker):  # as TrendStage._marker does
        for source in marker.behind:
            windows.observe_source(source, None)
        for source, progress in marker.progress.items():
            windows.observe_source(source, progress, source in marker.idle)

    deliver(a.marker("news.scored"))  # A's last word: 0 and 1 idle; then A dies
    assert a.idle == {0, 1}
    # new records on every scored partition; B reads its own (2) far ahead in event time
    assert b.refresh_behind(Backlog({0: 40, 1: 35, 2: 50})) and b.behind == {0, 1}
    b.read(2, 1_300.0, now=IDLE + 2)
    deliver(b.marker("news.scored"))
    assert windows.watermark is None or windows.watermark <= 1_000.0  # held by 0 and 1, not 1,300
    # the group hands 0 and 1 to B: owned now, they leave "behind" and B's own rules apply
    b.assign({0, 1})
    assert b.marker("news.scored").behind == ()
    assert not b.refresh_behind(None) and b.behind == set()


def test_nothing_unconsumed_elsewhere_means_nothing_behind():
    b = SourceTracker(IDLE, started=0.0, partitions=3)
    b.assign({2})
    assert not b.refresh_behind(Backlog({0: 0, 1: 0, 2: 7}))  # its own backlog is not "behind"
    assert b.behind == set() and b.marker("news.scored").behind == ()

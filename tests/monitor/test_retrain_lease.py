"""A retrain standby pair in one process, on the in-process bus: one lease holder at a time, a
run cancelled when its holder goes, the run it left unfinished taken over by the standby.

The same through real processes and the real broker, with ``kill -9``, is in
tests/security/test_retrain_standby.py.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry

from models.runs import RunReports
from monitor.core.bus import GroupLease, TopicPartition
from monitor.core.bus.memory import MemoryBus
from monitor.learning.labels import LabelStore
from monitor.learning.metrics import RetrainMetrics
from monitor.learning.retrain import ChildCancelled, RetrainScheduler, missed_fire
from tests.monitor.test_retrain import _comparison, _registry_with_champion, _votes
from tests.waiting import settled, wait_until


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_missed_fire_is_the_last_fire_time_no_finished_run_answered():
    daily = "0 3 * * *"
    assert missed_fire(daily, [], _utc(2026, 12, 7, 3, 20)) == _utc(2026, 12, 7, 3, 0)
    done = {"result": "rejected", "started_at": "2026-12-07T03:00:01+00:00"}
    assert missed_fire(daily, [done], _utc(2026, 12, 7, 3, 20)) is None
    yesterday = {"result": "promoted", "started_at": "2026-12-06T03:00:00+00:00"}
    assert missed_fire(daily, [yesterday], _utc(2026, 12, 7, 3, 20)) == _utc(2026, 12, 7, 3, 0)
    cancelled = {"result": "cancelled", "started_at": "2026-12-07T03:00:00+00:00"}
    assert missed_fire(daily, [cancelled], _utc(2026, 12, 7, 3, 20)) == _utc(2026, 12, 7, 3, 0)
    # past the misfire grace (1 h), or before the day's fire time: nothing to take over
    assert missed_fire(daily, [], _utc(2026, 12, 7, 4, 30)) is None
    assert missed_fire(daily, [], _utc(2026, 12, 7, 2, 59)) is None
    assert missed_fire("*/10 * * * *", [], _utc(2026, 12, 7, 3, 25)) == _utc(2026, 12, 7, 3, 20)


def _run(lease: GroupLease) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    t = threading.Thread(target=lease.run, args=(stop,), daemon=True)
    t.start()
    return stop, t


def test_one_holder_at_a_time_and_the_standby_takes_over_when_it_leaves():
    bus = MemoryBus()
    changes: list[tuple[str, bool]] = []
    a = GroupLease(bus, "lease.t", "a", on_change=lambda held: changes.append(("a", held)))
    b = GroupLease(bus, "lease.t", "b", on_change=lambda held: changes.append(("b", held)))
    stop_a, ta = _run(a)
    wait_until(lambda: a.held, 10, "a to hold the lease")
    stop_b, tb = _run(b)
    wait_until(lambda: b.joined, 10, "the second member's first poll")
    # a standby joining does not take the lease from the holder (watched for a while)
    assert settled(lambda: (a.held, b.held), 1.5, 5, "the lease after a standby joined") == (True, False)
    stop_a.set()
    ta.join(10)
    wait_until(lambda: b.held, 10, "b to take the lease over")
    assert not a.held
    stop_b.set()
    tb.join(10)
    assert changes == [("a", True), ("a", False), ("b", True), ("b", False)]


class BlockingRunner:
    """Trains until cancelled (then stops as run_child does), or returns a passing comparison."""

    def __init__(self, block: bool) -> None:
        self.block = block
        self.started = threading.Event()

    def __call__(self, spec, workdir, threads, nice, budget, *, cancel=None):
        self.started.set()
        if self.block:
            assert cancel is not None
            cancel.wait(30)
            raise ChildCancelled("the retrain lease moved to another instance; training child stopped")
        return _comparison(spec)


def test_a_run_cut_off_by_losing_the_lease_promotes_nothing_and_the_standby_runs_it(make_settings):
    now = datetime.now(timezone.utc)
    cron = f"{now.minute} {now.hour} * * *"  # it fired at the start of this minute
    settings = make_settings(retrain={"enabled": True, "cron": cron, "min_new_labels": 5, "min_holdout": 1})
    registry = _registry_with_champion(settings)
    bus = MemoryBus()
    fresh = _votes([f"ACME glorped {i}" for i in range(40)])
    stores, runners, schedulers, stops, threads = [], [], [], [], []
    for name, block in (("a", True), ("b", False)):
        store = LabelStore(settings.state_dir / f"labels-{name}.db")
        store.add(fresh)
        runner = BlockingRunner(block)
        sched = RetrainScheduler(settings, store, RetrainMetrics(CollectorRegistry()), bus=bus, runner=runner)
        stop = threading.Event()
        thread = threading.Thread(target=sched.run, args=(stop,), daemon=True)
        thread.start()
        wait_until(lambda s=sched: s.ready()[0], 10, f"scheduler {name} ready")
        stores.append(store), runners.append(runner), schedulers.append(sched), stops.append(stop)
        threads.append(thread)
    a, b = schedulers
    assert a.holds_lease and not b.holds_lease
    assert b.ready() == (True, "standby: another instance holds the retrain lease")
    # the holder runs this minute's fire time (late: scheduled before the holder started), and trains
    a._scheduler.get_job("retrain").modify(next_run_time=datetime.now(timezone.utc))
    assert runners[0].started.wait(15)
    # the holder goes away mid-run (SIGTERM; kill -9 is the process test's)
    stops[0].set()
    threads[0].join(30)
    assert not threads[0].is_alive()
    assert [r["result"] for r in a.reports] == ["cancelled"]
    # the standby takes the lease over and runs the run the holder left unfinished; it promotes
    wait_until(lambda: b.reports, 30, "the standby's run")
    assert [r["result"] for r in settled(lambda: list(b.reports), 1.0, 5, "the standby's runs")] == ["promoted"]
    assert registry.current() == "v-challenger"
    results = sorted(r["result"] for r in RunReports(registry).all())
    assert results == ["cancelled", "promoted"]
    stops[1].set()
    threads[1].join(30)
    for store in stores:
        store.close()


def test_an_instance_that_starts_as_holder_takes_over_only_a_run_that_was_cut_off():
    daily = "0 3 * * *"
    now = _utc(2026, 12, 7, 3, 20)
    assert missed_fire(daily, [], now, cut_off_only=True) is None  # a restart at 03:20: no evidence
    cancelled = {"result": "cancelled", "started_at": "2026-12-07T03:00:00+00:00"}
    assert missed_fire(daily, [cancelled], now, cut_off_only=True) == _utc(2026, 12, 7, 3, 0)
    redone = {"result": "skipped", "started_at": "2026-12-07T03:05:00+00:00"}
    assert missed_fire(daily, [cancelled, redone], now, cut_off_only=True) is None


class _SilentConsumer:
    """A member that still has its partition but whose coordinator went silent ``age`` s ago."""

    def __init__(self, age: list[float]) -> None:
        self.age = age

    def poll(self, timeout_s: float = 1.0, max_records: int = 500):
        time.sleep(0.01)
        return []

    def assignment(self):
        return {TopicPartition("lease.t", 0)}

    def group_contact_age_s(self) -> float:
        return self.age[0]

    def close(self) -> None:
        pass


class _StubBus:
    name = "stub"

    def __init__(self, consumer: _SilentConsumer) -> None:
        self._consumer = consumer

    def ensure_topics(self, topics, partitions=None, compacted=False) -> None:
        pass

    def partitions_for(self, topic: str) -> int:
        return 1

    def consumer(self, topics, options):
        return self._consumer


def test_a_holder_that_hears_nothing_from_the_group_fences_itself_and_comes_back():
    age = [0.1]
    changes: list[bool] = []
    lease = GroupLease(_StubBus(_SilentConsumer(age)), "lease.t", "t", on_change=changes.append, fence_after_s=4.0)
    stop, thread = _run(lease)
    wait_until(lambda: lease.held, 5, "the lease")
    age[0] = 4.5  # the brokers are unreachable: kafka-python would keep the assignment
    wait_until(lambda: not lease.held, 5, "the holder to fence itself")
    age[0] = 0.2  # it hears from the coordinator again (and still has the partition)
    wait_until(lambda: lease.held, 5, "the lease again")
    stop.set()
    thread.join(5)
    assert changes == [True, False, True, False]

"""Training threads follow the machine (models.threads): training takes the cores the other
processes leave free, at least one and at most its cap, re-read every interval while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.threads import ThreadGovernor, machine_busy_seconds


class Machine:
    """A fake 2-core machine: others' busy cores and this process's busy cores, over fake time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.busy = 0.0  # machine-wide busy CPU seconds
        self.own = 0.0  # this process's CPU seconds
        self.applied: list[int] = []

    def run(self, seconds: float, *, others: float, own: float) -> None:
        self.now += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own

    def governor(self, fixed: int | None = None) -> ThreadGovernor:
        return ThreadGovernor(
            fixed=fixed,
            cores=2,
            interval_s=15.0,
            apply=self.applied.append,
            machine_busy=lambda: self.busy,
            own_busy=lambda: self.own,
            clock=lambda: self.now,
        )


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.threads.time.sleep", lambda s: None)


def test_threads_follow_what_the_others_leave(no_sleep) -> None:
    m = Machine()
    g = m.governor()
    assert g.start() == 2 and m.applied == [2]  # an idle machine: both cores
    m.run(20, others=1.0, own=1.0)  # another job takes a core; we got the other one
    assert g.tick() == 1 and m.applied == [2, 1]
    m.run(5, others=0.0, own=1.0)
    assert g.tick() == 1  # re-read only every interval_s
    m.run(15, others=0.0, own=1.0)  # the other job ended
    assert g.tick() == 2 and m.applied == [2, 1, 2]
    m.run(20, others=3.0, own=0.5)  # more than the machine: still one thread
    assert g.tick() == 1
    assert g.changes == 3


def test_the_machine_busy_with_our_own_threads_is_not_busy(no_sleep) -> None:
    m = Machine()
    g = m.governor()
    g.start()
    m.run(60, others=0.05, own=2.0)  # our two threads keep both cores busy: nobody else is there
    assert g.tick() == 2 and g.changes == 0


def test_an_operators_thread_count_is_kept(no_sleep) -> None:
    m = Machine()
    g = m.governor(fixed=3)
    assert g.start() == 3
    m.run(60, others=2.0, own=0.5)
    assert g.tick() == 3 and m.applied == [3]


def test_without_proc_stat_the_cap_is_used(no_sleep) -> None:
    applied: list[int] = []
    g = ThreadGovernor(cores=4, apply=applied.append, machine_busy=lambda: None, own_busy=lambda: 0.0)
    assert g.start() == 4 and g.tick() == 4 and applied == [4]


def test_proc_stat_is_read_as_busy_seconds(tmp_path: Path) -> None:
    from models.threads import CLOCK_TICKS

    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 5000 70 5 5 40 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert machine_busy_seconds(str(stat)) == pytest.approx((100 + 20 + 30 + 5 + 5 + 40) / CLOCK_TICKS)
    stat.write_text("garbage\n")
    assert machine_busy_seconds(str(stat)) is None
    assert machine_busy_seconds(str(tmp_path / "missing")) is None
    assert machine_busy_seconds() is not None  # this Linux machine has one

"""Feed circuit breaker: a failing source backs off exponentially across polls, up to a cap, shows
in /readyz details and metrics, and recovers on its first successful poll."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from connectors.metrics import IngestMetrics
from connectors.publisher import PublishResult
from connectors.settings import RssSource
from connectors.stages import PollingStage


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FlakyPoller:
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = RssSource(
            name=name, url="https://feeds.example.com/rss", interval_s=10, failure_backoff_max_s=100
        )
        self.failing = True
        self.calls = 0

    def poll_once(self) -> PublishResult:
        self.calls += 1
        return PublishResult(fetch_error="connect: cannot connect" if self.failing else None)


def test_failing_source_backs_off_exponentially_up_to_the_cap_and_recovers() -> None:
    clock, registry = Clock(), CollectorRegistry()
    bad, good = FlakyPoller("bad"), FlakyPoller("good")
    good.failing = False
    stage = PollingStage([(bad, 10.0), (good, 10.0)], threading.Event(), metrics=IngestMetrics(registry), clock=clock)
    stage._started.set()

    attempts = []
    for _ in range(60):  # the scheduler ticks every 10 s for 10 minutes
        before = bad.calls
        stage._job(bad)
        stage._job(good)
        if bad.calls > before:
            attempts.append(clock.t - 1000)
        clock.t += 10
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[:4] == [20, 40, 80, 100] and set(gaps[4:]) == {100}  # 10 * 2^n, capped at 100 s
    assert good.calls == 60

    sample = registry.get_sample_value
    assert sample("finsent_ingest_source_failures", {"source": "bad"}) == len(attempts)
    assert sample("finsent_ingest_source_backoff_seconds", {"source": "bad"}) == 100
    assert sample("finsent_ingest_source_failures", {"source": "good"}) == 0
    ok, detail = stage.ready()
    assert ok and "backing off: bad (" in detail and "connect: cannot connect" in detail and "good (" not in detail

    bad.failing = False
    while stage.breakers["bad"].state == "open":
        clock.t += 10
        stage._job(bad)
    assert sample("finsent_ingest_source_failures", {"source": "bad"}) == 0
    assert sample("finsent_ingest_source_backoff_seconds", {"source": "bad"}) == 0
    assert "backing off" not in stage.ready()[1]
    calls = bad.calls
    for _ in range(3):  # recovered: polled at every tick again
        clock.t += 10
        stage._job(bad)
    assert bad.calls == calls + 3


def test_a_crashing_poller_counts_as_a_failure() -> None:
    class Crashing(FlakyPoller):
        def poll_once(self) -> PublishResult:
            raise RuntimeError("bug")

    clock = Clock()
    poller = Crashing("crash")
    stage = PollingStage([(poller, 10.0)], threading.Event(), clock=clock)
    stage._job(poller)
    assert stage.breakers["crash"].failures == 1 and stage.breakers["crash"].last_error == "poll crashed"

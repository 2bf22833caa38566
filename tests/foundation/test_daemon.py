"""The supervisor: stage threads, health endpoints, metrics, clean stop and crash handling."""

from __future__ import annotations

import threading

import httpx
from prometheus_client import CollectorRegistry, Counter

from monitor.app.daemon import Daemon
from monitor.core.bus.memory import MemoryBus


class LoopStage:
    def __init__(self, name: str = "loop", crash_after: int | None = None) -> None:
        self.name = name
        self.crash_after = crash_after
        self.iterations = 0
        self.is_ready = False
        self.stopped_cleanly = False

    def run(self, stop: threading.Event) -> None:
        self.is_ready = True
        while not stop.wait(0.01):
            self.iterations += 1
            if self.crash_after is not None and self.iterations >= self.crash_after:
                raise RuntimeError("boom")
        self.stopped_cleanly = True

    def ready(self) -> tuple[bool, str]:
        return self.is_ready, "warming up" if not self.is_ready else "ok"


def test_health_metrics_and_clean_stop():
    registry = CollectorRegistry()
    Counter("finsent_test_events", "test counter", registry=registry).inc(3)
    stage = LoopStage()
    closed: list[str] = []
    daemon = Daemon(
        bus=MemoryBus(), stages=[stage], registry=registry, http_port=0, closers=[lambda: closed.append("store")]
    )
    daemon.start()
    try:
        base = daemon.http.url
        assert httpx.get(f"{base}/healthz").status_code == 200
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        assert {c["name"] for c in ready.json()["checks"]} >= {"bus", "stage:loop", "stages"}
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200 and "finsent_test_events_total 3.0" in metrics.text
    finally:
        daemon.stop_event.set()
        code = daemon.wait()
    assert code == 0 and stage.stopped_cleanly
    assert closed == ["store"]  # after the stages stopped, once


def test_not_ready_until_every_stage_is():
    stage = LoopStage()
    stage.run = lambda stop: stop.wait()  # never becomes ready
    daemon = Daemon(bus=MemoryBus(), stages=[stage], registry=CollectorRegistry(), http_port=0)
    daemon.start()
    try:
        r = httpx.get(f"{daemon.http.url}/readyz")
        assert r.status_code == 503
        failing = [c for c in r.json()["checks"] if not c["ok"]]
        assert [c["name"] for c in failing] == ["stage:loop"] and failing[0]["detail"] == "warming up"
    finally:
        daemon.stop_event.set()
        daemon.wait()


def test_a_crashing_stage_stops_the_daemon_with_a_failure_code():
    healthy, crashing = LoopStage("healthy"), LoopStage("crashing", crash_after=3)
    daemon = Daemon(bus=MemoryBus(), stages=[healthy, crashing], registry=CollectorRegistry(), http_port=None)
    daemon.start()
    assert daemon.stop_event.wait(10), "daemon did not notice the crash"
    assert daemon.wait() == 1
    assert healthy.stopped_cleanly

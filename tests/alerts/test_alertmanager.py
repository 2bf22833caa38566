"""The ``alertmanager`` receiver against a real Alertmanager: post, re-send, resolve, and nothing
lost while Alertmanager is down or answers garbage."""

from __future__ import annotations

import json
import random
import socket
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from alerts.alert_store import AlertStore
from alerts.clock import ManualClock
from alerts.delivery import AlertmanagerSender
from alerts.evaluator import AlertEngine
from alerts.keepalive import AlertmanagerKeepalive
from alerts.metrics import AlertMetrics
from alerts.outbox import OutboxDeliverer
from alerts.settings import EngineOptions, ReceiverSettings
from monitor.core.backoff import Backoff
from tests.alerts.helpers import OIL, point, rules
from tests.deploy.procs import ALERTMANAGER, need, start_alertmanager, wait_for
from tests.ports import free_port

POLICY = Backoff(initial_s=1.0, max_s=60.0, multiplier=2.0, jitter=0.0, max_retry_after_s=3600.0)
NULL_CONFIG = "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n"


def am_receiver(url: str) -> ReceiverSettings:
    return ReceiverSettings(type="alertmanager", url=url, timeout="2s", resend_interval="60s")


def setup(tmp_path: Path, url: str):
    clock = ManualClock()
    store = AlertStore(tmp_path / "alerts.db")
    receivers = {"am": am_receiver(url)}
    engine = AlertEngine(
        rules({**OIL, "for": 0, "receiver": "am"}),
        store,
        EngineOptions(receivers=receivers, external_url="http://finsent.test"),
        clock,
    )
    metrics = AlertMetrics(CollectorRegistry())
    deliverer = OutboxDeliverer(
        store,
        {"am": AlertmanagerSender("am", receivers["am"])},
        policy=POLICY,
        clock=clock,
        rng=random.Random(3),
        metrics=metrics,
    )
    return clock, store, engine, deliverer, metrics, receivers


def am_alerts(url: str, **params) -> list[dict]:
    return httpx.get(f"{url}/api/v2/alerts", params=params, timeout=5).json()


@pytest.fixture
def alertmanager(tmp_path: Path):
    need(ALERTMANAGER)
    config = tmp_path / "am.yml"
    config.write_text(NULL_CONFIG)
    proc = start_alertmanager(config, tmp_path)
    yield proc
    proc.stop()


def test_firing_then_resolved_reach_alertmanager(tmp_path: Path, alertmanager):
    clock, store, engine, deliverer, metrics, _ = setup(tmp_path, alertmanager.url)
    (entry,) = engine.process([point(emitted=1, top=2)]).outbox
    posted = json.loads(entry.body)
    assert set(posted[0]) == {"labels", "annotations", "startsAt", "generatorURL"}  # no endsAt: firing
    assert deliverer.deliver_due() == 1
    (got,) = wait_for(lambda: am_alerts(alertmanager.url), 10, "the alert in Alertmanager")
    assert got["labels"]["alertname"] == "oil-gloom" and got["labels"]["topic"] == "Energy | Oil"
    assert got["status"]["state"] == "active"
    assert got["generatorURL"].startswith("http://finsent.test/alerts/")
    assert got["annotations"]["summary"].endswith("negative on topic:Energy | Oil")
    assert "value_negative_share" in got["annotations"]
    # the key goes quiet: resolved, with endsAt, and Alertmanager drops it from the active set
    (resolved,) = engine.process([point(start=15, emitted=16, negative_share=0.1)]).outbox
    assert resolved.reason == "resolved" and "endsAt" in json.loads(resolved.body)[0]
    assert deliverer.deliver_due() == 1
    wait_for(lambda: not am_alerts(alertmanager.url, active="true"), 10, "the alert resolved in Alertmanager")
    assert metrics.deliveries.labels("am", "delivered")._value.get() == 2


def test_firing_alerts_are_resent_before_the_resolve_timeout(tmp_path: Path):
    clock, store, engine, deliverer, _, receivers = setup(tmp_path, "http://127.0.0.1:9")
    keepalive = AlertmanagerKeepalive(store, receivers, "http://finsent.test", clock)
    engine.process([point(emitted=1)])
    assert keepalive.tick() == 0  # the firing notification is still pending: nothing added
    (pending,) = store.outbox_entries(("pending",))
    store.mark_delivered(pending.id, clock.time(), 200)
    clock.advance(30)
    assert keepalive.tick() == 0  # not yet due (every 60 s)
    clock.advance(31)
    assert keepalive.tick() == 1
    (again,) = store.outbox_entries(("pending",))
    assert again.reason == "repeat" and again.receiver == "am"
    assert [a["labels"]["alertname"] for a in json.loads(again.body)] == ["oil-gloom"]
    store.mark_delivered(again.id, clock.time(), 200)
    engine.process([point(start=15, emitted=16, negative_share=0.1)])  # resolved
    store.mark_delivered(store.outbox_entries(("pending",))[0].id, clock.time(), 200)
    clock.advance(61)
    assert keepalive.tick() == 0  # nothing firing any more


def _garbage_server(reply: bytes) -> tuple[socket.socket, str, threading.Thread]:
    srv = socket.socket()
    # its accepted connections inherit this, so the real Alertmanager may bind the port right after
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return srv, f"http://127.0.0.1:{srv.getsockname()[1]}", thread


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 21\r\n\r\n<html>captive</html>\n",
        b"this is not HTTP at all\r\n\r\n",
    ],
    ids=["html-200", "not-http"],
)
def test_malformed_response_keeps_the_alert_until_alertmanager_answers(tmp_path: Path, reply: bytes, caplog):
    need(ALERTMANAGER)
    srv, url, serving = _garbage_server(reply)
    port = int(url.rsplit(":", 1)[1])
    clock, store, engine, deliverer, metrics, _ = setup(tmp_path, url)
    engine.process([point(emitted=1)])
    assert deliverer.deliver_due() == 1
    (entry,) = store.outbox_entries(("pending",))
    assert entry.attempts == 1
    assert "malformed" in entry.last_error
    assert metrics.deliveries.labels("am", "retry")._value.get() == 1
    assert metrics.outbox.labels("pending")._value.get() == 1
    # the real Alertmanager comes up on that very port: the alert is delivered, once
    srv.shutdown(socket.SHUT_RDWR)  # wakes the accept() and frees the port
    srv.close()
    serving.join(10)  # no accepted connection left open on the port
    config = tmp_path / "am.yml"
    config.write_text(NULL_CONFIG)
    am = start_alertmanager(config, tmp_path, port=port)
    try:
        clock.advance(5)
        assert deliverer.deliver_due() == 1
        assert store.outbox_counts() == {"pending": 0, "delivered": 1, "dead": 0}
        (got,) = wait_for(lambda: am_alerts(am.url), 10, "the alert in Alertmanager")
        assert got["labels"]["alertname"] == "oil-gloom"
    finally:
        am.stop()


def test_unreachable_alertmanager_keeps_the_alert_in_the_outbox(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    clock, store, engine, deliverer, metrics, _ = setup(tmp_path, url)
    engine.process([point(emitted=1)])
    for _ in range(3):
        deliverer.deliver_due()
        clock.advance(120)
    (entry,) = store.outbox_entries(("pending",))
    assert entry.attempts == 3 and "unreachable" in entry.last_error
    assert metrics.deliveries.labels("am", "retry")._value.get() == 3
    assert metrics.oldest_pending_seconds._value.get() >= 240

"""Payload shape, signatures, retry policy, and the durable outbox across a restart."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest

from alerts.alert_store import AlertStore
from alerts.clock import ManualClock
from alerts.delivery import FileSender, HttpSender, classify_response, parse_retry_after
from alerts.evaluator import AlertEngine
from alerts.outbox import OutboxDeliverer
from alerts.payload import WebhookMessage
from alerts.settings import EngineOptions, ReceiverSettings
from monitor.core import signing
from monitor.core.backoff import Backoff
from tests.alerts.helpers import OIL, Receiver, deliver_until_idle, point, rules

SECRET = "s3cret-for-tests"
POLICY = Backoff(initial_s=1.0, max_s=60.0, multiplier=2.0, jitter=0.0, max_retry_after_s=3600.0)


def hook(url: str, **kw) -> ReceiverSettings:
    return ReceiverSettings(type="webhook", url=url, secret=SECRET, **kw)


def enqueue_firing(
    store: AlertStore, receivers: dict[str, ReceiverSettings], clock: ManualClock, receiver: str = "hook"
) -> AlertEngine:
    engine = AlertEngine(
        rules({**OIL, "for": 0, "receiver": receiver}),
        store,
        EngineOptions(receivers=receivers, external_url="http://finsent.test"),
        clock,
    )
    changes = engine.process([point(emitted=1, top=2)])
    assert [e.receiver for e in changes.outbox] == [receiver]
    return engine


def deliverer(store, receivers, clock, **kw) -> OutboxDeliverer:
    senders = {name: HttpSender(name, r) for name, r in receivers.items()}
    return OutboxDeliverer(store, senders, policy=POLICY, clock=clock, rng=random.Random(7), **kw)


def test_payload_is_alertmanager_v4_with_finsent_extensions(tmp_path: Path, receiver: Receiver):
    clock = ManualClock()
    store = AlertStore(tmp_path / "a.db")
    receivers = {"hook": hook(receiver.url)}
    enqueue_firing(store, receivers, clock)
    assert deliverer(store, receivers, clock).deliver_due() == 1
    (got,) = receiver.accepted
    msg = got.json()
    assert set(msg) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
        "reason",
    }
    assert msg["version"] == "4" and msg["status"] == "firing" and msg["receiver"] == "hook"
    assert msg["truncatedAlerts"] == 0 and msg["externalURL"] == "http://finsent.test"
    assert msg["groupKey"] == '{}/{receiver="hook"}:{alertname="oil-gloom"}'
    assert msg["groupLabels"] == {"alertname": "oil-gloom"}
    (alert,) = msg["alerts"]
    assert {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"} <= set(alert)
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"  # Alertmanager's "still firing"
    assert alert["generatorURL"] == f"http://finsent.test/alerts/{alert['fingerprint']}"
    assert alert["values"] == {"negative_share": 0.7, "count": 30.0, "threshold": 0.6}
    assert alert["model_version"] == "m-1"
    assert [(e["title"], e["source"], e["url"], e["score"]) for e in alert["evidence"]] == [
        ("Headline 0", "wire", "https://news.example/0", -0.9),
        ("Headline 1", "wire", "https://news.example/1", -0.9),
    ]
    assert alert["evidence"][0]["published_at"] == "2026-11-23T10:00:00Z"
    WebhookMessage.model_validate(msg)  # our own model reads it back
    # signed over the raw body, verifiable by the receiver
    assert signing.verify(SECRET, got.headers[signing.SIGNATURE_HEADER], got.body, now=clock.time()) == int(
        clock.time()
    )
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers[signing.IDEMPOTENCY_HEADER]


def test_signature_round_trip_and_rejections():
    body = b'{"version":"4"}'
    header = signing.sign(SECRET, body, 1_800_000_000)
    assert header.startswith("t=1800000000,v1=")
    assert signing.verify(SECRET, header, body, now=1_800_000_010) == 1_800_000_000
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(SECRET, header, body + b" ", now=1_800_000_010)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify("other-secret", header, body, now=1_800_000_010)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify(SECRET, header, body, now=1_800_000_000 + 301)
    with pytest.raises(signing.SignatureError, match="missing"):
        signing.verify(SECRET, None, body)
    with pytest.raises(signing.SignatureError, match="malformed"):
        signing.verify(SECRET, "v1=abc", body)
    # the documented receiver recipe computes the same thing with the stdlib only
    import hashlib
    import hmac

    t, v1 = (p.split("=", 1)[1] for p in header.split(","))
    assert hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest() == v1


def test_unsigned_receiver_sends_no_signature(tmp_path: Path, receiver: Receiver):
    clock = ManualClock()
    store = AlertStore(tmp_path / "a.db")
    receivers = {"hook": ReceiverSettings(type="webhook", url=receiver.url, headers={"X-Team": "oil"})}
    enqueue_firing(store, receivers, clock)
    deliverer(store, receivers, clock).deliver_due()
    (got,) = receiver.accepted
    assert signing.SIGNATURE_HEADER not in got.headers and got.headers["X-Team"] == "oil"


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [
        (500, {}, True, None),
        (502, {}, True, None),
        (503, {"Retry-After": "7"}, True, 7.0),
        (429, {}, True, None),
        (429, {"Retry-After": "120"}, True, 120.0),
        (400, {}, False, None),
        (401, {}, False, None),
        (404, {}, False, None),
        (410, {}, False, None),
        (302, {}, False, None),
        (204, {}, False, None),
    ],
)
def test_classify_response(status, headers, retryable, retry_after):
    result = classify_response(httpx.Response(status, headers=headers), now=0.0)
    assert result.ok == (status == 204)
    assert result.retryable == retryable and result.retry_after == retry_after and result.status == status


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 30) == 30.0
    assert parse_retry_after("soon", now=0.0) is None


def test_backoff_is_exponential_capped_and_jittered():
    policy = Backoff(initial_s=1.0, max_s=10.0, multiplier=2.0, jitter=0.5, max_retry_after_s=3600.0)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(1, 7)]
    bases = [1, 2, 4, 8, 10, 10]
    assert all(b * 0.5 <= d <= b for d, b in zip(delays, bases))
    assert policy.delay(1, rng, retry_after=30.0) == 30.0
    assert Backoff(1.0, 300.0, jitter=0.2, max_retry_after_s=60.0).delay(1, rng, retry_after=9999.0) == 60.0


def test_5xx_and_connection_errors_are_retried_with_backoff(tmp_path: Path):
    clock = ManualClock()
    store = AlertStore(tmp_path / "a.db")
    r = Receiver(respond=lambda n: (503, {}) if n <= 2 else (200, {}))
    try:
        receivers = {"hook": hook(r.url)}
        enqueue_firing(store, receivers, clock)
        d = deliverer(store, receivers, clock)
        assert deliver_until_idle(d) == 3
        assert clock.slept == [1.0, 2.0]  # 1s then 2s (jitter off)
        assert len(r.requests) == 3 and len(r.accepted) == 1
        assert [q.headers[signing.ATTEMPT_HEADER] for q in r.requests] == ["1", "2", "3"]
    finally:
        r.close()
    # nothing listening: a connection error, retried
    receivers = {"hook": hook("http://127.0.0.1:9/hook")}
    store2 = AlertStore(tmp_path / "b.db")
    enqueue_firing(store2, receivers, clock)
    d = deliverer(store2, receivers, clock)
    assert d.deliver_due() == 1
    (entry,) = store2.outbox_entries(("pending",))
    assert entry.attempts == 1 and entry.last_error.startswith("connection error")


def test_4xx_is_not_retried(tmp_path: Path):
    clock = ManualClock()
    store = AlertStore(tmp_path / "a.db")
    r = Receiver(respond=lambda n: (400, {}))
    try:
        receivers = {"hook": hook(r.url)}
        enqueue_firing(store, receivers, clock)
        assert deliver_until_idle(deliverer(store, receivers, clock)) == 1
        assert len(r.requests) == 1
        (dead,) = store.outbox_entries(("dead",))
        assert dead.last_status == 400 and dead.attempts == 1
        assert store.outbox_counts() == {"pending": 0, "delivered": 0, "dead": 1}
    finally:
        r.close()


def test_429_is_retried_after_retry_after(tmp_path: Path):
    clock = ManualClock()
    store = AlertStore(tmp_path / "a.db")
    r = Receiver(respond=lambda n: (429, {"Retry-After": "42"}) if n == 1 else (200, {}))
    try:
        receivers = {"hook": hook(r.url)}
        enqueue_firing(store, receivers, clock)
        assert deliver_until_idle(deliverer(store, receivers, clock)) == 2
        assert clock.slept == [42.0] and len(r.accepted) == 1
    finally:
        r.close()


def test_outbox_survives_restart_and_delivers_exactly_once(tmp_path: Path):
    """The receiver fails for a while; the deliverer (and its store) is recreated meanwhile."""
    clock = ManualClock()
    failing = {"on": True}
    r = Receiver(respond=lambda n: (500, {}) if failing["on"] else (200, {}))
    try:
        receivers = {"hook": hook(r.url)}
        store = AlertStore(tmp_path / "a.db")
        enqueue_firing(store, receivers, clock)
        first = deliverer(store, receivers, clock)
        for _ in range(3):
            first.deliver_due()
            clock.advance(first.seconds_until_due() or 0)
        assert len(r.requests) == 3 and not r.accepted
        store.close()  # "crash"

        store = AlertStore(tmp_path / "a.db")  # restart: a new store and deliverer
        assert store.outbox_counts()["pending"] == 1
        second = deliverer(store, receivers, clock)
        second.deliver_due()
        clock.advance(second.seconds_until_due() or 0)
        failing["on"] = False  # the receiver recovers
        deliver_until_idle(second)
        assert len(r.accepted) == 1  # arrives exactly once
        assert len({q.headers[signing.IDEMPOTENCY_HEADER] for q in r.requests}) == 1
        assert len({q.body for q in r.requests}) == 1  # same body on every attempt
        assert store.outbox_counts() == {"pending": 0, "delivered": 1, "dead": 0}
        assert deliver_until_idle(second) == 0  # and never again
        signing.verify(SECRET, r.accepted[0].headers[signing.SIGNATURE_HEADER], r.accepted[0].body, now=clock.time())
    finally:
        r.close()


def test_dead_letter_after_max_age(tmp_path: Path):
    clock = ManualClock()
    store = AlertStore(tmp_path / "a.db")
    r = Receiver(respond=lambda n: (500, {}))
    try:
        receivers = {"hook": hook(r.url)}
        enqueue_firing(store, receivers, clock)
        d = deliverer(store, receivers, clock, dead_letter_after_s=30.0)
        deliver_until_idle(d)
        (dead,) = store.outbox_entries(("dead",))
        assert "dead letter" in dead.last_error and dead.last_status == 500
        assert len(r.requests) == 5  # 1+2+4+8 = 15s, next would pass 30s
    finally:
        r.close()


def test_notifications_of_a_group_are_delivered_in_order(tmp_path: Path):
    clock = ManualClock()
    r = Receiver(respond=lambda n: (500, {}) if n == 1 else (200, {}))
    try:
        receivers = {"hook": hook(r.url)}
        store = AlertStore(tmp_path / "a.db")
        engine = enqueue_firing(store, receivers, clock)
        engine.process([point(emitted=2, negative_share=0.1)])  # resolved, queued behind firing
        d = deliverer(store, receivers, clock)
        deliver_until_idle(d)
        assert [q.json()["status"] for q in r.accepted] == ["firing", "resolved"]
    finally:
        r.close()


def test_slack_and_file_receivers(tmp_path: Path, receiver: Receiver):
    clock = ManualClock()
    store = AlertStore(tmp_path / "a.db")
    receivers = {"chat": ReceiverSettings(type="slack", url=receiver.url)}
    enqueue_firing(store, receivers, clock, receiver="chat")
    deliverer(store, receivers, clock).deliver_due()
    text = receiver.accepted[0].json()["text"]
    assert text.startswith("*[FIRING:1]* alertname=oil-gloom")
    assert "<https://news.example/0|Headline 0> (wire, score -0.90)" in text

    store2 = AlertStore(tmp_path / "b.db")
    enqueue_firing(store2, {"local": ReceiverSettings(type="file")}, clock, receiver="local")
    out = tmp_path / "alerts.jsonl"
    OutboxDeliverer(store2, {"local": FileSender("local", out)}, clock=clock).deliver_due()
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["alerts"][0]["labels"]["alertname"] == "oil-gloom"

"""Push webhook: 202 only after the broker's ack, 401 on bad auth, 422 on bad bodies."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.webhook import WebhookStory, build_webhook_router, sign, story_to_draft
from monitor.core.bus.base import BusError, RecordMetadata
from tests.connectors.conftest import news_on
from tests.connectors.test_rss import sample

SECRET = "hook-secret"
HOOKS = [
    {"type": "webhook", "name": "partner", "secret": {"value": SECRET}},
    {"type": "webhook", "name": "bearer", "auth": "bearer", "secret": {"value": SECRET}},
]


def client_for(core, settings) -> TestClient:
    hooks = [s for s in settings.connectors.sources if s.type == "webhook"]
    app = FastAPI()
    app.include_router(build_webhook_router(hooks, core.publisher, core.metrics))
    return TestClient(app)


def post(client: TestClient, source: str, payload, secret: str = SECRET, **headers):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        f"/ingest/{source}",
        content=body,
        headers={"X-Finsent-Signature": sign(secret, body), "Content-Type": "application/json", **headers},
    )


@pytest.mark.kafka
def test_webhook_to_kafka(kafka_settings, kafka_bootstrap, ingest_factory) -> None:
    settings = kafka_settings(connectors={"demo": False, "sources": HOOKS})
    core, ctx = ingest_factory(settings)
    client = client_for(core, settings)

    one = {
        "id": "p-1",
        "title": "Acme (NASDAQ: ACME) wins $1bn order",
        "published_at": "2026-11-20T10:00:00Z",
        "url": "https://partner.example.com/1",
        "meta": {"desk": "equities"},
    }
    r = post(client, "partner", one)
    assert r.status_code == 202, r.text
    assert r.json() == {
        "source": "partner",
        "received": 1,
        "produced": 1,
        "duplicates": 0,
        "rejected": 0,
        "ids": [r.json()["ids"][0]],
    }
    on_topic = news_on(kafka_bootstrap, settings.topics.raw)  # durable by the time 202 came back
    assert [i.title for i in on_topic] == ["Acme (NASDAQ: ACME) wins $1bn order"]
    assert on_topic[0].tickers == ("ACME",) and on_topic[0].meta == {"desk": "equities", "via": "webhook"}

    batch = {"items": [one, {"text": "Globex cuts guidance", "tickers": ["GBX"]}]}
    r = post(client, "partner", batch)
    assert r.status_code == 202 and (r.json()["produced"], r.json()["duplicates"]) == (1, 1)
    r = client.post("/ingest/bearer", json=[{"title": "Initech beats"}], headers={"Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 202 and r.json()["produced"] == 1
    assert len(news_on(kafka_bootstrap, settings.topics.raw)) == 3

    # Authentication.
    assert post(client, "partner", one, secret="wrong").status_code == 401
    unsigned = client.post("/ingest/partner", json=one)
    assert unsigned.status_code == 401 and "X-Finsent-Signature" in unsigned.json()["detail"]
    assert client.post("/ingest/bearer", json=one, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert sample(ctx, "finsent_ingest_errors_total", source="partner", kind="auth") == 2
    # Bad bodies: 422 with a message saying what is wrong; nothing produced.
    r = post(client, "partner", {"body": "no title"})
    assert r.status_code == 422 and "title" in json.dumps(r.json())
    r = post(client, "partner", {"title": "x", "published_at": "not a time"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["published_at"]
    r = post(client, "partner", {"title": "x", "colour": "red"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["colour"]
    assert post(client, "partner", b"{not json").status_code == 422
    assert post(client, "partner", []).status_code == 422
    assert post(client, "nobody", one).status_code == 404
    assert len(news_on(kafka_bootstrap, settings.topics.raw)) == 3


class GatedProducer:
    """Wraps a producer: each delivery's ``get`` waits for ``gate`` (or fails when ``fail``)."""

    def __init__(self, inner, fail: bool = False) -> None:
        self.inner = inner
        self.fail = fail
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def send(self, topic, value, *, key=None, headers=None, partition=None):
        delivery = self.inner.send(topic, value, key=key, headers=headers, partition=partition)
        outer = self

        class _D:
            def get(self, timeout=None) -> RecordMetadata:
                outer.waiting.set()
                outer.gate.wait(30)
                if outer.fail:
                    raise BusError("send not acknowledged: broker unavailable")
                return delivery.get(timeout)

        return _D()

    def flush(self, timeout=None) -> None:
        self.inner.flush(timeout)

    def close(self) -> None:
        self.inner.close()


def test_202_only_after_ack_and_503_when_not_acknowledged(make_settings, ingest_factory) -> None:
    settings = make_settings(connectors={"demo": False, "sources": HOOKS})
    core, ctx = ingest_factory(settings)
    gated = GatedProducer(core.producer)
    core.publisher.producer = gated
    client = client_for(core, settings)
    story = {"title": "Umbrella recalls vaccine batch", "id": "u-1"}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, client, "partner", story)
        assert gated.waiting.wait(30)
        assert not pending.done()  # the handler is blocked on the broker's ack
        story_id = core.publisher.normaliser.build(
            story_to_draft(WebhookStory(**story), settings.connectors.sources[0])
        ).id
        assert not core.state.seen(story_id)  # not remembered before the ack either
        gated.gate.set()
        assert pending.result(30).status_code == 202
    assert core.state.seen(story_id)

    failing = GatedProducer(core.producer, fail=True)
    failing.gate.set()
    core.publisher.producer = failing
    r = post(client, "partner", {"title": "Stark wins contract", "id": "s-1"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert "not acknowledged" in r.json()["detail"]
    core.publisher.producer = core.producer
    r = post(client, "partner", {"title": "Stark wins contract", "id": "s-1"})  # the retry goes through
    assert r.status_code == 202 and r.json()["produced"] == 1
    assert sample(ctx, "finsent_ingest_errors_total", source="partner", kind="publish") == 1

"""[kafka] TrendPoints on a real broker's news.trends -> alert stage -> one signed firing, then resolved."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from monitor.app.component import Context
from monitor.app.components.alerts import build_alerts
from monitor.core import signing
from monitor.core.bus.base import ConsumerOptions
from monitor.core.bus.codec import send_record
from monitor.core.bus.factory import make_bus
from monitor.core.records import Alert, decode
from tests.alerts.helpers import Receiver, point
from tests.waiting import settled, wait_until

SECRET = "integration-secret"


@pytest.mark.kafka
def test_trends_on_kafka_fire_then_resolve_one_signed_alert(kafka_settings, tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {
                        "name": "market-gloom",
                        "type": "threshold",
                        "key": "all",
                        "window": "1m",
                        "metric": "mean_score",
                        "op": "<",
                        "value": -0.3,
                        "min_count": 5,
                        "for": "30s",
                        "receiver": "hook",
                        "annotations": {"summary": "market {{ value | signed }}"},
                    }
                ]
            }
        )
    )
    receiver = Receiver()
    settings = kafka_settings(
        alerts={
            "rules_file": str(rules),
            "receivers": {"hook": {"type": "webhook", "url": receiver.url, "secret": SECRET}},
            "outbox": {"poll_interval": "100ms"},
        }
    )
    bus = make_bus(settings)
    component = build_alerts(Context(settings=settings, bus=bus))
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,), daemon=True) for s in component.stages]
    try:
        for t in threads:
            t.start()
        producer = bus.producer()

        def publish(*points):
            for p in points:
                send_record(producer, settings.topics.trends, p, key=p.key).get(timeout=30)

        one_minute = dict(key="all", window="1m", size=1, count=12)
        publish(
            point(start=0, emitted=0.2, mean_score=-0.5, **one_minute),  # pending
            point(start=0, emitted=0.5, mean_score=-0.6, **one_minute),  # 18s: still pending
            point(start=0, emitted=0.9, mean_score=-0.7, **one_minute),
        )  # 42s >= 30s: fires
        firing = wait_until(lambda: receiver.accepted, 60, "the firing delivery")
        publish(point(start=1, emitted=1.5, mean_score=0.1, **one_minute))  # clears: resolved
        wait_until(lambda: len(receiver.accepted) >= 2, 60, "the resolved delivery")
        # exactly two: keep watching a settle period (20 outbox polls) after the second arrived, then count
        accepted = settled(lambda: list(receiver.accepted), 2, 60, "the deliveries", every_s=0.05)
        assert len(accepted) == 2, [r.json() for r in accepted]
        first, second = (r.json() for r in receiver.accepted)
        assert (first["status"], first["reason"], second["status"], second["reason"]) == (
            "firing",
            "firing",
            "resolved",
            "resolved",
        )
        assert first["alerts"][0]["fingerprint"] == second["alerts"][0]["fingerprint"]
        assert first["alerts"][0]["values"]["mean_score"] == -0.7
        assert first["alerts"][0]["startsAt"] == "2026-11-23T10:00:12Z"
        assert second["alerts"][0]["endsAt"] == "2026-11-23T10:01:30Z"
        for got in receiver.accepted:
            signing.verify(SECRET, got.headers[signing.SIGNATURE_HEADER], got.body)
        assert firing[0].headers[signing.IDEMPOTENCY_HEADER] != receiver.accepted[1].headers[signing.IDEMPOTENCY_HEADER]

        # the same transitions were published as Alert records on the alerts topic
        consumer = bus.consumer([settings.topics.alerts], ConsumerOptions(group_id=f"check-{settings.topics.alerts}"))
        seen: list[Alert] = []

        def records() -> list[Alert]:  # what the topic held so far, once both transitions are there
            seen.extend(decode(Alert, m.value) for m in consumer.poll(timeout_s=0.2))
            return list(seen) if len(seen) >= 2 else []

        try:  # exactly two: keep reading a settle period after the second, then compare
            published = settled(records, 2, 60, "two Alert records on the alerts topic")
        finally:
            consumer.close()
        assert [(a.rule, a.status) for a in published] == [("market-gloom", "firing"), ("market-gloom", "resolved")]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        component.close()
        bus.close()
        receiver.close()

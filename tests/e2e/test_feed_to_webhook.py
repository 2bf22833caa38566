"""The whole product on a real broker: a local RSS feed → connectors → Kafka → classify (a real
fine-tuned model) → aggregate → rules → a local webhook receiver.

A planted burst of negative stories about one ticker must reach the receiver as exactly one
correctly signed firing alert, and a resolved one once positive stories clear the condition.
A receiver that fails for a minute while the daemon is restarted still gets the alert, once.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest

from monitor.app.wiring import PIPELINE, build_daemon
from monitor.core import signing
from tests.alerts.helpers import Receiver
from tests.connectors.conftest import Resp
from tests.waiting import settled
from tests.waiting import wait_until as wait_for  # the name here; tests/e2e/test_entity_trends.py imports it

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

SECRET = "e2e-webhook-secret"
NEGATIVE = [
    "$ZZZ shares plunge 40% after fraud charges, bankruptcy fears mount",
    "$ZZZ stock crashes as chief executive resigns amid accounting scandal",
    "$ZZZ downgraded to sell, shares tumble to a record low",
    "$ZZZ slumps after profit warning, guidance slashed",
    "$ZZZ falls sharply as regulators open probe into losses",
    "$ZZZ sinks 20% after missing earnings estimates badly",
    "$ZZZ plummets on weak sales and mass layoffs",
    "$ZZZ shares drop as lenders cut credit lines, default feared",
    "$ZZZ tumbles after auditor resigns, shares halted",
    "$ZZZ stock collapses after losing key contract",
]
POSITIVE = [
    "$ZZZ soars 25% after blowout earnings beat and raised guidance",
    "$ZZZ rallies to record high on strong revenue growth",
    "$ZZZ jumps after upgrade to buy, price target raised",
    "$ZZZ surges on record profit and bigger buyback",
    "$ZZZ climbs after winning a major new contract",
    "$ZZZ gains as sales beat expectations, shares hit new high",
    "$ZZZ shares rise after strong quarterly results",
    "$ZZZ stock jumps on upbeat outlook and dividend increase",
    "$ZZZ rallies after analysts raise estimates",
    "$ZZZ soars on blockbuster quarter",
]

RULES = """
rules:
  - name: zzz-gloom
    type: threshold
    key: "ticker:ZZZ"
    window: 5m
    metric: mean_score
    op: "<"
    value: -0.2
    min_count: 8
    for: 0
    severity: critical
    receiver: hook
    annotations:
      summary: "{{ key }} sentiment {{ value | signed }} over {{ window }} ({{ count }} stories)"
"""


def rss(items: list[tuple[str, str, datetime]]) -> bytes:
    entries = "".join(
        f"<item><title>{escape(title)}</title><link>https://news.example/{guid}</link>"
        f"<guid>{guid}</guid><pubDate>{format_datetime(when)}</pubDate></item>"
        for guid, title, when in items
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>wire</title>'
        f"<link>https://news.example/</link>{entries}</channel></rss>"
    ).encode()


def window_start(now: datetime, minutes_back: int) -> datetime:
    """The start of the 5-minute window ``minutes_back`` minutes ago (aligned to the epoch)."""
    t = now - timedelta(minutes=minutes_back)
    return t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)


def stories(prefix: str, titles: list[str], start: datetime) -> list[tuple[str, str, datetime]]:
    return [(f"{prefix}-{i}", t, start + timedelta(seconds=20 * i + 5)) for i, t in enumerate(titles)]


def alerts_in(receiver: Receiver, status: str) -> list[dict]:
    return [a for r in receiver.accepted for a in r.json()["alerts"] if a["status"] == status]


@pytest.fixture
def pipeline_settings(kafka_settings, quick_model_home: Path, tmp_path: Path, feed):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)

    def factory(receiver: Receiver, **overrides):
        return kafka_settings(
            home=str(quick_model_home),
            connectors={
                "demo": False,
                "sources": [
                    {"type": "rss", "name": "wire", "url": feed.url("/feed.xml"), "interval_s": 1.0, "retries": 0}
                ],
            },
            classifier={"max_delay_ms": 20},
            aggregator={"windows": [{"name": "5m", "size": "5m"}], "flush_interval": "0.2s"},
            alerts={
                "rules_file": str(rules),
                "default_receiver": "hook",
                "receivers": {"hook": {"type": "webhook", "url": receiver.url, "secret": SECRET}},
                "retry": {"initial_backoff": "0.5s", "max_backoff": "2s", "jitter": 0.0},
            },
            **overrides,
        )

    return factory


def start(settings):
    daemon, _ = build_daemon(settings, PIPELINE)
    daemon.start()
    wait_for(lambda: daemon.health.readiness().status == "ok", 120, "the daemon to be ready")
    return daemon


def stop(daemon) -> None:
    daemon.stop_event.set()
    assert daemon.wait() == 0


def test_negative_burst_fires_one_signed_alert_then_resolves(pipeline_settings, feed):
    receiver = Receiver()
    now = datetime.now(timezone.utc)
    burst = stories("neg", NEGATIVE, window_start(now, 20))
    feed.routes["/feed.xml"] = lambda req: Resp(200, rss(burst), {"Content-Type": "application/rss+xml"})
    daemon = start(pipeline_settings(receiver))
    try:
        wait_for(lambda: alerts_in(receiver, "firing"), 120, "the firing alert")
        page = httpx.get(f"{daemon.http.url}/", timeout=10)  # the page at /, on Kafka too
        assert page.status_code == 200 and "/ui/static/app.js" in page.text
        overview = httpx.get(f"{daemon.http.url}/ui/overview", timeout=10).json()
        assert [a["rule"] for a in overview["alerts"] if a["state"] == "firing"] == ["zzz-gloom"]
        assert any(s["key"] == "all" and s["points"] for s in overview["series"])
        recovery = stories("pos", POSITIVE, window_start(now, 10))
        feed.routes["/feed.xml"] = lambda req: Resp(200, rss(burst + recovery), {"Content-Type": "application/rss+xml"})
        # exactly one firing and one resolved: keep watching a settle period after the resolved one
        settled(lambda: alerts_in(receiver, "resolved"), 2, 120, "the resolved alert")
    finally:
        stop(daemon)

    firing, resolved = alerts_in(receiver, "firing"), alerts_in(receiver, "resolved")
    assert len(firing) == 1 and len(resolved) == 1, [r.json() for r in receiver.accepted]
    alert = firing[0]
    assert alert["labels"]["alertname"] == "zzz-gloom" and alert["labels"]["severity"] == "critical"
    assert alert["values"]["mean_score"] < -0.2 and alert["values"]["count"] >= 8
    assert {e["id"] for e in alert["evidence"]} and all(e["score"] < 0 for e in alert["evidence"])
    assert alert["model_version"]
    assert resolved[0]["fingerprint"] == alert["fingerprint"]
    for request in receiver.accepted:
        signing.verify(SECRET, request.headers[signing.SIGNATURE_HEADER], request.body)  # raises if wrong
        assert request.headers[signing.IDEMPOTENCY_HEADER]
    envelope = receiver.accepted[0].json()
    assert envelope["version"] == "4" and envelope["receiver"] == "hook" and envelope["status"] == "firing"


def test_alert_survives_a_failing_receiver_and_a_daemon_restart(pipeline_settings, feed):
    outage_s = 60.0
    started = time.monotonic()
    receiver = Receiver(respond=lambda n: (500, {}) if time.monotonic() - started < outage_s else (200, {}))
    now = datetime.now(timezone.utc)
    burst = stories("neg", NEGATIVE, window_start(now, 20))
    feed.routes["/feed.xml"] = lambda req: Resp(200, rss(burst), {"Content-Type": "application/rss+xml"})

    settings = pipeline_settings(receiver)
    daemon = start(settings)
    try:
        wait_for(lambda: receiver.requests, 120, "a first delivery attempt")
    finally:
        stop(daemon)  # restart while the receiver is still failing
    assert not receiver.accepted
    attempts_before_restart = len(receiver.requests)

    daemon = start(settings)
    try:
        # exactly one delivery: keep watching a settle period after the first one
        settled(lambda: len(receiver.accepted), 3, outage_s + 120, "delivery after the receiver recovered")
    finally:
        stop(daemon)

    assert len(receiver.accepted) == 1, [r.json() for r in receiver.accepted]
    assert len(receiver.requests) > attempts_before_restart  # the restarted daemon retried from its outbox
    keys = {r.headers[signing.IDEMPOTENCY_HEADER] for r in receiver.requests}
    assert len(keys) == 1  # every attempt was the same notification
    firing = alerts_in(receiver, "firing")
    assert len(firing) == 1 and firing[0]["labels"]["alertname"] == "zzz-gloom"
    signing.verify(SECRET, receiver.accepted[0].headers[signing.SIGNATURE_HEADER], receiver.accepted[0].body)

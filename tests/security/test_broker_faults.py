"""The broker dies: a daemon started before its broker waits and becomes ready; a broker killed
with ``kill -9`` mid-stream and resumed on its data loses no accepted story, /readyz says
not-ready meanwhile, and pushes during the outage are refused with 503 (the sender retries) once
the bounded producer buffer and the ack timeout are spent, never accepted and dropped. Across the
same kind of outage the whole alert path sends each alert once.

This test starts a broker of its own (``kafka-local`` with a private state directory and port),
never the shared one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from connectors.webhook import sign
from monitor.app.wiring import PIPELINE, build_daemon
from monitor.core import signing
from tests.alerts.helpers import Receiver
from tests.conftest import KAFKA_LOCAL
from tests.connectors.conftest import FeedServer, Resp, read_topic
from tests.e2e.test_feed_to_webhook import NEGATIVE, POSITIVE, RULES, alerts_in, rss, stories, window_start
from tests.e2e.test_feed_to_webhook import SECRET as HOOK_SECRET
from tests.ports import free_port
from tests.waiting import settled, wait_until

pytestmark = [pytest.mark.kafka]  # a core promise (no story lost, one alert): default tier

SECRET = "fault-push-secret"
# Watched after the resolved alert and readiness came back, before counting deliveries: over the
# outbox's 1 s poll plus the 2 s max_backoff of a retried delivery, and the stages' re-reads of what
# they had not committed before the kill are done by then (readiness is back).
SETTLE_S = 5.0


class Broker:
    def __init__(self, state: Path, port: int) -> None:
        self.env = {**os.environ, "KAFKA_LOCAL_STATE": str(state), "KAFKA_LOCAL_PORT": str(port)}
        self.state = state
        self.bootstrap = f"127.0.0.1:{port}"

    def _run(self, action: str) -> None:
        done = subprocess.run([str(KAFKA_LOCAL), action], env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == f"bootstrap={self.bootstrap}"

    def start(self) -> None:
        self._run("start")

    def resume(self) -> None:
        self._run("resume")

    def kill9(self) -> None:
        pid = int((self.state / "broker.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, "the broker to die")

    def stop(self) -> None:
        subprocess.run([str(KAFKA_LOCAL), "stop"], env=self.env, capture_output=True, text=True, timeout=120)


class Pusher(threading.Thread):
    """A sender that pushes numbered stories and retries each until it is accepted (202)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.accepted: list[str] = []
        self.refused: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            body = json.dumps(
                {"id": f"s-{n}", "title": f"Acme story number {n} on widgets", "published_at": "2026-11-20T10:00:00Z"}
            ).encode()
            try:
                r = httpx.post(self.url, content=body, timeout=60, headers={"X-Finsent-Signature": sign(SECRET, body)})
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            if status == 202:
                self.accepted.extend(r.json()["ids"])
                n += 1
            else:
                self.refused.append(status)
                self.stop.wait(0.5)


def test_broker_down_at_start_then_killed_mid_stream(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", free_port())
    http_port = free_port()
    cfg = tmp_path / "finsent.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "logging": {"level": "INFO", "format": "json"},
                "kafka": {
                    "bootstrap": broker.bootstrap,
                    "buffer_memory": 1024 * 1024,
                    "max_block_ms": 2000,
                    "request_timeout_ms": 5000,
                },
                "http": {"port": http_port},
                "connectors": {
                    "demo": False,
                    "ack_timeout_s": 5,
                    "sources": [{"type": "webhook", "name": "partner", "secret": {"value": SECRET}}],
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    log_path = tmp_path / "daemon.log"
    base = f"http://127.0.0.1:{http_port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def not_ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=3).status_code == 503
        except httpx.HTTPError:
            return False

    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor.app.cli", "ingest", "--config", str(cfg)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    pusher = Pusher(f"{base}/ingest/partner")
    try:
        # 1. No broker yet: the daemon waits, says so, and does not exit.
        wait_until(lambda: "waiting for the Kafka broker" in log_path.read_text(), 60, "a waiting log line")
        assert daemon.poll() is None
        broker.start()
        wait_until(ready, 180, "/readyz once the broker is up")
        assert "Kafka broker reachable" in log_path.read_text()

        # 2. Stream, kill -9 the broker mid-stream, resume it on its data, stream on.
        pusher.start()
        wait_until(lambda: len(pusher.accepted) >= 20, 120, "20 accepted stories")
        broker.kill9()
        accepted_before_outage = len(pusher.accepted)
        wait_until(not_ready, 60, "/readyz to report the outage")
        wait_until(lambda: 503 in pusher.refused, 120, "a push refused with 503 during the outage")
        assert daemon.poll() is None, log_path.read_text()[-3000:]
        broker.resume()
        wait_until(ready, 180, "/readyz after the broker came back")
        wait_until(lambda: len(pusher.accepted) >= accepted_before_outage + 20, 180, "20 more accepted stories")
        pusher.stop.set()
        pusher.join(90)
        assert daemon.poll() is None, log_path.read_text()[-3000:]
    finally:
        pusher.stop.set()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        try:
            on_topic = read_topic(broker.bootstrap, "news.raw", timeout_s=60)
        finally:
            broker.stop()
    ids = [json.loads(r.value)["id"] for r in on_topic]
    missing = set(pusher.accepted) - set(ids)
    assert not missing, f"{len(missing)} accepted stories lost: {sorted(missing)[:5]}"
    assert len(pusher.accepted) == len(set(pusher.accepted))


def test_alert_path_sends_no_alert_twice_across_a_broker_kill(
    tmp_path: Path, make_settings, quick_model_home: Path
) -> None:
    """The whole pipeline (connectors → classify → aggregate → rules → signed webhook) on a broker of
    its own: the broker is killed with ``kill -9`` just after the planted burst's alert went out,
    while the recovery stories are streaming, and resumed on its data. Stages re-read what they had
    not committed, yet the receiver gets the firing alert once and the resolved one once."""
    broker = Broker(tmp_path / "broker", free_port())
    broker.start()
    feed, receiver = FeedServer(), Receiver()
    feed.start()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    now = datetime.now(timezone.utc)
    burst = stories("neg", NEGATIVE, window_start(now, 20))
    recovery = stories("pos", POSITIVE, window_start(now, 10))
    feed.routes["/feed.xml"] = lambda req: Resp(200, rss(burst), {"Content-Type": "application/rss+xml"})
    settings = make_settings(
        home=str(quick_model_home),
        kafka={"bootstrap": broker.bootstrap, "request_timeout_ms": 5000, "max_block_ms": 2000},
        connectors={
            "demo": False,
            "sources": [{"type": "rss", "name": "wire", "url": feed.url("/feed.xml"), "interval_s": 1.0, "retries": 0}],
        },
        classifier={"max_delay_ms": 20},
        aggregator={"windows": [{"name": "5m", "size": "5m"}], "flush_interval": "0.2s"},
        alerts={
            "rules_file": str(rules),
            "default_receiver": "hook",
            "receivers": {"hook": {"type": "webhook", "url": receiver.url, "secret": HOOK_SECRET}},
            "retry": {"initial_backoff": "0.5s", "max_backoff": "2s", "jitter": 0.0},
        },
    )
    daemon, _ = build_daemon(settings, PIPELINE)
    daemon.start()
    try:
        wait_until(lambda: daemon.health.readiness().status == "ok", 120, "the pipeline to be ready")
        wait_until(lambda: alerts_in(receiver, "firing"), 120, "the firing alert")
        feed.routes["/feed.xml"] = lambda req: Resp(200, rss(burst + recovery), {"Content-Type": "application/rss+xml"})
        broker.kill9()
        wait_until(lambda: daemon.health.readiness().status != "ok", 60, "readiness to report the outage")
        assert not daemon.stop_event.is_set(), "a stage died with the broker"
        broker.resume()
        wait_until(
            lambda: alerts_in(receiver, "resolved") or daemon.stop_event.is_set(),
            180,
            "the resolved alert after the outage",
        )
        assert not daemon.stop_event.is_set(), "a stage died during the outage"
        wait_until(lambda: daemon.health.readiness().status == "ok", 60, "readiness after the outage")
        # exactly once each: keep watching a settle period before counting (a late duplicate shows)
        settled(lambda: len(receiver.accepted), SETTLE_S, 10, "the deliveries")
        assert not daemon.stop_event.is_set(), "a stage died after the outage"
    finally:
        daemon.stop_event.set()
        code = daemon.wait()
        feed.stop()
        receiver.close()
        broker.stop()
    assert code == 0
    firing, resolved = alerts_in(receiver, "firing"), alerts_in(receiver, "resolved")
    assert len(firing) == 1 and len(resolved) == 1, [r.json() for r in receiver.accepted]
    assert resolved[0]["fingerprint"] == firing[0]["fingerprint"]
    for request in receiver.accepted:
        signing.verify(HOOK_SECRET, request.headers[signing.SIGNATURE_HEADER], request.body)

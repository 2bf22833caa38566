"""The compose topology without Docker: every finsent role as its own OS process with the
environment compose gives it (hosts rewritten to loopback), the shared Kafka broker, a real
Prometheus with the shipped config and rules, a real Alertmanager with the shipped config.

A replay with a planted burst about one ticker must show up in Prometheus (every role up, the core
series at their expected values), reach Alertmanager as finsent's alert and be delivered by
Alertmanager's webhook; a silence stops its next notification; killing a role fires the shipped
FinsentDown rule, which reaches Alertmanager and its webhook too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from tests.alerts.helpers import Receiver
from tests.deploy.bundle import DEPLOY, ROLES, ROOT, compose, for_duration_zero, role_services, service_port
from tests.deploy.procs import (
    ALERTMANAGER,
    PROMETHEUS,
    Proc,
    free_port,
    need,
    start_alertmanager,
    start_prometheus,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

BURST = 12
OTHER = 6
RULES = f"""
rules:
  - name: zzz-news-burst
    type: threshold
    key: "ticker:ZZZ"
    window: 5m
    metric: count
    op: ">"
    value: {BURST - 1}
    min_count: {BURST}
    for: 0
    severity: critical
    annotations:
      summary: "{{{{ count }}}} stories about {{{{ key }}}} in {{{{ window }}}}"
"""


def replay_file(path: Path) -> None:
    """A burst of distinct negative stories about ZZZ and a few others, all in the current 5m window."""
    now = datetime.now(timezone.utc)
    start = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    at = min(start + timedelta(seconds=1), now).isoformat()
    words = [
        "fraud probe",
        "profit warning",
        "CEO resigns",
        "downgrade",
        "default fears",
        "layoffs",
        "guidance cut",
        "auditor quits",
        "contract lost",
        "credit lines cut",
        "sales slump",
        "halted trading",
    ]
    lines = [
        {
            "id": f"zzz-{i}",
            "title": f"$ZZZ shares plunge after {w} (#{i})",
            "published_at": at,
            "tickers": ["ZZZ"],
            "source": "wire",
            "url": f"https://news.example/zzz/{i}",
        }
        for i, w in enumerate(words[:BURST])
    ]
    lines += [
        {
            "id": f"other-{i}",
            "title": f"Utility {i} files routine quarterly report number {i}",
            "published_at": at,
            "tickers": [f"U{i}"],
            "source": "wire",
        }
        for i in range(OTHER)
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


class Topology:
    def __init__(self, tmp: Path, kafka: str, home: Path) -> None:
        self.tmp, self.kafka, self.home = tmp, kafka, home
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.others: list[Proc] = []

    def env_for(self, service: dict, config: Path) -> dict[str, str]:
        """The service's compose environment, with container paths and hosts rewritten."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if value.startswith("${FINSENT_API_TOKEN:?"):  # compose's required variable: the operator sets it
                value = "topology-test-token-0123456789abcdef"
            value = {
                "/etc/finsent/finsent.yaml": str(config),
                "/var/lib/finsent": str(self.home),
                "kafka:9092": self.kafka,
                "0.0.0.0": "127.0.0.1",
            }.get(value, value)
            env[key] = value
        env["PYTHONPATH"] = str(ROOT)
        return env

    def start_role(self, name: str, service: dict, config: Path) -> None:
        env = self.env_for(service, config)
        port = free_port()
        env["FINSENT_HTTP__PORT"] = str(port)
        self.ports[name] = port
        log = (self.tmp / f"{name}.log").open("ab")
        argv = [sys.executable, "-m", "monitor.app.cli", *service["command"][1:]]
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def ready(self, name: str) -> bool:
        proc = self.procs[name]
        assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{self.log(name)}"
        return httpx.get(f"http://127.0.0.1:{self.ports[name]}/readyz", timeout=3).status_code == 200

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for other in self.others:
            other.stop()


def test_compose_topology_with_real_prometheus_and_alertmanager(tmp_path: Path, kafka_bootstrap: str, topics):
    need(PROMETHEUS, ALERTMANAGER)
    from tests.models.fixtures import trained_tiny_home

    home = trained_tiny_home(tmp_path / "model")
    services = compose()["services"]
    sink = Receiver()
    topo = Topology(tmp_path, kafka_bootstrap, home)
    try:
        # Alertmanager: the shipped config, webhooks to the local sink, fast grouping and repeats
        am_config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
        for receiver in am_config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = sink.url.rsplit("/", 1)[0] + "/" + hook["url"].rsplit("/", 1)[1]
        for route in [am_config["route"], *am_config["route"]["routes"]]:
            route.update(group_wait="1s", group_interval="1s", repeat_interval="4s")
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
        am = start_alertmanager(tmp_path / "alertmanager.yml", tmp_path)
        topo.others.append(am)

        # finsent: the compose config, pointed at this Alertmanager, with the test's replay and rules
        config = yaml.safe_load((DEPLOY / "finsent.compose.yaml").read_text())
        receiver_name = config["alerts"]["default_receiver"]
        config["alerts"]["receivers"][receiver_name]["url"] = am.url
        config["alerts"]["receivers"][receiver_name]["resend_interval"] = "2s"
        suffix = topics.raw.rsplit(".", 1)[1]
        replay = tmp_path / "burst.jsonl"
        replay_file(replay)
        (tmp_path / "rules.yaml").write_text(RULES)
        config.update(
            topics=topics.model_dump(),
            connectors={"demo": False, "sources": [{"type": "file", "name": "wire", "path": str(replay)}]},
            classify={"group_id": f"classify-{suffix}"},
            classifier={"max_delay_ms": 20},
            aggregator={"group_id": f"aggregate-{suffix}", "flush_interval": 0.2, "metric_tickers": ["ZZZ"]},
        )
        config["alerts"].update(rules_file=str(tmp_path / "rules.yaml"), evaluation={"group_id": f"alerts-{suffix}"})
        (tmp_path / "finsent.yaml").write_text(yaml.safe_dump(config))

        # model-init, as compose runs it before classify and retrain
        init = services["model-init"]
        out = subprocess.run(
            [sys.executable, "-m", "monitor.app.cli", *init["command"][1:]],
            capture_output=True,
            text=True,
            env=topo.env_for(init, tmp_path / "finsent.yaml"),
            cwd=tmp_path,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        current = json.loads((home / "models" / "current.json").read_text())["current"]

        roles = role_services()
        for name in ("classify", "aggregate", "alerts", "retrain", "ingest"):
            topo.start_role(name, roles[name], tmp_path / "finsent.yaml")
        for name in roles:
            wait_for(lambda n=name: topo.ready(n), 180, f"{name} /readyz")

        # Prometheus: the shipped config and rules; targets rewritten to the loopback ports
        prom_config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        prom_config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        for job in prom_config["scrape_configs"]:
            if job.pop("dns_sd_configs", None) is not None:
                role = job["job_name"].removeprefix("finsent-")
                assert service_port(roles[role]) is not None
                job["static_configs"] = [{"targets": [f"127.0.0.1:{topo.ports[role]}"]}]
            else:
                job["static_configs"] = [{"targets": [am.url.removeprefix("http://")]}]
        prom_config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [am.url.removeprefix("http://")]}]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
        # the shipped rules, with `for:` shortened so a killed role fires within the test
        (tmp_path / "rules.yml").write_text(for_duration_zero((DEPLOY / "prometheus" / "rules.yml").read_text()))
        prom = start_prometheus(tmp_path / "prometheus.yml", tmp_path)
        topo.others.append(prom)

        def query(expr: str) -> list[dict]:
            body = httpx.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=5).json()
            assert body["status"] == "success", body
            return body["data"]["result"]

        def value(expr: str) -> float | None:
            result = query(expr)
            return float(result[0]["value"][1]) if result else None

        # every role is scraped and up, each under its own role label
        wait_for(
            lambda: {r["metric"]["role"] for r in query('up{job=~"finsent-.+"} == 1')} == set(ROLES),
            60,
            "up == 1 for every role",
        )
        assert {r["metric"]["role"] for r in query("finsent_role_info")} == set(ROLES)
        total = BURST + OTHER
        # the core series: every story ingested once, scored once, counted once, alerted on
        wait_for(lambda: value("sum(finsent_ingest_new_total)") == total, 120, "all stories ingested")
        wait_for(lambda: value("sum(finsent_classify_scored_total)") == total, 120, "all stories scored")
        assert value('sum(finsent_classify_predictions_total{task="sentiment"})') == total
        wait_for(lambda: value('finsent_trend_count{key="all", window="5m"}') == total, 120, "the 'all' trend")
        wait_for(lambda: value('finsent_trend_count{key="ticker:ZZZ", window="5m"}') == BURST, 60, "ZZZ's trend")
        wait_for(
            lambda: (
                value(f'sum(finsent_alerts_notifications_total{{reason="firing", receiver="{receiver_name}"}})') == 1
            ),
            120,
            "finsent's alert fired",
        )
        assert value(f'finsent_model_info{{version="{current}"}}') == 1
        assert value('count(finsent_model_validation{metric="accuracy"})') == 2
        # each series is served by its own role's process only: nothing counted twice
        for metric, job in (
            ("finsent_ingest_new_total", "finsent-ingest"),
            ("finsent_classify_scored_total", "finsent-classify"),
            ("finsent_trend_count", "finsent-aggregate"),
            ("finsent_alerts_notifications_total", "finsent-alerts"),
            ("finsent_model_info", "finsent-classify"),
        ):
            assert {r["metric"]["job"] for r in query(f"count by (job) ({metric})")} == {job}, metric

        # finsent's alert in Alertmanager, and delivered by Alertmanager's webhook
        def am_alerts(**params) -> list[dict]:
            return httpx.get(f"{am.url}/api/v2/alerts", params=params, timeout=5).json()

        def ours(a: dict) -> bool:
            return a["labels"].get("alertname") == "zzz-news-burst"

        (alert,) = wait_for(lambda: [a for a in am_alerts() if ours(a)], 60, "finsent's alert in Alertmanager")
        assert alert["labels"]["ticker"] == "ZZZ" and alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["summary"] == f"{BURST} stories about ticker:ZZZ in 5m"
        assert alert["generatorURL"].startswith("http://localhost:9104/alerts/")

        def notified(name: str, path: str = "/news") -> int:
            return sum(
                1
                for r in sink.accepted
                if r.path == path
                for a in r.json()["alerts"]
                if a["labels"].get("alertname") == name
            )

        wait_for(lambda: notified("zzz-news-burst") >= 1, 60, "Alertmanager's webhook delivery of finsent's alert")

        # a silence through Alertmanager's API stops its next notification (a sentinel alert keeps repeating)
        ends = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        httpx.post(
            f"{am.url}/api/v2/alerts",
            json=[{"labels": {"alertname": "Sentinel", "key": "s"}, "endsAt": ends}],
            timeout=5,
        ).raise_for_status()
        silence = httpx.post(
            f"{am.url}/api/v2/silences",
            timeout=5,
            json={
                "matchers": [{"name": "alertname", "value": "zzz-news-burst", "isRegex": False, "isEqual": True}],
                "startsAt": datetime.now(timezone.utc).isoformat(),
                "endsAt": ends,
                "createdBy": "test",
                "comment": "silenced by the topology test",
            },
        )
        silence.raise_for_status()
        wait_for(
            lambda: [a for a in am_alerts() if ours(a) and a["status"]["state"] == "suppressed"],
            30,
            "the alert silenced",
        )
        before = notified("zzz-news-burst")
        wait_for(lambda: notified("Sentinel") >= 1, 30, "the sentinel notified")
        sentinel_seen = notified("Sentinel")
        wait_for(lambda: notified("Sentinel") >= sentinel_seen + 1, 30, "the sentinel's next repeat")
        assert notified("zzz-news-burst") == before, "a silenced alert was notified"

        # killing one role fires the shipped rule for it, which reaches Alertmanager and its webhook
        topo.procs["aggregate"].kill()
        topo.procs["aggregate"].wait(10)

        def down(a: dict) -> bool:
            return a["labels"].get("alertname") == "FinsentDown" and a["labels"].get("role") == "aggregate"

        wait_for(lambda: [a for a in am_alerts() if down(a)], 60, "FinsentDown{role=aggregate} in Alertmanager")
        wait_for(lambda: notified("FinsentDown", "/ops") >= 1, 60, "FinsentDown delivered to the ops webhook")
        assert {r["metric"]["role"] for r in query('ALERTS{alertname="FinsentDown", alertstate="firing"}')} == {
            "aggregate"
        }
    finally:
        topo.stop()
        sink.close()

"""The 19 defects found by probing the daemon and the CLI with hostile input (issue 18), one test each.

Each test states the request or file a hostile user sent and what finsent must answer now: a
clear 4xx or a rejected row with its line number, never a 500, a traceback or a silent ack.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from alerts.alert_store import AlertStore, Changes
from alerts.api import alerts_router
from alerts.instances import AlertInstance
from connectors.webhook import build_webhook_router, sign
from monitor.app.cli import main
from monitor.app.config import HttpSettings
from monitor.app.http import build_app
from monitor.core.health import Health
from monitor.stages.recent import TrendStore
from monitor.stages.routes import trends_router
from tests.connectors.conftest import dead_letters_on, ingest_factory, news_on  # noqa: F401 - fixture

FP = "0123456789abcdef"
WRITE_TOKEN = "w" * 24
READ_TOKEN = "r" * 24
SECRET = "push-secret-value"
HOSTILE_TIMES = ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"]


def sign_legacy(secret: str, body: bytes) -> str:
    """How an old sender signs: the body-only ``sha256=<hex>`` value (accepted only with
    ``legacy_body_hmac``)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def deep_json(depth: int = 5000) -> bytes:
    return b'{"title": "x", "meta": ' + b"[" * depth + b"]" * depth + b"}"


# -- the alerts API ------------------------------------------------------------------------------
@pytest.fixture
def alert_store(tmp_path: Path):
    store = AlertStore(tmp_path / "alerts.db")
    alert = AlertInstance(
        fingerprint=FP,
        rule="oil-gloom",
        subject="topic:Oil",
        labels={"alertname": "oil-gloom"},
        receiver="local",
        group_key="g",
        group_labels={},
        state="firing",
    )
    store.apply(Changes(upserts={FP: alert}))
    yield store
    store.close()


def api_client(alert_store: AlertStore, host: str = "0.0.0.0", **http) -> tuple[TestClient, CollectorRegistry]:
    tokens = [
        {"name": "ops", "value": WRITE_TOKEN, "scopes": ["write"]},
        {"name": "grafana", "value": READ_TOKEN, "scopes": ["read"]},
    ]
    settings = HttpSettings(host=host, auth={"tokens": tokens}, **http)
    registry = CollectorRegistry()
    app = build_app(Health(), registry, [alerts_router(alert_store), trends_router(TrendStore(), ["5m"])], settings)
    return TestClient(app, base_url="http://127.0.0.1"), registry


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_ack_needs_credentials(alert_store) -> None:
    client, registry = api_client(alert_store)
    r = client.post(f"/alerts/{FP}/ack")
    assert r.status_code == 401 and "scope 'write'" in r.json()["detail"]
    r = client.post(f"/alerts/{FP}/ack", headers=auth(READ_TOKEN))
    assert r.status_code == 403 and r.json()["detail"] == "token 'grafana' lacks scope 'write'"
    assert client.post(f"/alerts/{FP}/ack", headers=auth("x" * 24)).status_code == 401
    assert not alert_store.acked(FP)
    assert client.post(f"/alerts/{FP}/ack", headers=auth(WRITE_TOKEN), json={"by": "alice"}).json() == {
        "fingerprint": FP,
        "acked": True,
    }
    assert registry.get_sample_value("finsent_http_auth_failures_total", {"reason": "missing"}) == 1
    assert registry.get_sample_value("finsent_http_auth_failures_total", {"reason": "scope"}) == 1
    assert registry.get_sample_value("finsent_http_auth_failures_total", {"reason": "invalid"}) == 1


@pytest.mark.parametrize("given", ["%25%25%25%25", "%25", "0123", "012345", "____", FP.upper()])
def test_ack_matches_the_fingerprint_exactly(alert_store, given: str) -> None:
    client, _ = api_client(alert_store)
    r = client.post(f"/alerts/{given}/ack", headers=auth(WRITE_TOKEN))
    assert r.status_code == 404
    assert not alert_store.acked(FP)
    assert alert_store.find_alert("%%%%") is None and alert_store.find_alert("______") is None
    assert alert_store.find_alert(FP[:6]).fingerprint == FP  # the CLI's literal prefix still works


def test_trends_since_outside_utc_is_a_422(alert_store) -> None:
    client, _ = api_client(alert_store, host="127.0.0.1")
    for since in HOSTILE_TIMES:
        r = client.get("/trends", params={"key": "all", "window": "5m", "since": since})
        assert r.status_code == 422, r.text
        assert "outside the range of UTC dates" in json.dumps(r.json())


def test_ack_body_is_capped(alert_store) -> None:
    client, _ = api_client(alert_store, max_body_bytes=4096)
    declared = client.post(
        f"/alerts/{FP}/ack", headers={**auth(WRITE_TOKEN), "Content-Length": str(50_000_000)}, content=b"{}"
    )
    assert declared.status_code == 413

    sent = []

    def chunks():  # chunked: no Content-Length; the cap counts while streaming and stops reading
        for _ in range(50_000):
            sent.append(1)
            yield b" " * 1024

    streamed = client.post(f"/alerts/{FP}/ack", headers=auth(WRITE_TOKEN), content=chunks())
    assert streamed.status_code == 413 and "larger than 4096 bytes" in streamed.json()["detail"]
    assert not alert_store.acked(FP)


# -- pushed stories ------------------------------------------------------------------------------
HOOKS = [
    {"type": "webhook", "name": "partner", "secret": {"value": SECRET}},
    {"type": "webhook", "name": "old", "secret": {"value": SECRET}, "legacy_body_hmac": True},
]


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def push(kafka_settings, ingest_factory):
    settings = kafka_settings(connectors={"demo": False, "sources": HOOKS})
    core, ctx = ingest_factory(settings)
    clock = Clock()
    hooks = [s for s in settings.connectors.sources if s.type == "webhook"]
    app = build_app(Health(), CollectorRegistry(), [build_webhook_router(hooks, core.publisher, core.metrics, clock)])
    client = TestClient(app, base_url="http://127.0.0.1")

    def post(body: bytes, source: str = "partner", signature: str | None = None) -> httpx.Response:
        sig = signature or sign(SECRET, body, int(clock.t))
        return client.post(f"/ingest/{source}", content=body, headers={"X-Finsent-Signature": sig})

    post.settings, post.clock = settings, clock
    return post


@pytest.mark.kafka
@pytest.mark.parametrize("when", HOSTILE_TIMES)
def test_push_with_a_date_outside_utc_is_a_422(push, when: str) -> None:
    r = push(json.dumps({"title": "Acme wins", "published_at": when}).encode())
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["published_at"]


@pytest.mark.kafka
def test_push_nested_5000_deep_is_a_422(push) -> None:
    body = deep_json()
    assert 10_000 <= len(body) <= 11_000
    r = push(body)
    assert r.status_code == 422 and "nested too deeply" in r.json()["detail"]


@pytest.mark.kafka
def test_signed_push_is_accepted_once_and_only_while_fresh(push, kafka_bootstrap) -> None:
    body = json.dumps({"id": "p-1", "title": "Acme wins a $1bn order", "published_at": "2026-11-20T10:00:00Z"}).encode()
    sig = sign(SECRET, body, int(push.clock.t))
    assert push(body, signature=sig).status_code == 202
    again = push(body, signature=sig)  # a captured request sent again: refused, whatever the dedup TTL
    assert again.status_code == 401 and "already used" in again.json()["detail"]
    push.clock.t += 301
    stale = push(body, signature=sig)
    assert stale.status_code == 401 and "outside the 300s tolerance" in stale.json()["detail"]
    # the old body-only HMAC: only behind the explicit legacy flag
    legacy = push(body, signature=sign_legacy(SECRET, body))
    assert legacy.status_code == 401 and "legacy_body_hmac" in legacy.json()["detail"]
    assert push(body, source="old", signature=sign_legacy(SECRET, body)).status_code == 202
    assert sorted(i.source for i in news_on(kafka_bootstrap, push.settings.topics.raw)) == ["old", "partner"]


# -- finsent replay ------------------------------------------------------------------------------
def _replay_config(tmp_path: Path, bootstrap: str, topics) -> Path:
    cfg = tmp_path / "finsent.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "kafka": {"bootstrap": bootstrap},
                "topics": topics.model_dump(),
                "connectors": {"demo": False},
                "logging": {"level": "WARNING"},
            }
        ),
        encoding="utf-8",
    )
    return cfg


@pytest.mark.kafka
def test_replay_rejects_bad_rows_by_line_and_produces_the_rest(
    tmp_path, kafka_bootstrap, topics, capsys, monkeypatch
) -> None:
    for var in [v for v in list(os.environ) if v.startswith("FINSENT_") and v != "FINSENT_TEST_KAFKA"]:
        monkeypatch.delenv(var)
    cfg = _replay_config(tmp_path, kafka_bootstrap, topics)
    good = {"title": "Acme wins a $1bn order", "published_at": "2026-11-20T10:00:00Z"}
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_bytes(
        b"\n".join(
            [
                json.dumps(good).encode(),
                json.dumps({"title": "from the year 10000", "published_at": HOSTILE_TIMES[0]}).encode(),
                b'{"published_at": "2026-11-20T10:00:00Z", "title": "deep", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                json.dumps({"title": {"a": 1}, "published_at": "2026-11-20T10:01:00Z"}).encode(),
                json.dumps({"title": 12345, "published_at": "2026-11-20T10:02:00Z"}).encode(),
                json.dumps({**good, "title": "Globex cuts guidance"}).encode(),
            ]
        )
        + b"\n"
    )
    assert main(["replay", str(jsonl), "--config", str(cfg)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["read"], summary["produced"], summary["rejected"]) == (6, 2, 4)
    assert sorted(i.title for i in news_on(kafka_bootstrap, topics.raw)) == [
        "Acme wins a $1bn order",
        "Globex cuts guidance",
    ]
    reasons = sorted(d.reason for d in dead_letters_on(kafka_bootstrap, topics.dlq))
    assert [re.search(r"line \d+", r).group(0) for r in reasons] == ["line 2", "line 3", "line 4", "line 5"]
    assert "nested too deeply" in reasons[1] and "'title' must be a string, got dict" in reasons[2]
    assert "'title' must be a string, got int" in reasons[3]

    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(
        'title,published_at\nok one,2026-11-20T10:00:00Z\n"'
        + "x" * 5_000_000
        + '",2026-11-20T10:00:00Z\nok two,2026-11-20T10:05:00Z\n',
        encoding="utf-8",
    )
    assert main(["replay", str(csv_path), "--config", str(cfg), "--source", "csv"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["produced"], summary["rejected"]) == (2, 1)
    assert any(
        "line 3: unreadable CSV row: field larger than field limit" in d.reason
        for d in dead_letters_on(kafka_bootstrap, topics.dlq)
    )


# -- finsent check-config ------------------------------------------------------------------------
def check(capsys, path: Path) -> tuple[int, str, str]:
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def clean_env(monkeypatch):
    for var in [v for v in list(os.environ) if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)


def test_check_config_binary_config_file(tmp_path, capsys, clean_env) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x89PNG")
    code, _, err = check(capsys, path)
    assert code == 2 and "not a UTF-8 text file" in err


def test_check_config_binary_rules_file(tmp_path, capsys, clean_env) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(b"\x80\x81\x82")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"home": str(tmp_path), "alerts": {"rules_file": str(rules)}}))
    code, _, err = check(capsys, path)
    assert code == 2 and "not a UTF-8 text file" in err and "alerts.rules_file" in err


@pytest.mark.parametrize("value", ["99999999999d", ".inf", "nan"])
def test_check_config_huge_or_infinite_duration(tmp_path, capsys, clean_env, value: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"home: {tmp_path}\nalerts:\n  outbox:\n    dead_letter_after: {value}\n")
    code, _, err = check(capsys, path)
    assert code == 2 and "alerts.outbox.dead_letter_after" in err


def test_check_config_refuses_infinite_poll_interval(tmp_path, capsys, clean_env) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path),
                "connectors": {"sources": [{"type": "rss", "name": "wire", "url": "https://feeds.example.com/rss"}]},
            }
        ).replace("name: wire", "name: wire\n    interval_s: .inf")
    )
    code, _, err = check(capsys, path)
    assert code == 2 and "connectors.sources.0.rss.interval_s" in err and "finite number" in err


# -- rules files ---------------------------------------------------------------------------------
def test_rule_file_reports_every_error_and_every_unknown_receiver(tmp_path, capsys, clean_env) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {
                        "name": "a",
                        "type": "threshold",
                        "key": "all",
                        "window": "15m",
                        "metric": "negative_share",
                        "value": 0.6,
                        "for": "5x",
                        "annotations": {"summary": "{{ nope }}"},
                    },
                    {
                        "name": "b",
                        "type": "threshold",
                        "key": "all",
                        "window": "15m",
                        "metric": "negative_share",
                        "value": 0.6,
                        "receiver": "pager",
                    },
                ]
            }
        )
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"home": str(tmp_path), "alerts": {"rules_file": str(rules)}}))
    code, _, err = check(capsys, path)
    assert code == 2
    assert "rule 'a': for: invalid duration '5x'" in err
    assert "rule 'a': annotations.summary: unknown template variable 'nope'" in err
    assert "rule 'b': receiver: unknown receiver 'pager'" in err


# -- secrets -------------------------------------------------------------------------------------
def test_check_config_masks_credentials_in_headers_params_and_urls(tmp_path, capsys, clean_env) -> None:
    secrets = ["hdr-api-key-1", "Bearer hdr-bearer-2", "param-token-3", "T000/B000/slackpath4", "urlpass5", "rcv-hdr-6"]
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path),
                "connectors": {
                    "sources": [
                        {
                            "type": "json_api",
                            "name": "api",
                            "url": "https://user:urlpass5@api.example.com/v1/news",
                            "headers": {
                                "X-Api-Key": "hdr-api-key-1",
                                "Authorization": "Bearer hdr-bearer-2",
                                "Accept": "text/json",
                            },
                            "params": {"api_token": "param-token-3", "lang": "en"},
                        },
                    ]
                },
                "alerts": {
                    "receivers": {
                        "chat": {"type": "slack", "url": "https://hooks.slack.com/services/T000/B000/slackpath4"},
                        "ops": {
                            "type": "webhook",
                            "url": "https://hooks.example.com/x",
                            "headers": {"X-Token": "rcv-hdr-6"},
                        },
                        "local": {"type": "file"},
                    }
                },
            }
        )
    )
    code, out, err = check(capsys, path)
    assert code == 0, err
    for secret in secrets:
        assert secret not in out + err
    resolved = json.loads(out)
    assert resolved["connectors"]["sources"][0]["headers"]["Accept"] == "text/json"
    assert resolved["connectors"]["sources"][0]["params"]["lang"] == "en"


def test_webhook_source_with_an_unset_secret_is_refused(tmp_path, capsys, clean_env, monkeypatch) -> None:
    monkeypatch.delenv("PARTNER_SECRET_UNSET", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path),
                "connectors": {
                    "demo": False,
                    "sources": [{"type": "webhook", "name": "partner", "secret": {"env": "PARTNER_SECRET_UNSET"}}],
                },
            }
        )
    )
    code, _, err = check(capsys, path)
    assert code == 2 and "'PARTNER_SECRET_UNSET' holding the secret is not set" in err
    assert main(["ingest", "--config", str(path)]) == 2
    assert "refusing to start" in capsys.readouterr().err
    from connectors.settings import WebhookSource

    with pytest.raises(ValueError, match="PARTNER_SECRET_UNSET"):
        build_webhook_router([WebhookSource(name="partner", secret={"env": "PARTNER_SECRET_UNSET"})], None, None)

"""Issue 26, HTTP items 10-14 and 25: what the API answers hostile tokens, pushes, paths and Host
headers, and that its OpenAPI schema lists the codes it really answers. One test per item."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import APIRouter
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from alerts.alert_store import AlertStore
from alerts.api import alerts_router
from connectors.metrics import IngestMetrics
from connectors.publisher import PublishResult
from connectors.settings import WebhookSource
from connectors.webhook import build_webhook_router, sign
from monitor.app.auth import HttpAuthSettings, trusted_hosts
from monitor.app.cli import main
from monitor.app.config import ConfigError, HttpSettings, load_settings
from monitor.app.http import HttpServer, build_app
from monitor.core.health import Health
from monitor.learning.labels import LabelStore, labels_router
from monitor.stages.recent import ItemStore, TrendStore
from monitor.stages.routes import items_router, trends_router
from monitor.ui.page import page_router

SHARED = "shared-token-value-0123456789"
WRITE = "w" * 24
SECRET = "push-secret-value"
LOCAL = "http://127.0.0.1:8080"


def write_config(tmp_path: Path, tokens: list[dict[str, Any]]) -> Path:
    path = tmp_path / "finsent.yaml"
    path.write_text(yaml.safe_dump({"home": str(tmp_path / "home"), "http": {"auth": {"tokens": tokens}}}))
    return path


# -- 10. tokens --------------------------------------------------------------------------------
def test_duplicate_token_values_with_different_scopes_are_refused(tmp_path, capsys) -> None:
    tokens = [
        {"name": "grafana", "value": SHARED, "scopes": ["read"]},
        {"name": "ops", "value": SHARED, "scopes": ["write"]},
    ]
    problems = HttpAuthSettings(tokens=tokens).problems()
    assert len(problems) == 1 and "'grafana' and 'ops' have the same value" in problems[0]
    assert SHARED not in problems[0]
    # check-config and a daemon refuse it (exit 2), naming both tokens, never the value
    assert main(["check-config", str(write_config(tmp_path, tokens))]) == 2
    out = capsys.readouterr()
    assert "'grafana' and 'ops' have the same value" in out.err
    assert SHARED not in out.out + out.err
    # and an app is never built on it: the read holder cannot write
    with pytest.raises(ValueError, match="'grafana' and 'ops'") as err:
        build_app(Health(), CollectorRegistry(), [], HttpSettings(auth={"tokens": tokens}))
    assert SHARED not in str(err.value)


@pytest.mark.parametrize(
    "value, why",
    [
        (" " * 24, "blank"),
        (" " + "x" * 20, "leading or trailing whitespace"),
        ("x" * 20 + "\t", "leading or trailing whitespace"),
    ],
    ids=["blank", "leading-space", "trailing-tab"],
)
def test_blank_or_space_padded_tokens_are_refused_at_config_time(tmp_path, capsys, monkeypatch, value, why) -> None:
    inline = {"name": "ops", "value": value, "scopes": ["write"]}
    assert main(["check-config", str(write_config(tmp_path, [inline]))]) == 2
    err = capsys.readouterr().err
    assert "http.auth.tokens.0 ('ops'): the token " in err and why in err and "Traceback" not in err
    monkeypatch.setenv("PADDED_TOKEN", value)  # the same from an environment variable
    problems = HttpAuthSettings(tokens=[{"name": "ci", "env": "PADDED_TOKEN"}]).problems()
    assert len(problems) == 1 and why in problems[0] and "x" * 20 not in problems[0]


# -- 11, 12. pushes ----------------------------------------------------------------------------
class SlowPublisher:
    """Stands in for the broker: each publish takes a while (the window the race needs)."""

    def __init__(self, fail: int = 0) -> None:
        self.calls = 0
        self.fail = fail

    def publish(self, source: str, drafts, **_: Any) -> PublishResult:
        self.calls += 1
        time.sleep(0.05)
        if self.fail:
            self.fail -= 1
            return PublishResult(failed=len(drafts))
        return PublishResult(produced=len(drafts), ids=[f"id-{self.calls}"])


def push_app(publisher: SlowPublisher):
    source = WebhookSource(name="partner", secret={"value": SECRET})
    router = build_webhook_router([source], publisher, IngestMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    return build_app(Health(), CollectorRegistry(), [router])


async def post_many(app, body: bytes, signature: str, n: int) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as client:
        return await asyncio.gather(
            *(
                client.post("/ingest/partner", content=body, headers={"X-Finsent-Signature": signature})
                for _ in range(n)
            )
        )


def test_same_signed_push_on_20_connections_at_once_is_accepted_once() -> None:
    publisher = SlowPublisher()
    app = push_app(publisher)
    body = json.dumps({"id": "p-1", "title": "Acme wins a $1bn order"}).encode()
    answers = asyncio.run(post_many(app, body, sign(SECRET, body), 20))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [202] + [401] * 19
    assert all("already used" in r.json()["detail"] for r in answers if r.status_code == 401)
    assert publisher.calls == 1


def test_push_refused_after_its_signature_was_reserved_can_be_sent_again() -> None:
    publisher = SlowPublisher(fail=1)  # the broker does not acknowledge the first try
    client = TestClient(push_app(publisher), base_url=LOCAL)
    body = json.dumps({"id": "p-2", "title": "Acme wins a $1bn order"}).encode()
    signature = sign(SECRET, body)
    headers = {"X-Finsent-Signature": signature}
    assert client.post("/ingest/partner", content=body, headers=headers).status_code == 503
    assert client.post("/ingest/partner", content=body, headers=headers).status_code == 202
    again = client.post("/ingest/partner", content=body, headers=headers)
    assert again.status_code == 401 and "already used" in again.json()["detail"]


@pytest.mark.parametrize(
    "header, why",
    [
        ("t=" + "9" * 400 + ",v1=" + "a" * 64, "t must be unix seconds"),
        ("t={now},v1=" + "é" * 64, "v1 must be 64 hex digits"),
        ("t={now},v1=" + "a" * 63 + "\u00ff", "v1 must be 64 hex digits"),
        ("t=１２３,v1=" + "a" * 64, "t must be unix seconds"),  # fullwidth digits: int() takes them, we do not
    ],
)
def test_signature_with_a_400_digit_timestamp_or_non_ascii_v1_is_a_401(caplog, header, why) -> None:
    client = TestClient(push_app(SlowPublisher()), base_url=LOCAL)  # raises on a 500
    body = b'{"title": "Acme wins"}'
    value = header.replace("{now}", str(int(time.time()))).encode("utf-8")  # raw bytes, as a hostile client sends
    with caplog.at_level(logging.DEBUG):
        r = client.post("/ingest/partner", content=body, headers={"X-Finsent-Signature": value})
    assert r.status_code == 401 and why in r.json()["detail"]
    assert "malformed signature header" in r.json()["detail"]
    assert "Traceback" not in caplog.text


# -- 13. static paths --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/%00",
        "/ui/static/app.js%00.png",
        "/ui/static/" + "a/" * 3000 + "x.js",
        "/ui/static/%2e%2e/http.py",
        "/ui/static/vendor/../../page.py",
    ],
)
def test_hostile_static_paths_are_404_never_500(path: str) -> None:
    app = build_app(Health(), CollectorRegistry(), [page_router(lambda **_: None, lambda *_: None, lambda _: None)])
    client = TestClient(app, base_url=LOCAL)  # raises on a 500
    r = client.get(path)
    assert r.status_code == 404 and len(r.content) < 300
    assert client.get("/ui/static/app.js").status_code == 200
    assert client.get("/ui/static/vendor/uPlot.min.css").status_code == 200


# -- 14. Host header ---------------------------------------------------------------------------
def test_foreign_host_header_is_refused_with_400() -> None:
    app = build_app(Health(), CollectorRegistry(), [trends_router(TrendStore(), ["5m"])])  # loopback: reads open
    client = TestClient(app, base_url=LOCAL, follow_redirects=False)
    for host in ("127.0.0.1:8080", "localhost", "[::1]:8080", "LOCALHOST:1"):
        assert client.get("/trends/keys", headers={"host": host}).status_code == 200, host
    for host in ("attacker.example", "attacker.example:8080", "127.0.0.1.attacker.example", "0.0.0.0", "", "a b"):
        r = client.get("/trends/keys", headers={"host": host})
        assert r.status_code == 400 and "attacker" not in r.text, host
    redirected = client.get("/trends/keys/", headers={"host": "attacker.example"})  # a redirect reflected Host
    assert redirected.status_code == 400 and "location" not in redirected.headers


def test_allowed_hosts_come_from_bind_host_public_url_and_the_allowed_hosts_setting() -> None:
    assert trusted_hosts("127.0.0.1", None, []) == ["127.0.0.1", "localhost", "[::1]"]
    assert trusted_hosts("10.0.0.5", "https://News.Example.com:8443/finsent", ["*.corp.example", "::1"]) == [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "*.corp.example",
        "10.0.0.5",
        "news.example.com",
    ]
    assert trusted_hosts("0.0.0.0", None, []) == ["*"]  # every interface, names unknown: reads need a token
    assert "0.0.0.0" not in trusted_hosts("0.0.0.0", None, ["finsent"])
    settings = HttpSettings(host="10.0.0.5", public_url="https://news.example.com", allowed_hosts=["Finsent.Corp."])
    client = TestClient(build_app(Health(), CollectorRegistry(), [], settings), base_url=LOCAL)
    for host, status in (
        ("10.0.0.5:8080", 200),
        ("news.example.com", 200),
        ("finsent.corp", 200),
        ("other.example", 400),
        ("127.0.0.1", 200),
    ):
        assert client.get("/healthz", headers={"host": host}).status_code == status, host
    with pytest.raises(ConfigError, match="http.allowed_hosts: .*expected a host name"):
        load_settings(None, http={"allowed_hosts": ["https://news.example.com/"]})


def test_metrics_and_page_answer_on_127_0_0_1_behind_the_host_check() -> None:
    app = build_app(
        Health(),
        CollectorRegistry(),
        [page_router(lambda **_: None, lambda *_: None, lambda _: None)],
        HttpSettings(port=0),
    )
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    try:
        for base in (server.url, f"http://localhost:{server.port}"):
            assert httpx.get(f"{base}/metrics").status_code == 200
            page = httpx.get(f"{base}/")
            assert page.status_code == 200 and "<html" in page.text.lower()
        rebound = httpx.get(f"{server.url}/metrics", headers={"host": "rebind.attacker.example"})
        assert rebound.status_code == 400
    finally:
        server.stop()


# -- 25. the schema ----------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path):
    alerts, labels = AlertStore(tmp_path / "alerts.db"), LabelStore(tmp_path / "labels.db")
    routers: list[APIRouter] = [
        trends_router(TrendStore(), ["5m"]),
        items_router(ItemStore()),
        alerts_router(alerts),
        labels_router(labels, {}.get),
        page_router(lambda **_: None, lambda *_: None, lambda _: None),
    ]
    settings = HttpSettings(auth={"tokens": [{"name": "ops", "value": WRITE, "scopes": ["write"]}]})
    yield TestClient(build_app(Health(), CollectorRegistry(), routers, settings), base_url=LOCAL)
    alerts.close()
    labels.close()


def test_openapi_lists_the_status_codes_each_operation_answers(api) -> None:
    paths = api.get("/openapi.json").json()["paths"]

    def codes(method: str, path: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"400"} <= codes("get", "/trends")
    assert {"400", "404"} <= codes("get", "/ui/keys") and {"400", "404"} <= codes("get", "/ui/overview")
    for method, path in (
        ("get", "/alerts/{fingerprint}"),
        ("post", "/alerts/{fingerprint}/ack"),
        ("get", "/items/{item_id}"),
        ("get", "/ui/item"),
    ):
        assert "404" in codes(method, path), path
    for method, path in (("get", "/trends"), ("post", "/labels"), ("post", "/alerts/{fingerprint}/ack")):
        assert {"401", "403"} <= codes(method, path), path
    assert "413" in codes("post", "/labels") and "503" in codes("get", "/readyz")
    assert "401" not in codes("get", "/healthz")
    # and the answers are what the schema says
    assert api.get("/trends", params={"key": "all", "window": "9h"}).status_code == 400
    assert api.get("/alerts/nope").status_code == 404 and api.get("/items/nope").status_code == 404


def test_labels_422_body_matches_the_documented_error_schema(api) -> None:
    schema = api.get("/openapi.json").json()
    documented = schema["paths"]["/labels"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    auth = {"Authorization": f"Bearer {WRITE}"}
    bad_rows = api.post("/labels", headers=auth, json=[{"task": "colour", "text": "x", "label": "red"}])
    empty = api.post("/labels", headers=auth, json=[])
    not_json = api.post("/labels", headers={**auth, "content-type": "application/json"}, content=b"{oops")
    for r in (bad_rows, empty, not_json):
        assert r.status_code == 422
        assert conforms(r.json(), documented, schema), r.text
    assert bad_rows.json()["errors"][0]["row"] == 0


def conforms(value: Any, node: dict[str, Any], root: dict[str, Any]) -> bool:
    """``value`` against the JSON-schema subset FastAPI emits ($ref, anyOf, type, properties,
    required, items, additionalProperties)."""
    if "$ref" in node:
        return conforms(value, root["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]], root)
    if "anyOf" in node:
        return any(conforms(value, option, root) for option in node["anyOf"])
    kind = node.get("type")
    types = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool, "null": type(None)}
    if kind == "number" and not isinstance(value, (int, float)):
        return False
    if kind in types and not isinstance(value, types[kind]):
        return False
    if isinstance(value, dict):
        if any(key not in value for key in node.get("required", [])):
            return False
        props = node.get("properties", {})
        return all(conforms(v, props[k], root) for k, v in value.items() if k in props)
    if isinstance(value, list) and "items" in node:
        return all(conforms(v, node["items"], root) for v in value)
    return True

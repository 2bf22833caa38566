"""HTTP bearer tokens: scopes, the loopback rule for reads, token sources, TLS, clear 401/403."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from monitor.app.auth import TokenSettings
from monitor.app.cliargs import settings_problems
from monitor.app.config import HttpSettings, load_settings
from monitor.app.http import HttpServer, build_app
from monitor.core.health import Health

READ, WRITE, ADMIN = "r" * 20, "w" * 20, "a" * 20


def demo_router() -> APIRouter:
    router = APIRouter()

    @router.get("/things")
    def things() -> dict:
        return {"things": []}

    @router.post("/things")
    def add() -> dict:
        return {"added": True}

    @router.post("/ingest/{source}")
    def ingest(source: str) -> dict:  # authenticates itself (per-source secrets)
        return {"source": source}

    return router


def client(host: str, tokens: list[dict] | None = None) -> TestClient:
    tokens = (
        tokens
        if tokens is not None
        else [
            {"name": "reader", "value": READ, "scopes": ["read"]},
            {"name": "writer", "value": WRITE, "scopes": ["write"]},
            {"name": "root", "value": ADMIN, "scopes": ["admin"]},
        ]
    )
    http = HttpSettings(host=host, auth={"tokens": tokens})
    return TestClient(build_app(Health(), CollectorRegistry(), [demo_router()], http), base_url="http://127.0.0.1")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_off_loopback_every_read_and_write_needs_a_scoped_token() -> None:
    c = client("0.0.0.0")
    for path in ("/things", "/metrics"):
        r = c.get(path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json() == {
            "detail": "this endpoint needs a bearer token with scope 'read' (header 'Authorization: Bearer <token>')"
        }
        assert all(c.get(path, headers=bearer(t)).status_code == 200 for t in (READ, WRITE, ADMIN))
    assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200  # probes stay open
    assert c.post("/things", headers=bearer(READ)).status_code == 403
    assert c.post("/things", headers=bearer(WRITE)).json() == {"added": True}
    assert c.post("/things", headers=bearer(ADMIN)).status_code == 200
    assert c.post("/things", headers={"Authorization": f"Basic {WRITE}"}).status_code == 401
    assert c.post("/ingest/partner").status_code == 200  # the push receiver checks its own secret
    assert c.get("/things", headers=bearer(READ + "x")).json() == {"detail": "invalid bearer token"}


def test_on_loopback_reads_are_open_but_writes_still_need_write() -> None:
    c = client("127.0.0.1")
    assert c.get("/things").status_code == 200 and c.get("/metrics").status_code == 200
    assert c.post("/things").status_code == 401
    assert c.post("/things", headers=bearer(WRITE)).status_code == 200
    # a wrong token is refused even where none is needed: it is a client bug worth seeing
    assert c.get("/things", headers=bearer("nope-nope-nope-nope")).status_code == 401
    # with no tokens configured, nothing can change state over HTTP
    assert client("::1", tokens=[]).post("/things").status_code == 401


def test_tokens_come_from_config_env_or_file_and_problems_are_reported(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "token").write_text(WRITE + "\n")
    monkeypatch.setenv("FINSENT_TEST_READ_TOKEN", READ)
    tokens = [
        {"name": "file", "file": str(tmp_path / "token"), "scopes": ["write"]},
        {"name": "env", "env": "FINSENT_TEST_READ_TOKEN"},
    ]
    c = client("0.0.0.0", tokens)
    assert c.post("/things", headers=bearer(WRITE)).status_code == 200
    assert c.get("/things", headers=bearer(READ)).status_code == 200
    assert c.post("/things", headers=bearer(READ)).status_code == 403

    monkeypatch.delenv("FINSENT_TEST_READ_TOKEN")
    for var in [v for v in os.environ if v.startswith("FINSENT_")]:
        monkeypatch.delenv(var)
    settings = load_settings(
        None,
        home=str(tmp_path),
        http={
            "auth": {
                "tokens": [
                    *tokens,
                    {"name": "short", "value": "abc"},
                    {"name": "gone", "file": str(tmp_path / "missing")},
                ]
            },
            "tls_cert": str(tmp_path / "cert.pem"),
        },
    )
    problems = settings_problems(settings)
    assert any("'FINSENT_TEST_READ_TOKEN' holding the token is not set" in p for p in problems)
    assert any("('short'): a token needs at least 16 characters" in p for p in problems)
    assert any("('gone'): cannot read token file" in p for p in problems)
    assert "http: give both tls_cert and tls_key, or neither" in problems
    with pytest.raises(ValueError, match="exactly one of"):
        TokenSettings(name="x", value=READ, env="X")


def test_tls_serves_https(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    http = HttpSettings(host="127.0.0.1", port=0, tls_cert=cert, tls_key=key)
    server = HttpServer(
        build_app(Health(), CollectorRegistry(), [demo_router()], http), "127.0.0.1", 0, (str(cert), str(key))
    )
    server.start()
    try:
        assert server.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        assert httpx.get(f"{server.url}/things", verify=ctx).json() == {"things": []}
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https://", "http://") + "/things", timeout=5)
    finally:
        server.stop()

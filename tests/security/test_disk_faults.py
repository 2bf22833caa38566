"""A full disk under the ingest state: a push whose stories cannot be remembered is answered 503
(not accepted, so the sender retries), the error is logged and counted, and once space returns the
retried push is accepted; nothing acknowledged is lost. Uses a real 8 MiB tmpfs (needs root and
``mount``; skipped elsewhere)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from connectors.webhook import build_webhook_router, sign
from monitor.health import Health
from monitor.http import build_app
from tests.connectors.conftest import ingest_factory, news_on  # noqa: F401 - fixture

pytestmark = pytest.mark.kafka
SECRET = "disk-push-secret"


@pytest.fixture
def small_state_dir(finsent_home: Path):
    state = finsent_home / "state"
    state.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(state)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_full_disk_refuses_pushes_until_space_returns(small_state_dir: Path, kafka_settings, ingest_factory,
                                                      kafka_bootstrap) -> None:
    settings = kafka_settings(connectors={"demo": False, "ack_timeout_s": 10, "sources": [
        {"type": "webhook", "name": "partner", "secret": {"value": SECRET}}]})
    core, ctx = ingest_factory(settings)
    hooks = [s for s in settings.connectors.sources if s.type == "webhook"]
    client = TestClient(build_app(Health(), CollectorRegistry(), [build_webhook_router(hooks, core.publisher,
                                                                                      core.metrics)]))

    def push(n: int):
        body = json.dumps({"id": f"d-{n}", "title": f"Acme story {n} about widgets and gadgets",
                           "published_at": "2026-11-20T10:00:00Z"}).encode()
        return client.post("/ingest/partner", content=body, headers={"X-Finsent-Signature": sign(SECRET, body)})

    assert push(1).status_code == 202
    filler = fill(small_state_dir)
    refused = [push(n) for n in range(2, 40)]  # enough rows to need a new page of the full database
    assert all(r.status_code in (202, 503) for r in refused)
    assert any(r.status_code == 503 for r in refused), "the full disk was never noticed"
    assert "retry" in next(r for r in refused if r.status_code == 503).json()["detail"]
    failed = ctx.registry.get_sample_value("finsent_ingest_errors_total", {"source": "partner", "kind": "publish"})
    assert failed and failed > 0

    filler.unlink()
    accepted = {1} | {n for n, r in zip(range(2, 40), refused) if r.status_code == 202}
    for n in range(2, 40):
        if n not in accepted:
            r = push(n)
            assert r.status_code == 202, r.text
            accepted.add(n)
    titles = {i.title for i in news_on(kafka_bootstrap, settings.topics.raw)}
    assert {f"Acme story {n} about widgets and gadgets" for n in accepted} <= titles
    assert len(accepted) == 39

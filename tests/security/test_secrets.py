"""Secrets never printed: a full `finsent run` against the real broker with a secret in every
secret-bearing field, made to fail where secrets tend to leak (fetch errors with tokens in URLs,
refused pushes, refused API calls), then every byte of its output, ``check-config`` and the HTTP
answers are searched for each secret."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.ports import free_port
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

SECRETS = {
    "sasl": "sasl-pass-8d1f0c",
    "api_env": "api-env-token-51aa9e",
    "hdr_key": "hdr-api-key-77b0e1",
    "hdr_bearer": "hdr-bearer-3c9d44",
    "param": "param-token-e01f2a",
    "url_pass": "url-pass-9a7c11",
    "rss_token": "rss-query-token-4b2e",
    "push": "push-secret-6f31d8",
    "rcv_secret": "rcv-hmac-secret-0d5e",
    "rcv_hdr": "rcv-header-token-2a8f",
    "slack": "slackpath-T0B0-5c3d",
    "http_token": "http-write-token-8e6b3f2a",
}


def test_no_secret_is_ever_printed(quick_model_home: Path, tmp_path: Path, kafka_bootstrap: str, topics) -> None:
    closed = free_port()  # nothing listens here: every fetch and delivery to it fails, and is logged
    port = free_port()
    s = SECRETS
    config = {
        "home": str(quick_model_home),
        "logging": {"level": "DEBUG", "format": "json"},
        "kafka": {"bootstrap": kafka_bootstrap, "sasl_password": s["sasl"]},
        "topics": topics.model_dump(),
        "http": {"port": port, "auth": {"tokens": [{"name": "ops", "value": s["http_token"], "scopes": ["write"]}]}},
        "connectors": {
            "demo": True,
            "demo_speed": 600,
            "sources": [
                {
                    "type": "json_api",
                    "name": "api",
                    "url": f"http://user:{s['url_pass']}@127.0.0.1:{closed}/v1/news",
                    "interval_s": 0.5,
                    "retries": 0,
                    "auth": {"env": "FINSENT_TEST_API_SECRET"},
                    "headers": {"X-Api-Key": s["hdr_key"], "Authorization": f"Bearer {s['hdr_bearer']}"},
                    "params": {"api_key": s["param"]},
                },
                {
                    "type": "rss",
                    "name": "wire",
                    "url": f"http://127.0.0.1:{closed}/rss?token={s['rss_token']}",
                    "interval_s": 0.5,
                    "retries": 0,
                },
                {"type": "webhook", "name": "partner", "secret": {"env": "FINSENT_TEST_PUSH_SECRET"}},
            ],
        },
        "alerts": {
            "default_receiver": "ops",
            "receivers": {
                "ops": {
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{closed}/hook",
                    "secret": s["rcv_secret"],
                    "headers": {"X-Token": s["rcv_hdr"]},
                },
                "chat": {"type": "slack", "url": f"https://hooks.slack.com/services/{s['slack']}"},
                "local": {"type": "file"},
            },
        },
    }
    cfg = tmp_path / "finsent.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update(HF_HUB_OFFLINE="1", FINSENT_TEST_API_SECRET=s["api_env"], FINSENT_TEST_PUSH_SECRET=s["push"])

    checked = subprocess.run(
        [sys.executable, "-m", "monitor.app.cli", "check-config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr
    seen = [checked.stdout, checked.stderr]

    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.app.cli", "run", "--config", str(cfg)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def failed_fetches_logged_and_ready() -> bool:
        assert proc.poll() is None, f"daemon exited early:\n{log_path.read_text()[-3000:]}"
        text = log_path.read_text()
        return (
            "API fetch failed" in text
            and "feed fetch failed" in text
            and httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        )

    try:
        try:
            wait_until(
                failed_fetches_logged_and_ready,
                180,
                "both fetch failures logged and /readyz ok",
                every_s=0.5,
                ignoring=(httpx.HTTPError,),
            )
        except AssertionError as err:
            if not str(err).startswith("timed out"):
                raise  # the daemon exited: its log is in the message already
            raise AssertionError(f"{err}:\n{log_path.read_text()[-3000:]}") from None
        # answers that could echo a secret
        body = b'{"title": "x"}'
        seen.append(
            httpx.post(f"{base}/ingest/partner", content=body, headers={"X-Finsent-Signature": "t=1,v1=00"}).text
        )
        seen.append(httpx.post(f"{base}/alerts/x/ack", headers={"Authorization": "Bearer wrong-token-000000"}).text)
        seen.append(httpx.get(f"{base}/readyz").text)
        seen.append(httpx.get(f"{base}/alerts").text)
        seen.append(httpx.get(f"{base}/metrics").text)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    seen.append(log_path.read_text())
    for path in quick_model_home.rglob("*.jsonl"):
        seen.append(path.read_text(errors="replace"))
    everything = "\n".join(seen)
    leaked = {name: value for name, value in s.items() if value in everything}
    assert not leaked, f"secrets printed: {sorted(leaked)}"
    # the failures were reported, with the URLs' non-secret parts intact
    assert f"127.0.0.1:{closed}/rss?token=**********" in everything
    assert "user:**********@127.0.0.1" in everything
    assert json.loads(checked.stdout)["connectors"]["sources"][0]["headers"]["X-Api-Key"] == "**********"

"""The ingest component in the daemon (``finsent ingest``) and the connectors config section."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors.settings import DEMO_SOURCE_NAME, ConnectorsSettings
from connectors.webhook import sign
from monitor.app.config import ConfigError
from tests.connectors.conftest import Resp, fixture_bytes, news_on, static, wait_for


def test_default_settings_replay_the_demo_feed_and_can_turn_it_off(make_settings) -> None:
    default = ConnectorsSettings()
    [demo] = default.active_sources()
    assert demo.name == DEMO_SOURCE_NAME and demo.loop and demo.clock == "shifted" and demo.path.is_file()
    assert ConnectorsSettings(demo=False).active_sources() == []
    s = make_settings(
        connectors={
            "sources": [
                {"type": "rss", "name": "r", "url": "https://feeds.example.com/rss"},
                {"type": "json_api", "name": "j", "url": "https://api.example.com/news", "auth": {"value": "k"}},
                {"type": "webhook", "name": "w", "secret": {"env": "HOOK_SECRET"}},
                {"type": "file", "name": "f", "path": "/tmp/x.jsonl", "enabled": False},
            ]
        }
    )
    assert [x.type for x in s.connectors.active_sources()] == ["rss", "json_api", "webhook", "file"]
    assert s.masked()["connectors"]["sources"][1]["auth"]["value"] == "**********"


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([{"type": "ftp", "name": "x"}], "does not match any of the expected tags"),
        ([{"type": "rss", "name": "x", "url": "feed.xml"}], "String should match pattern"),
        (
            [{"type": "rss", "name": "a", "url": "http://a/"}, {"type": "rss", "name": "a", "url": "http://b/"}],
            "source names must be unique",
        ),
        ([{"type": "webhook", "name": "w", "secret": {}}], "exactly one of 'value' or 'env'"),
        ([{"type": "file", "name": "bad name!", "path": "x"}], "String should match pattern"),
    ],
)
def test_invalid_sources_are_reported(make_settings, sources, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(connectors={"sources": sources})


@pytest.mark.kafka
def test_ingest_daemon_runs_pollers_replays_and_webhook(
    kafka_settings, kafka_bootstrap, feed_server, tmp_path, monkeypatch
) -> None:
    from monitor.app.wiring import build_daemon

    feed_server.routes["/a.xml"] = static(fixture_bytes("feed_a.xml"))
    feed_server.routes["/slow.xml"] = lambda req: Resp(200, b"", delay_s=1.0)
    replay = tmp_path / "r.jsonl"
    replay.write_text(
        json.dumps(
            {"title": "Replayed story about Initech", "published_at": "2026-11-20T10:00:00Z", "tickers": ["INTC"]}
        )
        + "\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("HOOK_SECRET", "s")
    settings = kafka_settings(
        connectors={
            "demo": False,
            "sources": [
                {"type": "rss", "name": "wire-a", "url": feed_server.url("/a.xml"), "interval_s": 3600},
                {
                    "type": "rss",
                    "name": "slow",
                    "url": feed_server.url("/slow.xml"),
                    "interval_s": 3600,
                    "timeout_s": 0.2,
                    "retries": 0,
                },
                {"type": "file", "name": "backfill", "path": str(replay)},
                {"type": "webhook", "name": "hook", "secret": {"env": "HOOK_SECRET"}},
            ],
        }
    )
    daemon, ctx = build_daemon(settings, ["ingest"])
    daemon.start()
    try:
        wait_for(lambda: len(news_on(kafka_bootstrap, settings.topics.raw)) >= 3, what="3 stories on the raw topic")
        body = json.dumps({"title": "Pushed story", "id": "push-1"}).encode()
        r = httpx.post(f"{daemon.http.url}/ingest/hook", content=body, headers={"X-Finsent-Signature": sign("s", body)})
        assert r.status_code == 202, r.text
        wait_for(
            lambda: (
                (
                    ctx.registry.get_sample_value("finsent_ingest_errors_total", {"source": "slow", "kind": "timeout"})
                    or 0
                )
                == 1
            ),
            what="the slow source's timeout counted",
        )
        assert httpx.get(f"{daemon.http.url}/readyz").status_code == 200
        metrics = httpx.get(f"{daemon.http.url}/metrics", follow_redirects=True).text
        assert 'finsent_ingest_new_total{source="wire-a"} 2.0' in metrics
    finally:
        assert daemon.shutdown() == 0
    titles = sorted(i.title for i in news_on(kafka_bootstrap, settings.topics.raw))
    assert titles == [
        "Massive Dynamic to acquire rival lab for $2 billion in cash",
        "Oscorp shares surge after FDA approves experimental therapy",
        "Pushed story",
        "Replayed story about Initech",
    ]

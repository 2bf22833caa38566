"""JSON API poller: field mapping, page and cursor pagination, auth from a secret; real Kafka."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from connectors.json_api import get_path
from tests.connectors.conftest import Resp, dead_letters_on, news_on
from tests.connectors.test_rss import poller_for, sample, settings_with

UTC = timezone.utc
TOKEN = "s3cret-token"


def _story(n: int) -> dict:
    return {
        "uuid": f"story-{n}",
        "headline": f"Company {n} <i>reports</i> results number {n}",
        "summary": f"Body of story {n}",
        "links": {"web": f"/articles/{n}"},
        "time": 1795168800000 + n * 60_000,  # epoch milliseconds
        "symbols": [{"ticker": f"T{n}"}, {"ticker": "IDX"}],
    }


PAGES = {
    "1": [_story(1), _story(2)],
    "2": [_story(3), {"uuid": "no-title", "summary": "missing headline", "time": 1795168800}],
    "3": [],
}


def page_handler(req):
    if req.headers.get("x-api-key") != f"Token {TOKEN}":
        return Resp(401, b'{"error": "unauthorised"}', {"Content-Type": "application/json"})
    page = req.query.get("page", "1")
    return Resp(
        200, json.dumps({"data": {"items": PAGES.get(page, [])}}).encode(), {"Content-Type": "application/json"}
    )


def cursor_handler(req):
    cursor = req.query.get("after")
    body = (
        {"results": [_story(10), _story(11)], "meta": {"next": "abc"}}
        if cursor is None
        else {"results": [_story(12)], "meta": {"next": None}}
        if cursor == "abc"
        else {"results": []}
    )
    return Resp(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


FIELDS = {
    "id": "uuid",
    "title": "headline",
    "body": "summary",
    "url": "links.web",
    "published_at": "time",
    "tickers": "symbols.*.ticker",
}


def test_get_path() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": 2}, {"d": 3}]}}
    assert get_path(doc, "a.b.1.c") == 2
    assert get_path(doc, "a.b.*.c") == [1, 2]
    assert get_path(doc, "a.b.-1.d") == 3
    assert get_path(doc, "a.x.c") is None
    assert get_path(doc, "") is doc


@pytest.mark.kafka
def test_page_pagination_mapping_and_auth(
    kafka_settings, kafka_bootstrap, feed_server, ingest_factory, monkeypatch
) -> None:
    feed_server.routes["/api/news"] = page_handler
    monkeypatch.setenv("ACME_NEWS_TOKEN", TOKEN)
    api = {
        "type": "json_api",
        "name": "acme-api",
        "url": feed_server.url("/api/news"),
        "items_path": "data.items",
        "fields": FIELDS,
        "pagination": {"type": "page", "param": "page", "start": 1, "max_pages": 5},
        "auth_header": "X-Api-Key",
        "auth_scheme": "Token",
        "auth": {"env": "ACME_NEWS_TOKEN"},
    }
    bad = {**api, "name": "acme-bad-key", "auth": {"value": "wrong"}}
    settings = settings_with(kafka_settings, api, bad)
    core, ctx = ingest_factory(settings)

    result = poller_for(core, settings, "acme-api").poll_once()
    assert (result.produced, result.rejected) == (3, 1)
    assert [r.query.get("page") for r in feed_server.hits["/api/news"]] == ["1", "2", "3"]
    items = sorted(news_on(kafka_bootstrap, settings.topics.raw), key=lambda i: i.published_at)
    assert [i.title for i in items] == [f"Company {n} reports results number {n}" for n in (1, 2, 3)]
    first = items[0]
    assert first.url == feed_server.url("/articles/1")
    assert first.published_at == datetime(2026, 11, 20, 10, 1, tzinfo=UTC)
    assert first.tickers == ("T1", "IDX") and first.body == "Body of story 1"
    assert [d.reason for d in dead_letters_on(kafka_bootstrap, settings.topics.dlq)] == ["acme-api: missing title"]

    # Second poll: page 1 holds nothing new, so paging stops there.
    hits = feed_server.count("/api/news")
    again = poller_for(core, settings, "acme-api").poll_once()
    assert (again.produced, again.duplicates) == (0, 2)
    assert feed_server.count("/api/news") == hits + 1

    # A wrong key: 401, counted, not retried, nothing produced.
    assert poller_for(core, settings, "acme-bad-key").poll_once().produced == 0
    assert sample(ctx, "finsent_ingest_errors_total", source="acme-bad-key", kind="http_4xx") == 1
    assert len(news_on(kafka_bootstrap, settings.topics.raw)) == 3


@pytest.mark.kafka
def test_cursor_pagination(kafka_settings, kafka_bootstrap, feed_server, ingest_factory) -> None:
    feed_server.routes["/api/cursor"] = cursor_handler
    api = {
        "type": "json_api",
        "name": "cursor-api",
        "url": feed_server.url("/api/cursor"),
        "items_path": "results",
        "fields": FIELDS,
        "pagination": {"type": "cursor", "param": "after", "next_cursor_path": "meta.next"},
    }
    settings = settings_with(kafka_settings, api)
    core, ctx = ingest_factory(settings)
    assert poller_for(core, settings, "cursor-api").poll_once().produced == 3
    assert [r.query.get("after") for r in feed_server.hits["/api/cursor"]] == [None, "abc"]
    assert sorted(i.meta.get("api") and i.title for i in news_on(kafka_bootstrap, settings.topics.raw)) == [
        f"Company {n} reports results number {n}" for n in (10, 11, 12)
    ]
    assert sample(ctx, "finsent_ingest_new_total", source="cursor-api") == 3

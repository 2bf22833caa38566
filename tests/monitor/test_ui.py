"""The page at / and the JSON it polls, over in-process stores (no browser, no model)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from monitor.app.component import Context
from monitor.app.components.ui import build_ui
from monitor.app.http import build_app
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import NewsItem, ScoredItem
from monitor.stages.recent import ItemStore, TrendStore
from monitor.stages.windows import PartitionWindows
from tests.alerts.helpers import T0

SCRIPT_TITLE = "<script>window.__pwned = 1</script> Halvorsen <b>plunges</b>"


def scored(i: int, title: str, tickers=("HLVB",), score=-0.8, source="wire", minutes=0.0, dup_of=None) -> ScoredItem:
    meta = {"near_duplicate_of": dup_of} if dup_of else {}
    item = NewsItem(
        id=f"s{i}",
        source=source,
        title=title,
        url=f"https://news.example/{i}",
        published_at=T0 + timedelta(minutes=minutes),
        tickers=tickers,
        novelty=0.5 if dup_of else 1.0,
        meta=meta,
    )
    label = "negative" if score < 0 else "positive"
    return ScoredItem(
        item=item,
        sentiment=label,
        sentiment_probs={"negative": 0.85, "neutral": 0.1, "positive": 0.05},
        sentiment_score=score,
        topic="Company | Product News",
        topic_probs={"Company | Product News": 1.0},
        model_version="m-test",
    )


def fill(settings, stories: list[ScoredItem]) -> tuple[TrendStore, ItemStore]:
    """Stores as the aggregator would fill them: the stories through real window arithmetic."""
    from monitor.stages.windows import trend_keys

    trends, items = TrendStore(), ItemStore()
    part = PartitionWindows(settings.aggregator)
    for s in stories:
        items.put(s)
        for key in trend_keys(s):
            part.add(key, s)
    for p in part.take_dirty():
        trends.put(p)
    return trends, items


@pytest.fixture
def page(make_settings):
    settings = make_settings()

    def build(stories: list[ScoredItem] | None = None, with_trends: bool = True) -> TestClient:
        ctx = Context(settings=settings, bus=MemoryBus(), registry=CollectorRegistry())
        if stories is not None:
            trends, items = fill(settings, stories)
            if with_trends:
                ctx.trends = trends
            ctx.items = items
        component = build_ui(ctx)
        return TestClient(build_app(ctx.health, ctx.registry, component.routers), base_url="http://127.0.0.1")

    return build


STORIES = [
    scored(1, "Halvorsen Bancorp shares halted after lender flags losses", minutes=1),
    scored(2, "Halvorsen Bancorp withdraws guidance", minutes=2),
    scored(3, "UPDATE 1-Halvorsen Bancorp withdraws guidance", source="other", minutes=3, dup_of="s2"),
    scored(4, SCRIPT_TITLE, minutes=4),
    scored(5, "Apple edges higher", tickers=("AAPL",), score=0.6, minutes=5),
]


def test_the_page_and_its_assets_are_served_from_the_package(page):
    client = page([])
    html = client.get("/")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    for asset in (
        "/ui/static/app.js",
        "/ui/static/app.css",
        "/ui/static/vendor/uPlot.iife.min.js",
        "/ui/static/vendor/uPlot.min.css",
    ):
        assert asset in html.text
        assert client.get(asset).status_code == 200, asset
    assert "cdn" not in html.text.lower() and "https://" not in html.text
    api = client.get("/ui/api")
    assert api.status_code == 200 and "/ui/static/api.js" in api.text and "/ui/api" in html.text
    assert client.get("/ui/static/api.js").status_code == 200
    assert "/ui/overview" in client.get("/openapi.json").json()["paths"]
    assert client.get("/ui/static/../page.py").status_code == 404
    assert client.get("/ui/static/vendor/LICENSE.uPlot").status_code == 404  # only page assets


def test_overview_charts_all_the_busiest_keys_and_folds_duplicates(page):
    data = page(STORIES).get("/ui/overview").json()
    assert data["window"] == "5m" and data["windows"] == ["1m", "5m", "15m", "1h"]
    keys = [(s["key"], s["why"]) for s in data["series"]]
    assert keys[0] == ("all", "all")
    assert ("ticker:HLVB", "busiest ticker") in keys and ("topic:Company | Product News", "busiest topic") in keys
    (all_series,) = [s for s in data["series"] if s["key"] == "all"]
    assert sum(p["count"] for p in all_series["points"]) == 5
    stories = data["stories"]
    assert [s["id"] for s in stories] == ["s5", "s4", "s2", "s1"]  # newest first, the copy folded
    (guidance,) = [s for s in stories if s["id"] == "s2"]
    assert guidance["copies"] == 1 and guidance["copy_sources"] == ["other"]
    assert stories[1]["title"] == SCRIPT_TITLE  # data stays data: the page sets it as text
    assert {"stages", "totals", "rates", "lag", "outbox"} <= set(data["pipeline"])
    assert data["missing"] == ["alerts"]


def test_bad_queries_get_a_clear_message(page):
    client = page(STORIES)
    r = client.get("/ui/overview", params={"window": "9x"})
    assert r.status_code == 400
    assert r.json() == {"detail": "unknown window '9x'; choose one of: 1m, 5m, 15m, 1h"}
    r = client.get("/ui/overview", params={"key": ["ticker:NOPE", "ticker:AAPL"]})
    assert r.status_code == 200
    data = r.json()
    assert ("ticker:AAPL", "pinned") in [(s["key"], s["why"]) for s in data["series"]]
    assert any("no trend key 'ticker:NOPE'" in m for m in data["messages"])
    assert client.get("/ui/overview", params={"points": "lots"}).status_code == 422
    assert client.get("/ui/keys", params={"q": "  "}).json()["detail"].startswith("type part of a ticker")
    assert client.get("/ui/keys", params={"q": "hlv"}).json()["keys"] == ["ticker:HLVB"]
    assert client.get("/ui/keys", params={"q": "$aapl"}).json()["keys"] == ["ticker:AAPL"]
    assert client.get("/ui/keys", params={"q": "x", "window": "2d"}).status_code == 400
    r = client.get("/ui/item", params={"id": "nope"})
    assert r.status_code == 404 and r.json()["detail"].startswith("no scored item 'nope' seen by this process")
    assert client.get("/ui/item", params={"id": "s4"}).json()["item"]["title"] == SCRIPT_TITLE


def test_a_process_without_trends_says_what_it_lacks(page):
    client = page(STORIES, with_trends=False)
    data = client.get("/ui/overview").json()
    assert data["series"] == [] and set(data["missing"]) == {"trends", "alerts"}
    assert len(data["stories"]) == 4
    assert client.get("/ui/keys", params={"q": "hl"}).status_code == 404


def test_behind_auth_the_page_shell_is_open_and_its_data_needs_a_token(make_settings):
    from monitor.app.config import HttpSettings

    settings = make_settings()
    ctx = Context(settings=settings, bus=MemoryBus(), registry=CollectorRegistry())
    http = HttpSettings(host="0.0.0.0", auth={"tokens": [{"name": "viewer", "value": "v" * 20}]})
    client = TestClient(build_app(ctx.health, ctx.registry, build_ui(ctx).routers, http))
    for path in ("/", "/ui/api", "/ui/static/app.js", "/ui/static/vendor/uPlot.iife.min.js"):
        assert client.get(path).status_code == 200, path
    r = client.get("/ui/overview")
    assert r.status_code == 401 and "bearer token" in r.json()["detail"]
    assert client.get("/ui/overview", headers={"Authorization": "Bearer " + "v" * 20}).status_code == 200
    assert client.post("/", headers={"Authorization": "Bearer " + "v" * 20}).status_code in (403, 405)

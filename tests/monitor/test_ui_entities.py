"""Per-ticker sentiment on the page and through ``GET /items/{id}`` (issue #25)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from monitor.app.component import Context
from monitor.app.components.ui import build_ui
from monitor.app.http import build_app
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import EntitySentiment, NewsItem, ScoredItem, TickerMention
from monitor.stages.recent import ItemStore
from monitor.stages.routes import items_router
from tests.alerts.helpers import T0

TITLE = "Globex shares soar after rival Initech recalls flagship product"


def conflicting(id: str = "c1") -> ScoredItem:
    item = NewsItem(
        id=id,
        source="wire",
        url="https://news.example/c1",
        title=TITLE,
        published_at=T0,
        tickers=("GLBX", "INTC", "AAPL"),
        mentions=(
            TickerMention(ticker="GLBX", how="alias", part="title", start=0, end=6, surface="Globex"),
            TickerMention(ticker="INTC", how="alias", part="title", start=31, end=38, surface="Initech"),
            TickerMention(ticker="AAPL", how="feed"),
        ),
    )
    return ScoredItem(
        item=item,
        sentiment="positive",
        sentiment_probs={"negative": 0.2, "neutral": 0.1, "positive": 0.7},
        sentiment_score=0.5,
        topic="Company | Product News",
        topic_probs={"Company | Product News": 1.0},
        model_version="m-test",
        entities=(
            EntitySentiment(
                ticker="GLBX",
                sentiment="positive",
                sentiment_probs={"negative": 0.05, "neutral": 0.05, "positive": 0.9},
                sentiment_score=0.85,
                relevance=0.9,
            ),
            EntitySentiment(
                ticker="INTC",
                sentiment="negative",
                sentiment_probs={"negative": 0.8, "neutral": 0.15, "positive": 0.05},
                sentiment_score=-0.75,
                relevance=0.7,
            ),
            EntitySentiment(
                ticker="AAPL",
                sentiment="neutral",
                sentiment_probs={"negative": 0.1, "neutral": 0.8, "positive": 0.1},
                sentiment_score=0.0,
                relevance=0.1,
            ),
        ),
    )


def plain(id: str = "p1") -> ScoredItem:
    """A record without entities (schema 1 or a model without an entity head)."""
    item = NewsItem(
        id=id, source="wire", title="Halvorsen Bancorp withdraws guidance", published_at=T0, tickers=("HLVB", "HLVX")
    )
    return ScoredItem(
        item=item,
        sentiment="negative",
        sentiment_probs={"negative": 0.85, "neutral": 0.1, "positive": 0.05},
        sentiment_score=-0.8,
        topic="Company | Product News",
        topic_probs={"Company | Product News": 1.0},
        model_version="m-test",
    )


@pytest.fixture
def client(make_settings) -> TestClient:
    ctx = Context(settings=make_settings(), bus=MemoryBus(), registry=CollectorRegistry())
    items = ItemStore()
    for s in (plain(), conflicting()):
        items.put(s)
    ctx.items = items
    return TestClient(build_app(ctx.health, ctx.registry, build_ui(ctx).routers), base_url="http://127.0.0.1")


def test_each_ticker_chip_carries_its_own_sentiment_and_relevance(client):
    stories = {s["id"]: s for s in client.get("/ui/overview").json()["stories"]}
    chips = {c["ticker"]: c for c in stories["c1"]["chips"]}
    assert [c["ticker"] for c in stories["c1"]["chips"]] == ["GLBX", "INTC", "AAPL"]
    glbx, intc, aapl = chips["GLBX"], chips["INTC"], chips["AAPL"]
    assert (glbx["sentiment"], glbx["score"], glbx["relevance"], glbx["own"]) == ("positive", 0.85, 0.9, True)
    assert (intc["sentiment"], intc["score"], intc["relevance"], intc["own"]) == ("negative", -0.75, 0.7, True)
    assert intc["confidence"] == pytest.approx(0.8)
    # a passing mention (relevance below 0.2) is dimmed; the others are not
    assert aapl["dim"] is True and glbx["dim"] is False and intc["dim"] is False
    # the story keeps its own verdict beside them
    assert stories["c1"]["sentiment"] == "positive" and stories["c1"]["score"] == 0.5


def test_a_story_without_entities_shows_chips_in_the_storys_sentiment(client):
    (story,) = [s for s in client.get("/ui/overview").json()["stories"] if s["id"] == "p1"]
    assert story["tickers"] == ["HLVB", "HLVX"]
    for chip in story["chips"]:
        assert chip["sentiment"] == "negative" and chip["score"] == -0.8
        assert chip["own"] is False and chip["relevance"] is None and chip["dim"] is False


def test_the_page_script_colours_and_dims_chips_and_shows_evidence_tickers(client):
    js = client.get("/ui/static/app.js").text
    css = client.get("/ui/static/app.css").text
    for cls in ("chip-negative", "chip-neutral", "chip-positive", ".tick.dim"):
        assert cls in css
    assert "chip-${c.sentiment}" in js and "relevance" in js and "e.ticker" in js


def items_app() -> TestClient:
    store = ItemStore()
    store.put(conflicting())
    store.put(plain())
    app = FastAPI()
    app.include_router(items_router(store))
    return TestClient(app)


def test_get_item_exposes_entities_and_mentions():
    client = items_app()
    data = client.get("/items/c1").json()
    entities = {e["ticker"]: e for e in data["entities"]}
    assert set(entities) == {"GLBX", "INTC", "AAPL"}
    assert entities["INTC"]["sentiment"] == "negative" and entities["INTC"]["sentiment_score"] == -0.75
    assert entities["INTC"]["relevance"] == 0.7 and entities["INTC"]["method"] == "entity"
    assert entities["INTC"]["sentiment_probs"]["negative"] == 0.8
    mentions = data["item"]["mentions"]
    assert {"ticker": "INTC", "how": "alias", "part": "title", "start": 31, "end": 38, "surface": "Initech"} in mentions
    assert TITLE[31:38] == "Initech"
    assert {"ticker": "AAPL", "how": "feed", "part": None, "start": None, "end": None, "surface": None} in mentions
    old = client.get("/items/p1").json()
    assert old["entities"] == [] and old["item"]["mentions"] == []
    assert client.get("/items/nope").status_code == 404


def test_openapi_documents_entities_and_mentions():
    spec = items_app().get("/openapi.json").json()
    op = spec["paths"]["/items/{item_id}"]["get"]
    assert "entities" in op["description"] and "mentions" in op["description"]
    schemas = spec["components"]["schemas"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ScoredItem")
    assert "entities" in schemas["ScoredItem"]["properties"]
    assert {"ticker", "sentiment", "sentiment_probs", "sentiment_score", "relevance", "method"} <= set(
        schemas["EntitySentiment"]["properties"]
    )
    assert "mentions" in schemas["NewsItem"]["properties"]
    assert {"ticker", "how", "part", "start", "end", "surface"} <= set(schemas["TickerMention"]["properties"])

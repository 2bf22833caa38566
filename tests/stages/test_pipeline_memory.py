"""classify -> aggregate on the in-process bus, through the real components and HTTP routes."""

from __future__ import annotations

import httpx
import pytest

from monitor.app.component import Context
from monitor.app.components.stages import build_aggregate, build_classify
from monitor.app.daemon import Daemon
from monitor.core.bus.codec import send_record
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import DeadLetter, ScoredItem, TrendPoint, decode
from tests.bus_reading import read_all
from tests.stages.helpers import news
from tests.stages.keyword_engine import KeywordEngine
from tests.waiting import wait_until


def wait_for(predicate, timeout=20.0, what="condition"):
    """:func:`tests.waiting.wait_until` under the name the stage tests import (the in-process bus is
    quick: polled every 20 ms)."""
    return wait_until(predicate, timeout, what, every_s=0.02)


@pytest.fixture
def pipeline(make_settings):
    settings = make_settings(
        aggregator={
            "windows": [{"name": "1m", "size": "1m"}, {"name": "3m", "size": "3m", "hop": "1m"}],
            "grace": "1h",
            "flush_interval": 0.05,
        },
        classifier={"max_delay_ms": 5, "max_batch_size": 8},
    )
    settings.ensure_dirs()
    bus = MemoryBus(default_partitions=3)
    bus.ensure_topics(settings.topics.all())
    ctx = Context(settings=settings, bus=bus)
    ctx.engine = KeywordEngine(poison=["poison"])
    components = [build_classify(ctx), build_aggregate(ctx)]
    daemon = Daemon(
        bus=bus,
        stages=[s for c in components for s in c.stages],
        registry=ctx.registry,
        health=ctx.health,
        routers=[r for c in components for r in c.routers],
        http_port=0,
    )
    daemon.start()
    try:
        yield settings, bus, ctx, daemon
    finally:
        assert daemon.shutdown() == 0


def test_classify_to_trends_on_memory_bus(pipeline):
    settings, bus, ctx, daemon = pipeline
    producer = bus.producer()
    titles = [
        "Apple beats estimates, profit jumps",
        "Apple shares plunge on weak guidance",
        "Apple announces event",
        "Apple poison pill adopted",
    ]
    for i in range(40):
        item = news(i, t=i, title=titles[i % 4], tickers=("AAPL",) if i % 2 else ("MSFT", "AAPL"))
        send_record(producer, settings.topics.raw, item, key=item.primary_key)
    producer.send(settings.topics.raw, b"{not json", key=b"AAPL")

    poison = {f"s{i}" for i in range(40) if i % 4 == 3}

    def scored_ids():
        return {decode(ScoredItem, m.value).id for m in read_all(bus, settings.topics.scored)}

    def letters():
        return [decode(DeadLetter, m.value) for m in read_all(bus, settings.topics.dlq)]

    wait_for(lambda: len(scored_ids()) == 30, what="30 scored stories")
    assert scored_ids() == {f"s{i}" for i in range(40)} - poison
    wait_for(lambda: len(letters()) == 11, what="11 dead letters")
    assert sorted(letter.reason.split(":")[0] for letter in letters()) == ["classifier failed"] * 10 + ["news_item"]

    store = ctx.trends

    def series_count(key, n):
        def check():
            p = store.latest(key, "1m")
            return p if p is not None and p.count == n else None

        return check

    point = wait_for(series_count("all", 30), what="all/1m count 30")
    scores = [decode(ScoredItem, m.value).sentiment_score for m in read_all(bus, settings.topics.scored)]
    assert point.mean_score == pytest.approx(sum(scores) / 30, abs=1e-6)
    assert point.positive_share == pytest.approx(10 / 30) and point.negative_share == pytest.approx(10 / 30)
    aapl = wait_for(series_count("ticker:AAPL", 30), what="ticker:AAPL")
    msft = wait_for(series_count("ticker:MSFT", 20), what="ticker:MSFT")
    assert aapl.window_end == msft.window_end
    assert len(store.query("all", "3m")) == 3

    # Every point on news.trends decodes and the last one per series is what the store holds.
    emitted = [decode(TrendPoint, m.value) for m in read_all(bus, settings.topics.trends)]
    last = {}
    for p in emitted:
        last[(p.key, p.window, p.window_start)] = p
    assert last[("all", "1m", point.window_start)].count == 30

    base = daemon.http.url
    r = httpx.get(f"{base}/trends", params={"key": "ticker:AAPL", "window": "1m", "since": "2026-11-23T08:00:00Z"})
    assert r.status_code == 200
    body = r.json()
    assert [p["count"] for p in body["points"]] == [30]
    assert httpx.get(f"{base}/trends", params={"key": "all", "window": "7m"}).status_code == 400
    item = httpx.get(f"{base}/items/s0").json()
    assert item["item"]["id"] == "s0" and item["sentiment"] == "positive"
    assert httpx.get(f"{base}/items/s3").status_code == 404  # poison: never scored
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200, ready.text
    assert ctx.registry.get_sample_value("finsent_classify_scored_total") == 30
    assert ctx.registry.get_sample_value("finsent_classify_dead_letters_total", {"reason": "classifier"}) == 10
    assert ctx.registry.get_sample_value("finsent_aggregate_stories_total", {"outcome": "counted"}) >= 30 * 4

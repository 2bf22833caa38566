"""Two ``ingest`` instances on the same feeds (issue #29 item 3), through real processes and the
real broker: the feeds are split between them through a consumer group (each feed's slot belongs
to one live instance), so while both live each story is on ``news.raw`` once; one is killed with
``kill -9`` mid-stream and its feeds move to the survivor, which keeps polling them.

The instances have separate homes (two hosts): nothing but Kafka is shared. What a feed's next
owner needs moves with it (the ids its last owner published, on the compacted share topic), so
after the kill the survivor re-publishes at most the dead instance's last poll (if it died between
the broker's acknowledgement and its handover record; docs/DEPLOY.md).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import yaml

from tests.connectors.conftest import FeedServer, Req, Resp, news_on
from tests.finsent_process import FinsentProcess
from tests.ports import free_port
from tests.waiting import settled, wait_until

pytestmark = [pytest.mark.kafka]  # no single point of failure (issue #29): default tier

FEEDS = [f"feed-{i}" for i in range(4)]
EVERY_S = 0.5  # each feed gains an item this often
WORDS = (
    "acme globex initech umbrella stark wayne cyberdyne tyrell soylent hooli vandelay massive "
    "dynamic oil gold copper wheat bonds yen euro dollar chip cloud drug trial merger lawsuit "
    "strike recall dividend buyback guidance forecast outage probe tariff rally slump surge "
    "plunge upgrade downgrade record quarter profit loss revenue margin debt rating factory port"
).split()


class GrowingFeeds:
    """``/feed-N`` serves the items published so far (one per EVERY_S since the start), newest 30."""

    def __init__(self, server: FeedServer) -> None:
        self.t0 = time.time()
        for name in FEEDS:
            server.routes[f"/{name}"] = self._handler(name)

    def count(self, now: float | None = None) -> int:
        return int(((now or time.time()) - self.t0) / EVERY_S) + 1

    def _handler(self, name: str):
        def handle(req: Req) -> Resp:
            items = []
            for k in range(max(0, self.count() - 30), self.count()):
                rng = random.Random(f"{name}-{k}")
                title = " ".join(rng.sample(WORDS, 6)).capitalize()
                when = datetime.fromtimestamp(self.t0 + k * EVERY_S, timezone.utc)
                items.append(
                    f"<item><title>{title}</title><link>https://news.example/{name}/{k}</link>"
                    f"<guid>{name}-{k}</guid><pubDate>{format_datetime(when)}</pubDate></item>"
                )
            body = f"<rss version='2.0'><channel><title>{name}</title>{''.join(items)}</channel></rss>"
            return Resp(200, body.encode(), {"Content-Type": "application/rss+xml"})

        return handle


def polled_here(port: int) -> frozenset[str] | None:
    """The feeds an instance polls, from its /readyz (None while it is not ready)."""
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=3)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    (detail,) = [c["detail"] for c in r.json()["checks"] if c["name"] == "stage:ingest-poll"]
    listed = detail.partition("polled here: ")[2]
    return frozenset(n for n in listed.split(", ") if n in FEEDS)


def test_two_ingest_instances_split_the_feeds_and_the_survivor_adopts_a_killed_ones(
    tmp_path: Path, kafka_bootstrap: str, topics
) -> None:
    server = FeedServer()
    server.start()
    feeds = GrowingFeeds(server)
    instances: dict[str, tuple[FinsentProcess, int]] = {}
    for name in ("a", "b"):
        port = free_port()
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "home": str(tmp_path / name),
                    "logging": {"level": "INFO", "format": "json"},
                    "kafka": {"bootstrap": kafka_bootstrap, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
                    "topics": topics.model_dump(),
                    "http": {"port": port},
                    "connectors": {
                        "demo": False,
                        "sources": [
                            {"type": "rss", "name": f, "url": server.url(f"/{f}"), "interval_s": 1} for f in FEEDS
                        ],
                    },
                }
            )
        )
        instances[name] = (FinsentProcess(["ingest"], cfg, tmp_path / f"{name}.log"), port)

    def shares() -> tuple[frozenset[str] | None, ...]:
        return tuple(polled_here(port) for _, port in instances.values())

    def guids_on_raw() -> Counter:
        return Counter(
            item.url.rsplit("/", 2)[-2] + "-" + item.url.rsplit("/", 1)[-1]
            for item in news_on(kafka_bootstrap, topics.raw)
        )

    try:
        for proc, _ in instances.values():
            proc.start()
        wait_until(lambda: None not in shares(), 120, "both ingest instances ready")
        a_feeds, b_feeds = settled(shares, 3, 30, "the feed split")
        assert a_feeds | b_feeds == set(FEEDS) and not a_feeds & b_feeds, (a_feeds, b_feeds)

        # while both live: every feed is published, each story once
        wait_until(
            lambda: all(sum(1 for g in guids_on_raw() if g.startswith(f)) >= 5 for f in FEEDS),
            60,
            "5 stories of every feed",
        )
        ids = Counter(item.id for item in news_on(kafka_bootstrap, topics.raw))
        assert ids and max(ids.values()) == 1, [i for i, n in ids.items() if n > 1][:5]

        # kill -9 the instance that polls more feeds, mid-stream: its feeds are being published
        victim, survivor = ("a", "b") if len(a_feeds) >= len(b_feeds) else ("b", "a")
        adopted = a_feeds if victim == "a" else b_feeds
        assert adopted
        instances[victim][0].kill9()
        killed_at = feeds.count()
        before = guids_on_raw()
        assert all(any(g.startswith(f) for g in before) for f in adopted)

        survivor_port = instances[survivor][1]
        wait_until(lambda: polled_here(survivor_port) == set(FEEDS), 60, "the survivor to poll every feed")
        # items that appeared after the kill, of the adopted feeds, reach news.raw
        wait_until(
            lambda: all(f"{f}-{killed_at + 4}" in guids_on_raw() for f in adopted),
            60,
            "the adopted feeds' new items on news.raw",
        )
        assert '"event": "polling these sources"' in instances[survivor][0].tail(50000)
        assert '"event": "feed adopted"' in instances[survivor][0].tail(50000)
        # the handover: the adopted feeds' items published before the kill are not published again
        # (a poll is at most 3 new items a feed: the dead instance's last one may be)
        ids = Counter(item.id for item in news_on(kafka_bootstrap, topics.raw))
        assert sum(n - 1 for n in ids.values()) <= 3 * len(adopted), ids.most_common(5)
        instances[survivor][0].stop()
    finally:
        for proc, _ in instances.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait(30)
        server.stop()


class _SlowPoller:
    """A poll that takes until ``done`` is set."""

    name = "feed-0"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.done = threading.Event()

    def poll_once(self):
        from connectors.publisher import PublishResult

        self.started.set()
        self.done.wait(10)
        return PublishResult()


def test_a_source_moving_away_waits_for_its_poll_in_flight_and_is_not_polled_after():
    from connectors.stages import PollingStage

    poller = _SlowPoller()
    stage = PollingStage([(poller, 3600.0)], threading.Event())
    job = threading.Thread(target=stage._job, args=(poller,))
    job.start()
    assert poller.started.wait(5)
    released = threading.Event()
    releaser = threading.Thread(target=lambda: (stage.release(frozenset({"feed-0"})), released.set()))
    releaser.start()
    assert not released.wait(0.5)  # the group waits while the poll runs here
    poller.done.set()
    assert released.wait(5)
    job.join(5)
    releaser.join(5)
    poller.started.clear()
    stage._job(poller)  # a job due later does nothing: the source is another instance's now
    assert not poller.started.is_set() and stage.polls == {"feed-0": 1}

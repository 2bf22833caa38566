"""Builders shared by the alert tests: trend points, scored stories, rule sets, a local receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alerts.outbox import OutboxDeliverer
from alerts.ruleset import RuleSet, parse_rules
from monitor.core.records import Evidence, NewsItem, ScoredItem, TrendPoint

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def point(
    key: str = "topic:Energy | Oil",
    window: str = "15m",
    *,
    start: float = 0,
    size: float = 15,
    emitted: float | None = None,
    count: int = 30,
    negative_share: float = 0.7,
    ewma: float = 0.0,
    volume_z: float | None = None,
    mean_score: float = -0.2,
    revised: bool = False,
    top: int = 1,
) -> TrendPoint:
    """A point of window [start, start+size) minutes, emitted at ``emitted`` minutes (default: mid-window)."""
    emitted = start + size / 2 if emitted is None else emitted
    return TrendPoint(
        key=key,
        window=window,
        window_start=at(start),
        window_end=at(start + size),
        count=count,
        mean_score=mean_score,
        negative_share=negative_share,
        positive_share=max(0.0, 1 - negative_share - 0.1),
        ewma=ewma,
        weighted_mean=mean_score,
        volume_z=volume_z,
        baseline_mean=0.0,
        top_items=tuple(
            Evidence(
                id=f"s{i}",
                title=f"Headline {i}",
                source="wire",
                url=f"https://news.example/{i}",
                published_at=at(start),
                score=-0.9,
            )
            for i in range(top)
        ),
        revised=revised,
        model_version="m-1",
        emitted_at=at(emitted),
    )


def story(
    id: str = "story-1",
    tickers: tuple[str, ...] = ("AAPL",),
    score: float = -0.9,
    minutes: float = 1,
    novelty: float = 1.0,
    topic: str = "Company | Product News",
) -> ScoredItem:
    item = NewsItem(
        id=id,
        source="wire",
        url=f"https://news.example/{id}",
        title=f"Bad news {id}",
        published_at=at(minutes),
        fetched_at=at(minutes),
        tickers=tickers,
        novelty=novelty,
    )
    neg = (1 - score) / 2
    return ScoredItem(
        item=item,
        sentiment="negative" if score < 0 else "positive",
        sentiment_probs={"negative": neg, "neutral": 0.0, "positive": 1 - neg},
        sentiment_score=score,
        topic=topic,
        topic_probs={topic: 1.0},
        model_version="m-1",
        scored_at=at(minutes),
    )


def rules(*specs: dict) -> RuleSet:
    return parse_rules({"rules": list(specs)})


OIL = {
    "name": "oil-gloom",
    "type": "threshold",
    "key": "topic:Energy | Oil",
    "window": "15m",
    "metric": "negative_share",
    "op": ">",
    "value": 0.6,
    "min_count": 20,
    "for": "5m",
    "annotations": {"summary": "{{ value | pct }} negative on {{ key }}"},
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """An in-process HTTP receiver on 127.0.0.1:<ephemeral>; ``respond`` decides each answer."""

    respond: Callable[[int], tuple[int, dict[str, str]]] = lambda n: (200, {})
    requests: list[Received] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                got = Received(self.path, dict(self.headers.items()), body)
                receiver.requests.append(got)
                status, headers = receiver.respond(len(receiver.requests))
                if 200 <= status < 300:
                    receiver.accepted.append(got)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def deliver_until_idle(deliverer: OutboxDeliverer, max_passes: int = 1000) -> int:
    """Deliver, sleeping on the deliverer's clock between passes, until nothing is pending."""
    total = 0
    for _ in range(max_passes):
        total += deliverer.deliver_due()
        wait = deliverer.seconds_until_due()
        if wait is None:
            break
        if wait > 0:
            deliverer.clock.sleep(wait, None)
    return total

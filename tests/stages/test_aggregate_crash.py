"""``kill -9`` of the aggregator mid-stream: after restarts the trends equal an uninterrupted run's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from monitor.bus.codec import send_record
from monitor.bus.kafka import KafkaBus
from tests.finsent_process import FinsentProcess, db_value
from tests.stages.helpers import scored
from tests.stages.kafka_helpers import final_points, wait_until
from tests.stages.oracle import keys_of

pytestmark = [pytest.mark.kafka]

N = 3000
TICKERS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN")
SOURCES = ("wire", "rss", "blog")
TOPICS = ("earnings", "mna", "macro", "legal")


def story(i: int):
    tickers = (TICKERS[i % 5],) if i % 3 else (TICKERS[i % 5], TICKERS[(i + 2) % 5])
    score = ((i * 37) % 21 - 10) / 10
    return scored(i, t=i * 0.5, score=score, tickers=tickers, source=SOURCES[i % 3], topic=TOPICS[i % 4],
                  confidence=0.5 + (i % 5) / 10, novelty=1.0 if i % 7 else 0.5)


def produce(bus, topic, ids):
    p = bus.producer()
    deliveries = [send_record(p, topic, s, key=s.item.primary_key) for s in map(story, ids)]
    for d in deliveries:
        d.get(timeout=60)
    p.close()


class Aggregator:
    """``finsent aggregate`` as a real OS process."""

    def __init__(self, tmp: Path, name: str, bootstrap: str, topics, aggregator: dict) -> None:
        self.home = tmp / name
        self.config = tmp / f"{name}.yaml"
        self.log = tmp / f"{name}.log"
        self.trends_topic = f"{topics.trends}.{name}"
        cfg = {
            "home": str(self.home),
            "kafka": {"bootstrap": bootstrap, "partitions": 3, "session_timeout_ms": 6000,
                      "heartbeat_interval_ms": 1000},
            "topics": {**topics.model_dump(), "trends": self.trends_topic},
            "http": {"port": 0},
            "logging": {"level": "INFO", "format": "json"},
            "aggregator": {**aggregator, "group_id": f"agg-{name}-{topics.raw}",
                           "repartition_topic": f"{topics.scored}.bykey.{name}"},
        }
        self.config.write_text(yaml.safe_dump(cfg))
        self.process = FinsentProcess(["aggregate"], self.config, self.log)
        self.start, self.kill9, self.stop = self.process.start, self.process.kill9, self.process.stop

    @property
    def starts(self) -> int:
        return self.process.starts

    def checkpointed(self) -> int:
        """Input records (repartition offsets) covered by the last checkpoint."""
        return db_value(self.home / "state" / "aggregate.db", "SELECT COALESCE(SUM(next_offset), 0) FROM partitions")


def counted(points: dict) -> int:
    return sum(p.count for (key, window, _), p in points.items() if key == "all" and window == "1m")


def per_key_totals(points: dict) -> Counter:
    """Stories counted per trend key (over the tumbling 1m windows)."""
    totals: Counter = Counter()
    for (key, window, _), p in points.items():
        if window == "1m":
            totals[key] += p.count
    return totals


EXPECTED = Counter(k for i in range(N) for k in keys_of(story(i), floor=0.2))  # the independent oracle's keys


def comparable(points: dict) -> dict:
    return {k: p.model_dump(exclude={"emitted_at", "revised", "watermark"}) for k, p in points.items()}


# ~25 s: in the default tier, it guards the no-story-lost promise across a kill -9
def test_kill_dash_nine_mid_stream_resumes_with_identical_trends(kafka_settings, kafka_bootstrap, tmp_path):
    settings = kafka_settings(kafka={"partitions": 3})
    bus = KafkaBus(settings.kafka)
    bus.ensure_topics(settings.topics.all(), partitions=3)
    aggregator = {
        "windows": [{"name": "1m", "size": "1m"}, {"name": "5m", "size": "5m", "hop": "1m"}],
        "grace": "1h", "baseline_windows": 5, "min_baseline_windows": 2, "flush_interval": 0.1,
        "poll_max_records": 200,
    }
    reference = Aggregator(tmp_path, "reference", kafka_bootstrap, settings.topics, aggregator)
    victim = Aggregator(tmp_path, "victim", kafka_bootstrap, settings.topics, aggregator)
    try:
        produce(bus, settings.topics.scored, range(0, N // 2))
        reference.start()
        victim.start()
        # 1st kill: mid-way through the first half (it has checkpointed some, not all).
        wait_until(lambda: victim.checkpointed() > 500, 120, "victim's first checkpoints")
        victim.kill9()
        victim.start()
        produce(bus, settings.topics.scored, range(N // 2, N))
        # 2nd kill: while the second half streams in.
        done_before = victim.checkpointed()
        wait_until(lambda: victim.checkpointed() > done_before + 500, 120, "victim's progress after restart")
        victim.kill9()
        victim.start()
        ref = wait_until(lambda: (p := final_points(kafka_bootstrap, reference.trends_topic))
                         and per_key_totals(p) == EXPECTED and p, 240, "reference to count every story")
        got = wait_until(lambda: (p := final_points(kafka_bootstrap, victim.trends_topic))
                         and per_key_totals(p) == EXPECTED and p, 240, "victim to count every story")
    finally:
        reference.stop()
        victim.stop()
    assert victim.starts == 3
    assert counted(got) == N  # never double-counted, never skipped
    assert comparable(got) == comparable(ref)
    assert {k for k, _, _ in got} >= {"all", "ticker:AAPL", "ticker:TSLA", "source:rss", "topic:macro"}

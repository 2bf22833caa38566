"""``kill -9`` of the aggregator mid-stream: after restarts the trends equal an uninterrupted run's.

Each kill is proved to land mid-stream (issue #27 item 4): it waits until the victim's checkpoint
covers some of the stream, and once the victim is dead (before the restart) the test counts the
stories its checkpoint covered: the first kill between none and all of the first half, the second
between all of the first half and all of the stream (tests/stages/kill_point.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from monitor.core.bus.codec import send_record
from monitor.core.bus.kafka import KafkaBus
from tests.finsent_process import FinsentProcess
from tests.stages.helpers import scored
from tests.stages.kafka_helpers import final_points, wait_until
from tests.stages.kill_point import Checkpointed, stories
from tests.stages.oracle import keys_of

pytestmark = [pytest.mark.kafka]

N = 3000
TICKERS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN")
SOURCES = ("wire", "rss", "blog")
TOPICS = ("earnings", "mna", "macro", "legal")


def story(i: int):
    tickers = (TICKERS[i % 5],) if i % 3 else (TICKERS[i % 5], TICKERS[(i + 2) % 5])
    score = ((i * 37) % 21 - 10) / 10
    return scored(
        i,
        t=i * 0.5,
        score=score,
        tickers=tickers,
        source=SOURCES[i % 3],
        topic=TOPICS[i % 4],
        confidence=0.5 + (i % 5) / 10,
        novelty=1.0 if i % 7 else 0.5,
    )


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
        self.repartition_topic = f"{topics.scored}.bykey.{name}"
        cfg = {
            "home": str(self.home),
            "kafka": {
                "bootstrap": bootstrap,
                "partitions": 3,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 1000,
            },
            "topics": {**topics.model_dump(), "trends": self.trends_topic},
            "http": {"port": 0},
            "logging": {"level": "INFO", "format": "json"},
            "aggregator": {
                **aggregator,
                "group_id": f"agg-{name}-{topics.raw}",
                "repartition_topic": self.repartition_topic,
            },
        }
        self.config.write_text(yaml.safe_dump(cfg))
        self.process = FinsentProcess(["aggregate"], self.config, self.log)
        self.start, self.kill9, self.stop = self.process.start, self.process.kill9, self.process.stop

    @property
    def starts(self) -> int:
        return self.process.starts


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


FANOUT = sum(EXPECTED.values())  # distinct (story, trend key) contributions of the whole stream


# ~25 s: in the default tier, it guards the no-story-lost promise across a kill -9
def test_kill_dash_nine_mid_stream_resumes_with_identical_trends(kafka_settings, kafka_bootstrap, tmp_path):
    settings = kafka_settings(kafka={"partitions": 3})
    bus = KafkaBus(settings.kafka)
    bus.ensure_topics(settings.topics.all(), partitions=3)
    aggregator = {
        "windows": [{"name": "1m", "size": "1m"}, {"name": "5m", "size": "5m", "hop": "1m"}],
        "grace": "1h",
        "baseline_windows": 5,
        "min_baseline_windows": 2,
        "flush_interval": 0.1,
        "poll_max_records": 200,
    }
    reference = Aggregator(tmp_path, "reference", kafka_bootstrap, settings.topics, aggregator)
    victim = Aggregator(tmp_path, "victim", kafka_bootstrap, settings.topics, aggregator)
    # what the victim's checkpoint covers: distinct (trend key, story id) of its repartition topic
    probe = Checkpointed(kafka_bootstrap, victim.repartition_topic, victim.home / "state" / "aggregate.db")

    def counted_by_victim() -> int:
        """Stories the victim's checkpoint has counted (each story feeds the ``all`` trend once)."""
        return len(stories(probe.contributions()))

    try:
        produce(bus, settings.topics.scored, range(N // 2))
        reference.start()
        victim.start()
        # 1st kill: once it has checkpointed a few hundred of the first half's stories.
        wait_until(lambda: counted_by_victim() >= 200, 120, "the victim to checkpoint 200 stories")
        victim.kill9()
        first = probe.contributions(probe.offsets())  # what the dead process had counted
        victim.start()
        produce(bus, settings.topics.scored, range(N // 2, N))
        # 2nd kill: while the second half streams in, once its checkpoint covers 200 stories of it.
        wait_until(lambda: counted_by_victim() >= N // 2 + 200, 120, "the victim to checkpoint 200 of the second half")
        victim.kill9()
        second = probe.contributions(probe.offsets())
        victim.start()
        ref = wait_until(
            lambda: (
                (p := final_points(kafka_bootstrap, reference.trends_topic)) and per_key_totals(p) == EXPECTED and p
            ),
            240,
            "reference to count every story",
        )
        got = wait_until(
            lambda: (p := final_points(kafka_bootstrap, victim.trends_topic)) and per_key_totals(p) == EXPECTED and p,
            240,
            "victim to count every story",
        )
        everything = probe.everything()
    finally:
        probe.close()
        reference.stop()
        victim.stop()
    # Where the kills landed (stories counted in the victim's checkpoint when it died, of N = 3000;
    # contributions = distinct (story, trend key) records of its repartition topic, of FANOUT).
    at_kill = [(len(stories(c)), len(c)) for c in (first, second)]
    print(f"kill -9 landed at: {at_kill} (stories, contributions) of ({N}, {FANOUT})")
    assert everything == {(k, f"s{i}") for i in range(N) for k in keys_of(story(i), floor=0.2)}  # all re-keyed
    assert first < second <= everything
    assert 0 < len(stories(first)) < N // 2, at_kill  # mid-way through the first half (all that was produced)
    assert 0 < len(first) < sum(len(keys_of(story(i), floor=0.2)) for i in range(N // 2)), at_kill
    assert N // 2 < len(stories(second)) < N, at_kill  # mid-way through the second half
    assert len(second) < FANOUT, at_kill
    assert victim.starts == 3
    assert counted(got) == N  # never double-counted, never skipped
    assert comparable(got) == comparable(ref)
    assert {k for k, _, _ in got} >= {"all", "ticker:AAPL", "ticker:TSLA", "source:rss", "topic:macro"}

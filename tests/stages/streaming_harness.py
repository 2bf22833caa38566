"""The aggregator's two stages on a scripted in-process bus, the stories they are fed, and (from
tests/stages/oracle.py, which imports nothing from monitor/stages/) the offline batch aggregation
they must agree with (tests/stages/test_event_time.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.app.config import load_settings
from monitor.core.bus.base import ConsumerOptions
from monitor.core.bus.codec import send_record
from monitor.core.bus.memory import MemoryBus
from monitor.core.records import ScoredItem, TrendPoint, decode
from monitor.stages.aggregate import AggregateMetrics, RekeyStage, TrendStage, repartition_topic
from monitor.stages.changelog import changelog_topic
from monitor.stages.recent import TrendStore
from tests.bus_reading import read_all
from tests.stages.helpers import entity, scored
from tests.stages.oracle import batch_aggregate, keys_of  # noqa: F401 - re-exported: the independent oracle

TICKERS = ("AAPL", "MSFT", "GOOG", "TSLA", "AMZN", "INTC")  # news.scored partitions 0 1 2 0 1 2
SOURCES = ("wire", "rss", "blog")
TOPICS = ("earnings", "mna", "macro")


RELEVANCES = (1.0, 0.8, 0.5, 0.35, 0.2, 0.1, 0.0, 0.65, 0.25)  # default floor 0.2: 0.2 counts, 0.1 and 0 do not


def story(i: int, t: float) -> ScoredItem:
    """A varied story. Every fifth carries no entity verdicts (a schema-1 record: its tickers get the
    story's sentiment at relevance 1); the others carry a verdict per ticker with its own sentiment
    (often the opposite of the story's) and a relevance from :data:`RELEVANCES`; a two-ticker story
    with ``i % 5 == 1`` has a verdict for its first ticker only."""
    tickers = (TICKERS[i % 6],) if i % 4 else (TICKERS[i % 6], TICKERS[(i + 3) % 6])
    entities = ()
    if i % 5:
        entities = tuple(
            entity(
                sym,
                score=((i * 13 + j * 29) % 21 - 10) / 10,
                relevance=RELEVANCES[(i * 7 + j * 4) % 9],
                confidence=0.4 + ((i + j) % 6) / 10,
            )
            for j, sym in enumerate(tickers)
            if not (j and i % 5 == 1)
        )
    return scored(
        i,
        t=t,
        score=((i * 37) % 21 - 10) / 10,
        tickers=tickers,
        source=SOURCES[i % 3],
        topic=TOPICS[i % 3],
        confidence=0.5 + (i % 5) / 10,
        novelty=1.0 if i % 7 else 0.5,
        entities=entities,
    )


def summary(points: dict) -> dict:
    return {
        k: (
            p.count,
            round(p.mean_score, 9),
            round(p.negative_share, 9),
            round(p.positive_share, 9),
            round(p.weighted_mean, 9),
        )
        for k, p in points.items()
    }


def diff(got: dict, want: dict, limit: int = 8) -> str:
    keys = sorted(set(got) | set(want), key=str)
    bad = [(k, got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)]
    return f"{len(bad)} differences, e.g. " + "; ".join(f"{k}: stream={g} batch={w}" for k, g, w in bad[:limit])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Crash(RuntimeError):
    pass


class _CrashingConsumer:
    def __init__(self, inner, polls: int, ready=lambda: True) -> None:
        self._inner, self._left, self._ready = inner, polls, ready

    def poll(self, *a, **kw):
        self._left -= 1
        if self._left < 0 and self._ready():
            raise Crash("kill -9")
        return self._inner.poll(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _CrashingBus:
    """The bus as the aggregator sees it; its consumers die at their ``polls``-th poll, the window
    stage's not before it has checkpointed once (``ready``), so a crash always lands mid-stream
    with saved watermarks whatever the thread scheduling."""

    def __init__(self, bus: MemoryBus, polls: int, ready: dict) -> None:
        self._bus, self._polls, self._ready = bus, polls, ready
        self.name = bus.name

    def consumer(self, topics, options: ConsumerOptions):
        ready = next((check for topic, check in self._ready.items() if topic in topics), lambda: True)
        return _CrashingConsumer(self._bus.consumer(topics, options), self._polls, ready)

    def __getattr__(self, name):
        return getattr(self._bus, name)


class Aggregator:
    """Re-key + window stages in threads over one in-process bus, with a file checkpoint."""

    def __init__(self, tmp: Path, aggregator: dict, partitions: int = 3) -> None:
        self.bus = MemoryBus(default_partitions=partitions)
        self.partitions = partitions
        self.settings = load_settings(None, home=str(tmp), http={"port": 0}, aggregator=aggregator)
        t = self.settings.topics
        self.bus.ensure_topics(
            [
                t.scored,
                t.trends,
                t.dlq,
                repartition_topic(self.settings),
                changelog_topic(repartition_topic(self.settings)),
            ]
        )
        self.checkpoint = tmp / "state" / "aggregate.db"
        self.producer = self.bus.producer()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self.metrics: AggregateMetrics | None = None

    def produce(self, stories: list[ScoredItem]) -> None:
        for s in stories:
            send_record(self.producer, self.settings.topics.scored, s, key=s.item.primary_key)

    def start(self, clock=time.monotonic, crash_after_polls: int | None = None) -> None:
        self.metrics = AggregateMetrics(CollectorRegistry())
        window: list = []
        topic = repartition_topic(self.settings)

        def checkpointed() -> bool:  # the window stage has saved a partition with its upstream watermarks
            store = window[0]._store if window else None
            return store is not None and any(
                (cp := store.load(topic, p)) is not None and cp.sources for p in range(self.partitions)
            )

        ready = {topic: checkpointed}
        bus = self.bus if crash_after_polls is None else _CrashingBus(self.bus, crash_after_polls, ready)
        stages = [
            RekeyStage(self.settings, bus, self.metrics, clock=clock),
            TrendStage(self.settings, bus, self.metrics, TrendStore(), self.checkpoint),
        ]
        window.append(stages[1])
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in stages]
        for th in self._threads:
            th.start()

    def _run(self, stage) -> None:
        try:
            stage.run(self._stop)
        except Crash:
            pass
        except BaseException as err:
            self.errors.append(err)

    def alive(self) -> bool:
        return any(th.is_alive() for th in self._threads)

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(30)
        assert not self.errors, self.errors

    def points(self) -> dict:
        last: dict = {}
        for m in read_all(self.bus, self.settings.topics.trends):
            p = decode(TrendPoint, m.value)
            last[(p.key, p.window, p.window_start)] = p
        return last

    def all_points(self) -> list[TrendPoint]:
        return [decode(TrendPoint, m.value) for m in read_all(self.bus, self.settings.topics.trends)]

    def read_position(self, partition: int) -> int:
        """How many records of ``news.scored`` partition the re-key stage has committed."""
        group = self.bus._groups.get(f"{self.settings.aggregator.group_id}.rekey")
        if group is None:
            return 0
        from monitor.core.bus.base import TopicPartition

        return group.committed.get(TopicPartition(self.settings.topics.scored, partition), 0)

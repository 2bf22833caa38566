"""Operating the dead-letter topic: read it, filter it, and re-publish letters once the cause is fixed.

A :class:`~monitor.core.records.DeadLetter` keeps the original bytes, the reason, the stage and where
the bytes came from (topic/partition/offset, for consumer stages). Replaying sends the original
bytes with the original key to the original topic (or to ``to_topic`` for letters that came from
outside the bus, such as a feed item the connector rejected); stages are idempotent by story id,
so a letter replayed twice is counted once downstream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from monitor.core.bus.base import Bus, BusError, ConsumerOptions
from monitor.core.records import DeadLetter, RecordDecodeError, decode


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    letter: DeadLetter

    @property
    def ref(self) -> str:
        """``partition:offset`` on the dead-letter topic: how ``show`` and ``replay`` name a letter."""
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class LetterFilter:
    stage: str | None = None
    reason: str | None = None
    """Case-insensitive substring of the reason."""
    since: datetime | None = None
    until: datetime | None = None
    refs: frozenset[str] = frozenset()

    def __call__(self, item: Letter) -> bool:
        d = item.letter
        return (
            (self.stage is None or d.stage == self.stage)
            and (self.reason is None or self.reason.lower() in d.reason.lower())
            and (self.since is None or d.failed_at >= self.since)
            and (self.until is None or d.failed_at < self.until)
            and (not self.refs or item.ref in self.refs)
        )


def read_letters(bus: Bus, topic: str, timeout_s: float = 30.0) -> tuple[list[Letter], list[str]]:
    """Every letter on ``topic`` from the beginning to its current end (a throwaway consumer group,
    nothing committed), and a note for each message that is not a dead letter."""
    try:
        bus.partitions_for(topic)
    except BusError:
        return [], []  # no such topic yet: nothing was ever dead-lettered
    consumer = bus.consumer([topic], ConsumerOptions(group_id=f"finsent-dlq-reader-{uuid.uuid4().hex[:12]}"))
    letters: list[Letter] = []
    odd: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            for msg in consumer.poll(timeout_s=0.5):
                try:
                    letters.append(Letter(msg.partition, msg.offset, decode(DeadLetter, msg.value)))
                except RecordDecodeError as err:
                    odd.append(f"{msg.partition}:{msg.offset}: not a dead letter ({err})")
            assigned = consumer.assignment()
            if assigned and not any(consumer.lag().values()):
                break
            if time.monotonic() > deadline:
                raise BusError(f"could not read {topic} to its end within {timeout_s:g}s")
    finally:
        consumer.close()
    letters.sort(key=lambda x: (x.letter.failed_at, x.partition, x.offset))
    return letters, odd


@dataclass
class ReplayOutcome:
    replayed: list[str]
    skipped: list[str]


def replay_letters(
    bus: Bus, letters: Iterable[Letter], to_topic: str | None = None, timeout_s: float = 30.0
) -> ReplayOutcome:
    """Re-publish each letter's original bytes (and key) to its original topic; letters with no
    original topic go to ``to_topic`` or are skipped with the reason."""
    producer = bus.producer()
    outcome = ReplayOutcome([], [])
    try:
        pending = []
        for item in letters:
            target = item.letter.source_topic or to_topic
            if not target:
                outcome.skipped.append(f"{item.ref}: no original topic (stage {item.letter.stage}); give --to TOPIC")
                continue
            pending.append((item, target, producer.send(target, item.letter.payload, key=item.letter.key)))
        producer.flush(timeout_s)
        for item, target, delivery in pending:
            delivery.get(timeout_s)
            outcome.replayed.append(f"{item.ref} -> {target}")
    finally:
        producer.close()
    return outcome

"""Where a ``kill -9`` of the aggregator landed: how much of the stream it had processed (issue #27 item 4).

A test that kills a process to prove "nothing lost, nothing counted twice" proves nothing if the
kill lands before the first record or after the last one. What the killed windows stage had
processed is its checkpoint (docs/STREAMING.md, "Crash safety"): per partition of the repartition
topic, the next offset to read, stored in ``state/aggregate.db`` in one transaction with the state
it stands for; a restart resumes exactly there. So the story records of the repartition topic
*below* the checkpoint at the moment of the kill are what the dead process had durably counted,
and the ones at or above it are what the restart (or the partition's next owner) had to do.

The repartition topic (``aggregator.repartition_topic``, default ``<topics.scored>.bykey``) holds
one record per (story, trend key), keyed by the trend key, plus watermark markers (header
``kind: watermark``, not stories); the re-key stage is at-least-once, so a contribution may be
there twice. :class:`Checkpointed` follows that topic and the checkpoint file and answers, for
a checkpoint, the set of distinct ``(trend key, story id)`` contributions it covers.

Use: read :meth:`Checkpointed.offsets` after the kill and before the restart (a dead process
cannot move its checkpoint), and count with :meth:`Checkpointed.contributions` against it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from monitor.core.records import ScoredItem, decode

Contribution = tuple[str, str]  # (trend key, story id)


class Checkpointed:
    """The checkpoint in ``db`` (a windows stage's ``state/aggregate.db``) against the records of
    ``topic`` (its repartition topic), on ``partitions`` only when given (a host's share)."""

    def __init__(self, bootstrap: str, topic: str, db: Path, partitions: Iterable[int] | None = None) -> None:
        self.bootstrap, self.topic, self.db = bootstrap, topic, db
        self.partitions = None if partitions is None else set(partitions)
        self._consumer: KafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        # (partition, offset, trend key, story id) of every story record read so far
        self._records: list[tuple[int, int, str, str]] = []

    def offsets(self) -> dict[int, int]:
        """The checkpoint: next offset to read per repartition partition ({} before the first one)."""
        if not self.db.exists():
            return {}
        try:
            with closing(sqlite3.connect(self.db, timeout=5)) as c:
                rows = c.execute("SELECT part, next_offset FROM partitions WHERE topic = ?", (self.topic,)).fetchall()
        except sqlite3.Error:  # the file is there but its tables are not yet
            return {}
        return {p: o for p, o in rows if self.partitions is None or p in self.partitions}

    def _follow(self, timeout_s: float = 60.0) -> None:
        """Read the topic on from where the last call stopped, up to its end offsets now."""
        if self._consumer is None:
            consumer = KafkaConsumer(bootstrap_servers=[self.bootstrap], enable_auto_commit=False, group_id=None)
            parts = consumer.partitions_for_topic(self.topic) or set()
            self._tps = [
                TopicPartition(self.topic, p) for p in sorted(parts) if self.partitions is None or p in self.partitions
            ]
            if not self._tps:
                consumer.close()
                return
            consumer.assign(self._tps)
            consumer.seek_to_beginning(*self._tps)
            self._consumer = consumer
        c = self._consumer
        ends = c.end_offsets(self._tps)
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp) < ends[tp] for tp in self._tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self.topic} to its end")
            for records in c.poll(timeout_ms=200, max_records=5000).values():
                for r in records:
                    if dict(r.headers or ()).get("kind") == b"watermark":
                        continue
                    self._records.append(
                        (r.partition, r.offset, (r.key or b"").decode(), decode(ScoredItem, r.value).id)
                    )

    def contributions(self, offsets: dict[int, int] | None = None) -> set[Contribution]:
        """The distinct (trend key, story id) below ``offsets`` (default: the checkpoint now)."""
        offsets = self.offsets() if offsets is None else offsets
        if not offsets:
            return set()  # no checkpoint yet (and maybe no topic yet: do not touch the broker)
        self._follow()
        return {(key, sid) for part, offset, key, sid in self._records if offset < offsets.get(part, 0)}

    def everything(self) -> set[Contribution]:
        """Every distinct (trend key, story id) on the topic (on ``partitions``) up to its end now."""
        self._follow()
        return {(key, sid) for _, _, key, sid in self._records}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def stories(contributions: Iterable[Contribution], key: str = "all") -> set[str]:
    """The story ids among ``contributions`` to trend ``key`` (every story feeds ``all`` once)."""
    return {sid for k, sid in contributions if k == key}

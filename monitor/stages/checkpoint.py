"""SQLite checkpoints of the aggregator: window state and the input offsets it reflects, together.

One transaction writes, per input partition, the next offset to read, the watermark and the
state of every key that changed since the previous checkpoint. On assignment the aggregator
restores a partition from here and seeks to the checkpointed offset, so state and position can
never disagree, whatever killed the process (``kill -9`` included: SQLite's WAL makes the
transaction all-or-nothing).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS partitions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, watermark REAL,
    PRIMARY KEY (grp, topic, part)
);
CREATE TABLE IF NOT EXISTS key_state (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (grp, topic, part, key)
);
"""


@dataclass(frozen=True)
class PartitionCheckpoint:
    next_offset: int
    watermark: float | None
    keys: dict[str, str]
    """key -> KeyState JSON"""


@dataclass(frozen=True)
class PartitionDelta:
    next_offset: int
    watermark: float | None
    changed_keys: Mapping[str, str]


class CheckpointStore:
    """``path=None`` keeps checkpoints in memory (the in-process bus forgets everything too)."""

    def __init__(self, path: Path | None, group: str) -> None:
        self.path = path
        self.group = group
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                                   isolation_level=None, timeout=30.0)
        self._lock = threading.Lock()
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def load(self, topic: str, partition: int) -> PartitionCheckpoint | None:
        with self._lock:
            row = self._db.execute(
                "SELECT next_offset, watermark FROM partitions WHERE grp=? AND topic=? AND part=?",
                (self.group, topic, partition),
            ).fetchone()
            if row is None:
                return None
            keys = dict(self._db.execute(
                "SELECT key, state FROM key_state WHERE grp=? AND topic=? AND part=?",
                (self.group, topic, partition),
            ).fetchall())
        return PartitionCheckpoint(next_offset=row[0], watermark=row[1], keys=keys)

    def save(self, topic: str, deltas: Mapping[int, PartitionDelta]) -> None:
        """Write every partition's delta in ONE transaction."""
        if not deltas:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for part, d in deltas.items():
                    db.execute(
                        "INSERT INTO partitions (grp, topic, part, next_offset, watermark) VALUES (?,?,?,?,?) "
                        "ON CONFLICT (grp, topic, part) DO UPDATE SET next_offset=excluded.next_offset, "
                        "watermark=excluded.watermark",
                        (self.group, topic, part, d.next_offset, d.watermark),
                    )
                    db.executemany(
                        "INSERT INTO key_state (grp, topic, part, key, state) VALUES (?,?,?,?,?) "
                        "ON CONFLICT (grp, topic, part, key) DO UPDATE SET state=excluded.state",
                        [(self.group, topic, part, k, s) for k, s in d.changed_keys.items()],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

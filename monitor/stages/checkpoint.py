"""SQLite checkpoints of the aggregator: window state and the input offsets it reflects, together.

One transaction writes, per input partition, the next offset to read, the watermark, the progress
of every upstream partition the watermark is aligned on (so a restart resumes with the same
watermark) and what
changed in the window state since the previous checkpoint (windows updated or evicted, EWMA
anchors, first-seen times, story ids counted or forgotten). Writes are incremental: a flush costs
what changed, not the size of the state. On assignment the aggregator restores a partition from
here and seeks to the checkpointed offset, so state and position can never disagree, whatever
killed the process (``kill -9`` included: the transaction is all-or-nothing).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.core.sqlite import add_column, open_sqlite
from monitor.stages.windows import SourceState, StateDelta, WindowAgg

SCHEMA = """
CREATE TABLE IF NOT EXISTS partitions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, watermark REAL, sources TEXT,
    PRIMARY KEY (grp, topic, part)
);
CREATE TABLE IF NOT EXISTS windows (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    key TEXT NOT NULL, window TEXT NOT NULL, start REAL NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (grp, topic, part, key, window, start)
);
CREATE TABLE IF NOT EXISTS anchors (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    key TEXT NOT NULL, window TEXT NOT NULL, ewma REAL,
    PRIMARY KEY (grp, topic, part, key, window)
);
CREATE TABLE IF NOT EXISTS first_seen (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, key TEXT NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (grp, topic, part, key)
);
CREATE TABLE IF NOT EXISTS seen (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (grp, topic, part, key, id)
);
CREATE INDEX IF NOT EXISTS seen_by_ts ON seen (grp, topic, part, ts);
"""


@dataclass(frozen=True)
class PartitionCheckpoint:
    next_offset: int
    watermark: float | None
    windows: list[tuple[str, str, list[Any]]]
    anchors: list[tuple[str, str, float | None]]
    first_ts: list[tuple[str, float]]
    seen: list[tuple[str, str, float]]
    sources: dict[int, SourceState]


@dataclass(frozen=True)
class PartitionDelta:
    next_offset: int
    watermark: float | None
    state: StateDelta
    sources: dict[int, SourceState] | None = None


def _sources_json(sources: dict[int, SourceState] | None) -> str | None:
    if sources is None:
        return None
    return json.dumps({str(k): v.to_json() for k, v in sorted(sources.items())}, separators=(",", ":"))


def _sources_of(blob: str | None) -> dict[int, SourceState]:
    if not blob:
        return {}
    return {int(k): SourceState(progress=v[0], idle=bool(v[1])) for k, v in json.loads(blob).items()}


def checkpoint_delta(cp: PartitionCheckpoint) -> PartitionDelta:
    """A whole checkpoint as one delta (to write a partition restored from elsewhere)."""
    state = StateDelta(
        windows={(k, w, row[0]): WindowAgg.from_json(row) for k, w, row in cp.windows},
        anchors={(k, w): e for k, w, e in cp.anchors},
        first_ts=dict(cp.first_ts),
        seen_added=list(cp.seen),
    )
    return PartitionDelta(cp.next_offset, cp.watermark, state, cp.sources)


class CheckpointStore:
    """``path=None`` keeps checkpoints in memory (the in-process bus forgets everything too)."""

    def __init__(self, path: Path | None, group: str) -> None:
        self.path = path
        self.group = group
        # a checkpoint written before the watermarks were aligned gains the sources column
        self._db = open_sqlite(path, SCHEMA, [add_column("partitions", "sources", "TEXT")])
        self._lock = threading.Lock()

    def load(self, topic: str, partition: int) -> PartitionCheckpoint | None:
        where = (self.group, topic, partition)
        q = "WHERE grp=? AND topic=? AND part=?"
        with self._lock:
            db = self._db
            row = db.execute(f"SELECT next_offset, watermark, sources FROM partitions {q}", where).fetchone()
            if row is None:
                return None
            windows = [
                (k, w, json.loads(s)) for k, w, s in db.execute(f"SELECT key, window, state FROM windows {q}", where)
            ]
            anchors = db.execute(f"SELECT key, window, ewma FROM anchors {q}", where).fetchall()
            first = db.execute(f"SELECT key, ts FROM first_seen {q}", where).fetchall()
            seen = db.execute(f"SELECT key, id, ts FROM seen {q}", where).fetchall()
        return PartitionCheckpoint(row[0], row[1], windows, anchors, first, seen, _sources_of(row[2]))

    def save(self, topic: str, deltas: Mapping[int, PartitionDelta]) -> None:
        """Write every partition's delta in ONE transaction."""
        if not deltas:
            return
        g = self.group
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for part, d in deltas.items():
                    s = d.state
                    db.execute(
                        "INSERT INTO partitions VALUES (?,?,?,?,?,?) ON CONFLICT (grp, topic, part) "
                        "DO UPDATE SET next_offset=excluded.next_offset, watermark=excluded.watermark, "
                        "sources=excluded.sources",
                        (g, topic, part, d.next_offset, d.watermark, _sources_json(d.sources)),
                    )
                    upserts = [
                        (g, topic, part, k, w, start, json.dumps(agg.to_json(), separators=(",", ":")))
                        for (k, w, start), agg in s.windows.items()
                        if agg is not None
                    ]
                    deletes = [(g, topic, part, k, w, start) for (k, w, start), agg in s.windows.items() if agg is None]
                    db.executemany(
                        "INSERT INTO windows VALUES (?,?,?,?,?,?,?) ON CONFLICT "
                        "(grp, topic, part, key, window, start) DO UPDATE SET state=excluded.state",
                        upserts,
                    )
                    db.executemany(
                        "DELETE FROM windows WHERE grp=? AND topic=? AND part=? AND key=? AND window=? AND start=?",
                        deletes,
                    )
                    db.executemany(
                        "INSERT INTO anchors VALUES (?,?,?,?,?,?) ON CONFLICT "
                        "(grp, topic, part, key, window) DO UPDATE SET ewma=excluded.ewma",
                        [(g, topic, part, k, w, e) for (k, w), e in s.anchors.items()],
                    )
                    db.executemany(
                        "INSERT INTO first_seen VALUES (?,?,?,?,?) ON CONFLICT "
                        "(grp, topic, part, key) DO UPDATE SET ts=excluded.ts",
                        [(g, topic, part, k, ts) for k, ts in s.first_ts.items()],
                    )
                    db.executemany(
                        "INSERT OR IGNORE INTO seen VALUES (?,?,?,?,?,?)",
                        [(g, topic, part, k, i, ts) for k, i, ts in s.seen_added],
                    )
                    if s.seen_cutoff is not None:
                        db.execute(
                            "DELETE FROM seen WHERE grp=? AND topic=? AND part=? AND ts < ?",
                            (g, topic, part, s.seen_cutoff),
                        )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back itself (e.g. SQLITE_FULL)
                    db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""SQLite persistence of alert state, the outbox, and the evaluator's input positions.

One file (``$FINSENT_HOME/state/alerts.db``), WAL mode, one connection behind a lock: the
evaluator and the deliverer share it in the daemon; ``finsent alerts`` opens its own. Everything
an evaluated batch changes - alert rows, latest trend points, the watermark, the outbox rows of
the notifications it produced, and the input offsets after the batch - is written in **one**
transaction (:meth:`AlertStore.apply`), so a crash leaves either all of it or none of it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from alerts.instances import AlertInstance, OutboxEntry
from monitor.core.bus.base import TopicPartition
from monitor.core.records import TrendPoint
from monitor.core.sqlite import add_column, open_sqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, labels TEXT NOT NULL,
    receiver TEXT NOT NULL, group_key TEXT NOT NULL, group_labels TEXT NOT NULL, state TEXT NOT NULL,
    active_since TEXT, starts_at TEXT, ends_at TEXT, last_seen_at TEXT, last_notified_at TEXT,
    fired_window_end TEXT, revision INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0,
    values_json TEXT NOT NULL, annotations TEXT NOT NULL, evidence TEXT NOT NULL, model_version TEXT,
    acked_at TEXT, acked_by TEXT, keep_firing_since TEXT
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state);
CREATE TABLE IF NOT EXISTS latest_points (
    key TEXT NOT NULL, window TEXT NOT NULL, point TEXT NOT NULL, PRIMARY KEY (key, window)
);
CREATE TABLE IF NOT EXISTS input_offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE, receiver TEXT NOT NULL, group_key TEXT NOT NULL,
    reason TEXT NOT NULL, status TEXT NOT NULL, fingerprints TEXT NOT NULL, body BLOB NOT NULL,
    content_type TEXT NOT NULL, created_at REAL NOT NULL, next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT, last_status INTEGER, delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_head ON outbox(state, receiver, group_key, id);
"""

_OUTBOX_COLUMNS = (
    "idempotency_key",
    "receiver",
    "group_key",
    "reason",
    "status",
    "fingerprints",
    "body",
    "content_type",
    "created_at",
    "next_attempt_at",
    "attempts",
    "state",
)


MIGRATIONS = [add_column("alerts", "keep_firing_since", "TEXT")]
"""Changes since the first schema: stores created before them gain them when opened (once)."""

MIN_PREFIX = 6
"""Shortest fingerprint prefix ``find_alert`` accepts (CLI convenience; the HTTP ack needs the full one)."""


@dataclass
class Changes:
    """What one evaluated batch changed; written atomically by :meth:`AlertStore.apply`."""

    upserts: dict[str, AlertInstance] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)
    latest: dict[tuple[str, str], TrendPoint] = field(default_factory=dict)
    watermark: datetime | None = None
    outbox: list[OutboxEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes or self.latest or self.outbox or self.watermark)


def _entry(row: sqlite3.Row) -> OutboxEntry:
    d = dict(row)
    d["fingerprints"] = json.loads(d["fingerprints"])
    d["body"] = bytes(d["body"])
    return OutboxEntry(**d)


class AlertStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = open_sqlite(self.path, SCHEMA, MIGRATIONS)
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # -- evaluator state ---------------------------------------------------------------------
    def load_alerts(self) -> list[AlertInstance]:
        return [AlertInstance.from_row(dict(r)) for r in self._query("SELECT * FROM alerts")]

    def load_latest(self) -> dict[tuple[str, str], TrendPoint]:
        rows = self._query("SELECT key, window, point FROM latest_points")
        return {(r["key"], r["window"]): TrendPoint.model_validate_json(r["point"]) for r in rows}

    def watermark(self) -> datetime | None:
        rows = self._query("SELECT value FROM meta WHERE name = 'watermark'")
        return datetime.fromisoformat(rows[0]["value"]) if rows else None

    def input_offset(self, tp: TopicPartition) -> int | None:
        rows = self._query(
            "SELECT next_offset FROM input_offsets WHERE topic = ? AND partition = ?", (tp.topic, tp.partition)
        )
        return rows[0]["next_offset"] if rows else None

    def forget_input_offsets(self) -> int:
        """Drop every stored input offset (the bus they pointed into is gone); returns how many."""
        with self._lock:
            return self._db.execute("DELETE FROM input_offsets").rowcount

    def apply(self, changes: Changes, offsets: Mapping[TopicPartition, int] | None = None) -> int:
        """Write a batch's changes and input offsets in one transaction; returns new outbox rows."""
        added = 0
        cols = AlertInstance.COLUMNS
        upsert = (
            f"INSERT INTO alerts ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT(fingerprint) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
            + ", acked_at = CASE WHEN alerts.starts_at IS excluded.starts_at THEN alerts.acked_at ELSE NULL END"
            + ", acked_by = CASE WHEN alerts.starts_at IS excluded.starts_at THEN alerts.acked_by ELSE NULL END"
        )
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if changes.deletes:
                    db.executemany("DELETE FROM alerts WHERE fingerprint = ?", [(f,) for f in changes.deletes])
                if changes.upserts:
                    db.executemany(upsert, [a.to_row() for a in changes.upserts.values()])
                if changes.latest:
                    db.executemany(
                        "INSERT OR REPLACE INTO latest_points (key, window, point) VALUES (?, ?, ?)",
                        [(k, w, p.model_dump_json()) for (k, w), p in changes.latest.items()],
                    )
                if changes.watermark is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO meta (name, value) VALUES ('watermark', ?)",
                        (changes.watermark.isoformat(),),
                    )
                for e in changes.outbox:
                    cur = db.execute(
                        f"INSERT OR IGNORE INTO outbox ({', '.join(_OUTBOX_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(_OUTBOX_COLUMNS))})",
                        (
                            e.idempotency_key,
                            e.receiver,
                            e.group_key,
                            e.reason,
                            e.status,
                            json.dumps(e.fingerprints),
                            e.body,
                            e.content_type,
                            e.created_at,
                            e.next_attempt_at,
                            e.attempts,
                            e.state,
                        ),
                    )
                    added += cur.rowcount
                if offsets:
                    db.executemany(
                        "INSERT OR REPLACE INTO input_offsets (topic, partition, next_offset) VALUES (?, ?, ?)",
                        [(tp.topic, tp.partition, o) for tp, o in offsets.items()],
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back itself (e.g. SQLITE_FULL)
                    db.execute("ROLLBACK")
                raise
        return added

    # -- inspection and acks -----------------------------------------------------------------
    def list_alerts(self, state: str | None = None) -> list[AlertInstance]:
        sql = "SELECT * FROM alerts"
        params: tuple = ()
        if state:
            sql += " WHERE state = ?"
            params = (state,)
        sql += " ORDER BY CASE state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, starts_at DESC, fingerprint"
        return [AlertInstance.from_row(dict(r)) for r in self._query(sql, params)]

    def find_alert(self, fingerprint: str, *, exact: bool = False) -> AlertInstance | None:
        """By full fingerprint, or (unless ``exact``) an unambiguous literal prefix of at least
        :data:`MIN_PREFIX` characters. The prefix is compared as text (``substr``), never as a
        ``LIKE`` pattern, so ``%`` and ``_`` match only themselves."""
        rows = self._query("SELECT * FROM alerts WHERE fingerprint = ?", (fingerprint,))
        if not rows and not exact and len(fingerprint) >= MIN_PREFIX:
            rows = self._query(
                "SELECT * FROM alerts WHERE substr(fingerprint, 1, ?) = ? LIMIT 2", (len(fingerprint), fingerprint)
            )
        return AlertInstance.from_row(dict(rows[0])) if len(rows) == 1 else None

    def ack(self, fingerprint: str, by: str, at: datetime) -> bool:
        with self._lock:
            cur = self._db.execute(
                "UPDATE alerts SET acked_at = ?, acked_by = ? WHERE fingerprint = ?", (at.isoformat(), by, fingerprint)
            )
            return cur.rowcount == 1

    def acked(self, fingerprint: str) -> bool:
        rows = self._query("SELECT acked_at FROM alerts WHERE fingerprint = ?", (fingerprint,))
        return bool(rows and rows[0]["acked_at"])

    # -- outbox -------------------------------------------------------------------------------
    def due_entries(self, now: float, limit: int) -> list[OutboxEntry]:
        """Pending entries due by ``now``: only the oldest per (receiver, group), so order holds."""
        rows = self._query(
            "SELECT o.* FROM outbox o JOIN (SELECT MIN(id) AS id FROM outbox WHERE state = 'pending' "
            "GROUP BY receiver, group_key) h ON o.id = h.id WHERE o.next_attempt_at <= ? "
            "ORDER BY o.next_attempt_at, o.id LIMIT ?",
            (now, limit),
        )
        return [_entry(r) for r in rows]

    def next_due(self) -> float | None:
        """When the earliest deliverable entry (head of its group) is due, or None if none is pending."""
        rows = self._query(
            "SELECT MIN(o.next_attempt_at) AS t FROM outbox o JOIN (SELECT MIN(id) AS id FROM outbox "
            "WHERE state = 'pending' GROUP BY receiver, group_key) h ON o.id = h.id"
        )
        return rows[0]["t"] if rows and rows[0]["t"] is not None else None

    def mark_delivered(self, entry_id: int, now: float, status: int | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?, attempts = attempts + 1, "
                "last_status = ?, last_error = NULL WHERE id = ?",
                (now, status, entry_id),
            )

    def reschedule(self, entry_id: int, next_at: float, error: str, status: int | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1, last_error = ?, last_status = ? "
                "WHERE id = ?",
                (next_at, error, status, entry_id),
            )

    def mark_dead(self, entry_id: int, error: str, status: int | None, attempted: bool = True) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + ?, last_error = ?, last_status = ? "
                "WHERE id = ?",
                (1 if attempted else 0, error, status, entry_id),
            )

    def expire(self, older_than: float) -> list[int]:
        """Dead-letter pending entries created before ``older_than``; returns their ids."""
        with self._lock:
            ids = [
                r["id"]
                for r in self._db.execute(
                    "SELECT id FROM outbox WHERE state = 'pending' AND created_at < ?", (older_than,)
                ).fetchall()
            ]
            if ids:
                self._db.executemany(
                    "UPDATE outbox SET state = 'dead', last_error = COALESCE(last_error, '') || "
                    "' [dead letter: too old]' WHERE id = ?",
                    [(i,) for i in ids],
                )
            return ids

    def prune_delivered(self, older_than: float) -> int:
        with self._lock:
            return self._db.execute(
                "DELETE FROM outbox WHERE state = 'delivered' AND delivered_at < ?", (older_than,)
            ).rowcount

    def outbox_entries(self, states: Iterable[str] = ("pending", "dead"), limit: int = 100) -> list[OutboxEntry]:
        states = tuple(states)
        rows = self._query(
            f"SELECT * FROM outbox WHERE state IN ({', '.join('?' * len(states))}) ORDER BY id DESC LIMIT ?",
            (*states, limit),
        )
        return [_entry(r) for r in rows]

    def refresh_firing(self, receiver: str, build: Callable[[str, list[AlertInstance]], OutboxEntry | None]) -> int:
        """Queue ``build(group_key, firing_alerts)`` for each of ``receiver``'s groups with firing
        alerts and nothing pending; returns the rows queued.

        The alerts are read and the rows queued under the store's lock, so a resolve the evaluator
        commits cannot slip in between: it lands before (and the group is left out) or after (and
        is delivered after the re-send, in order)."""
        with self._lock:
            busy = {
                r["group_key"]
                for r in self._db.execute(
                    "SELECT DISTINCT group_key FROM outbox WHERE state = 'pending' AND receiver = ?", (receiver,)
                )
            }
            groups: dict[str, list[AlertInstance]] = {}
            for inst in self.list_alerts("firing"):
                if inst.receiver == receiver and inst.group_key not in busy:
                    groups.setdefault(inst.group_key, []).append(inst)
            entries = [e for key, members in sorted(groups.items()) if (e := build(key, members)) is not None]
            return self.apply(Changes(outbox=entries)) if entries else 0

    def oldest_pending(self) -> float | None:
        """``created_at`` of the oldest undelivered outbox row, or None."""
        rows = self._query("SELECT MIN(created_at) AS t FROM outbox WHERE state = 'pending'")
        return rows[0]["t"] if rows and rows[0]["t"] is not None else None

    def outbox_counts(self) -> dict[str, int]:
        rows = self._query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
        out = {"pending": 0, "delivered": 0, "dead": 0}
        out.update({r["state"]: r["n"] for r in rows})
        return out

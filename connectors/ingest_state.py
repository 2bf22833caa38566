"""Durable connector state in SQLite: seen story ids, near-duplicate title clusters, HTTP validators.

Dedup is two-phase so that a story is only *remembered* once the broker acknowledged it:
:meth:`IngestState.reserve` decides (new, near-duplicate or duplicate) and holds the decision in
memory so concurrent copies see it; :meth:`commit` persists it after the ack and :meth:`rollback`
forgets it when the send failed, so the next poll tries the story again.

Near-duplicates: titles are reduced by :func:`connectors.identity.title_key` (wire prefixes,
punctuation and case removed). Equal keys, or content-word sets with a Jaccard similarity at or
above the threshold, form one cluster. A story's novelty is ``1 / (1 + copies seen before)``.
Everything is forgotten ``ttl`` seconds after it was last seen, and memory is bounded as well:
beyond ``max_entries`` remembered ids (or title clusters) the oldest are forgotten early, as soon
as either exceeds the bound by 1 % (checked on every commit, not only at the minutely purge), so a
sustained high rate cannot grow the process past it, however fast the stories come.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal

import structlog

from connectors.identity import title_key, title_tokens, token_order
from monitor.core.sqlite import open_sqlite

log = structlog.get_logger(__name__)

MIN_FUZZY_TOKENS = 4
"""Titles with fewer content words are only matched exactly (too short to compare fuzzily)."""
RECENT_CANDIDATES = 12
"""Per prefix word, only the most recent clusters holding it are compared (bounded cost per story;
near-duplicates arrive close together)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_ids (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL DEFAULT '',
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_ids_at ON seen_ids(seen_at);
CREATE TABLE IF NOT EXISTS titles (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    first_id TEXT NOT NULL,
    copies INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS titles_last_seen ON titles(last_seen);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS http_state (
    source TEXT NOT NULL,
    url TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (source, url)
);
"""


@dataclass(slots=True)
class _Cluster:
    scope: str
    key: str
    tokens: tuple[str, ...]
    """The title's content words, interned (shared by every cluster that holds them) and kept as a
    tuple: a tenth of a frozenset's memory, which matters at ``max_entries`` clusters."""
    first_id: str
    copies: int
    first_seen: float
    last_seen: float
    persisted: bool


def _compact(tokens: Iterable[str]) -> tuple[str, ...]:
    return tuple(sys.intern(t) for t in tokens)


@dataclass
class Reservation:
    id: str
    scope: str
    cluster: _Cluster
    created: bool
    """True when this story opened the cluster (a first sighting)."""


@dataclass
class Verdict:
    status: Literal["new", "near_duplicate", "duplicate"]
    novelty: float = 1.0
    duplicate_of: str | None = None
    reservation: Reservation | None = None


class IngestState:
    """One SQLite file (WAL) under the state directory; thread-safe, one connection."""

    def __init__(
        self,
        path: Path,
        ttl_s: float = 48 * 3600,
        threshold: float = 0.8,
        min_novelty: float = 0.0,
        clock: Callable[[], float] = time.time,
        max_entries: int = 100_000,
    ) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._slack = max(1, max_entries // 100)  # evict in chunks of 1 %: one DELETE per chunk, not per story
        self.evicted = 0
        """ids and clusters forgotten before their TTL because of ``max_entries``"""
        self.threshold = threshold
        self.min_novelty = min_novelty
        self._clock = clock
        self._lock = threading.RLock()
        self._db = open_sqlite(path, _SCHEMA)
        self._pending: set[str] = set()
        self._clusters: dict[tuple[str, str], _Cluster] = {}
        self._postings: dict[str, dict[str, dict[tuple[str, str], tuple[str, ...]]]] = {}
        """scope -> word -> the clusters indexed under it (oldest first) and their words."""
        self._df: dict[str, int] = {}
        self._ids: dict[str, tuple[str, float]] = {}
        self._last_purge = 0.0
        self._load()

    # -- lifecycle --------------------------------------------------------------------------
    def _load(self) -> None:
        horizon = self._clock() - self.ttl_s
        self._db.execute("DELETE FROM seen_ids WHERE seen_at < ?", (horizon,))
        self._db.execute("DELETE FROM titles WHERE last_seen < ?", (horizon,))
        self._ids = {
            i: (scope, at)
            for i, scope, at in self._db.execute("SELECT id, scope, seen_at FROM seen_ids ORDER BY seen_at")
        }
        rows = self._db.execute(
            "SELECT scope, key, first_id, copies, first_seen, last_seen FROM titles ORDER BY first_seen"
        ).fetchall()
        for scope, key, first_id, copies, first_seen, last_seen in rows:
            self._index(
                _Cluster(scope, key, _compact(title_tokens(key)), first_id, copies, first_seen, last_seen, True)
            )
        self._cap(self._clock())
        self._last_purge = self._clock()
        log.info("ingest state loaded", path=str(self.path), ids=len(self._ids), titles=len(rows))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- dedup ------------------------------------------------------------------------------
    def reserve(self, item_id: str, title: str, scope: str = "") -> Verdict:
        """Decide whether a story is new, a near-duplicate (emitted, lower novelty) or a duplicate
        (dropped), and hold that decision until :meth:`commit` or :meth:`rollback`."""
        now = self._clock()
        with self._lock:
            if item_id in self._pending or self._seen(item_id, now):
                return Verdict("duplicate")
            if now - self._last_purge > 60:
                self._purge(now)
            key = title_key(title)
            tokens = title_tokens(key)
            prefix: list[str] | None = None
            cluster = self._clusters.get((scope, key)) if key else None
            if cluster is None and len(tokens) >= MIN_FUZZY_TOKENS:
                prefix = self._prefix(tokens)
                cluster = self._fuzzy(scope, tokens, prefix)
            if cluster is not None and cluster.last_seen < now - self.ttl_s:
                self._unindex(cluster)  # expired since the last purge
                cluster = None
            if cluster is None:
                cluster = _Cluster(scope, key or item_id, _compact(tokens), item_id, 1, now, now, False)
                self._index(cluster, prefix)
                self._pending.add(item_id)
                return Verdict("new", 1.0, None, Reservation(item_id, scope, cluster, True))
            novelty = 1.0 / (1 + cluster.copies)
            if novelty < self.min_novelty:
                # Dropped, not sent: nothing to wait for, so remember the id now.
                self._db.execute(
                    "INSERT OR REPLACE INTO seen_ids(id, scope, seen_at) VALUES (?, ?, ?)", (item_id, scope, now)
                )
                self._ids[item_id] = (scope, now)
                return Verdict("duplicate", novelty, cluster.first_id)
            cluster.copies += 1
            cluster.last_seen = now
            self._pending.add(item_id)
            return Verdict("near_duplicate", novelty, cluster.first_id, Reservation(item_id, scope, cluster, False))

    def commit(self, reservations: Iterable[Reservation]) -> None:
        """Persist decisions whose stories the broker acknowledged."""
        now = self._clock()
        with self._lock:
            rows = list(reservations)
            if not rows:
                return
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO seen_ids(id, scope, seen_at) VALUES (?, ?, ?)",
                    [(r.id, r.scope, now) for r in rows],
                )
                clusters = {id(r.cluster): r.cluster for r in rows}.values()
                self._db.executemany(
                    "INSERT INTO titles(scope, key, first_id, copies, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(scope, key) DO UPDATE SET first_id=excluded.first_id, copies=excluded.copies, "
                    "first_seen=excluded.first_seen, last_seen=excluded.last_seen",
                    [(c.scope, c.key, c.first_id, c.copies, c.first_seen, c.last_seen) for c in clusters],
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back itself (e.g. SQLITE_FULL)
                    self._db.execute("ROLLBACK")
                raise
            for r in rows:
                self._pending.discard(r.id)
                self._ids[r.id] = (r.scope, now)
                r.cluster.persisted = True
            if now - self._last_purge > 60:
                self._purge(now)
            elif max(len(self._ids), len(self._clusters)) > self.max_entries + self._slack:
                self._cap(now)

    def remember(self, ids: Iterable[str], scope: str = "") -> int:
        """Mark ``ids`` as published (by another ingest instance, before a feed moved here), so that
        they count as duplicates; returns how many were new here."""
        now = self._clock()
        with self._lock:
            fresh = [i for i in dict.fromkeys(ids) if not self._seen(i, now)]
            if not fresh:
                return 0
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO seen_ids(id, scope, seen_at) VALUES (?, ?, ?)",
                    [(i, scope, now) for i in fresh],
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            for i in fresh:
                self._ids[i] = (scope, now)
            return len(fresh)

    def rollback(self, reservations: Iterable[Reservation]) -> None:
        """Forget decisions whose stories were not acknowledged (they will be tried again)."""
        with self._lock:
            for r in reservations:
                self._pending.discard(r.id)
                if r.created and not r.cluster.persisted:
                    self._unindex(r.cluster)
                elif not r.created:
                    r.cluster.copies = max(1, r.cluster.copies - 1)

    def forget_scope_prefix(self, prefix: str) -> None:
        """Drop every id and title cluster whose scope starts with ``prefix`` (replay loops)."""
        if not prefix:
            raise ValueError("refusing to forget the global scope")
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._lock:
            self._db.execute("DELETE FROM seen_ids WHERE scope LIKE ? ESCAPE '\\'", (like,))
            self._db.execute("DELETE FROM titles WHERE scope LIKE ? ESCAPE '\\'", (like,))
            for item_id in [i for i, (scope, _) in self._ids.items() if scope.startswith(prefix)]:
                del self._ids[item_id]
            for cluster in [c for c in self._clusters.values() if c.scope.startswith(prefix)]:
                self._unindex(cluster)

    def seen(self, item_id: str) -> bool:
        with self._lock:
            return self._seen(item_id, self._clock())

    def _seen(self, item_id: str, now: float) -> bool:
        entry = self._ids.get(item_id)  # an in-memory mirror of seen_ids: no I/O per story
        return entry is not None and entry[1] >= now - self.ttl_s

    def _prefix(self, tokens: Iterable[str]) -> list[str]:
        """Prefix filtering: two sets with Jaccard >= t share a token among the first
        ``|x| - ceil(t*|x|) + 1`` tokens of each when both are sorted in one global order. The
        order used is rarest first by the current document frequency, which keeps candidate
        lists short; since frequencies drift, the match is approximate (near-duplicates share
        their rare words, names and numbers, so in practice they are found)."""
        ordered = list(tokens)
        n = len(ordered)
        size = n - math.ceil(self.threshold * n - 1e-9) + 1
        df = self._df
        return sorted(ordered, key=lambda t: (df.get(t, 0), token_order(t)))[:size]

    def _fuzzy(self, scope: str, tokens: frozenset[str], prefix: list[str] | None = None) -> _Cluster | None:
        if len(tokens) < MIN_FUZZY_TOKENS:
            return None
        n = len(tokens)
        threshold = self.threshold
        best_ck: tuple[str, str] | None = None
        best = 0.0
        seen: set[tuple[str, str]] = set()
        postings = self._postings.get(scope)
        if not postings:
            return None
        for tok in prefix if prefix is not None else self._prefix(tokens):
            posting = postings.get(tok)
            if not posting:
                continue
            for ck, other in islice(reversed(posting.items()), RECENT_CANDIDATES):
                if ck in seen:
                    continue
                seen.add(ck)
                inter = len(tokens.intersection(other))
                jac = inter / (n + len(other) - inter)
                if jac >= threshold and jac > best:
                    best, best_ck = jac, ck
        return self._clusters[best_ck] if best_ck is not None else None

    def _index(self, c: _Cluster, prefix: list[str] | None = None) -> None:
        ck = (c.scope, c.key)
        self._clusters[ck] = c
        if len(c.tokens) >= MIN_FUZZY_TOKENS:
            df = self._df
            for tok in c.tokens:
                df[tok] = df.get(tok, 0) + 1
            postings = self._postings.setdefault(c.scope, {})
            for tok in prefix if prefix is not None else self._prefix(c.tokens):
                postings.setdefault(tok, {})[ck] = c.tokens

    def _unindex(self, c: _Cluster) -> None:
        ck = (c.scope, c.key)
        if self._clusters.get(ck) is not c:
            return
        del self._clusters[ck]
        if len(c.tokens) >= MIN_FUZZY_TOKENS:
            for tok in c.tokens:
                left = self._df.get(tok, 0) - 1
                if left > 0:
                    self._df[tok] = left
                else:
                    self._df.pop(tok, None)
        postings = self._postings.get(c.scope)
        if postings is None:
            return
        for tok in c.tokens:
            posting = postings.get(tok)
            if posting is not None:
                posting.pop(ck, None)
                if not posting:
                    del postings[tok]
        if not postings:
            del self._postings[c.scope]

    def _purge(self, now: float) -> None:
        horizon = now - self.ttl_s
        self._db.execute("DELETE FROM seen_ids WHERE seen_at < ?", (horizon,))
        self._db.execute("DELETE FROM titles WHERE last_seen < ?", (horizon,))
        for item_id in [i for i, (_, at) in self._ids.items() if at < horizon]:
            del self._ids[item_id]
        for c in [c for c in self._clusters.values() if c.last_seen < horizon and c.persisted]:
            self._unindex(c)
        self._cap(now)
        self._last_purge = now

    def _cap(self, now: float) -> None:
        """Forget the oldest ids and clusters beyond ``max_entries`` (insertion order: oldest
        first). A story forgotten early and seen again is emitted again; downstream is idempotent
        by story id within its windows."""
        excess_ids = len(self._ids) - self.max_entries
        old_ids = list(islice(self._ids, excess_ids)) if excess_ids > 0 else []
        for item_id in old_ids:
            del self._ids[item_id]
        if old_ids:
            self._db.executemany("DELETE FROM seen_ids WHERE id = ?", [(i,) for i in old_ids])
        excess = len(self._clusters) - self.max_entries
        # persisted only: a cluster still waiting for its broker ack belongs to a reservation
        old = list(islice((c for c in self._clusters.values() if c.persisted), max(0, excess)))
        for c in old:
            self._unindex(c)
        if old:
            self._db.executemany("DELETE FROM titles WHERE scope = ? AND key = ?", [(c.scope, c.key) for c in old])
        if old_ids or old:
            # said once at info (a busy installation reaches the bound every minute), then at debug
            say = log.info if not self.evicted else log.debug
            self.evicted += len(old_ids) + len(old)
            oldest = next(iter(self._ids.values()), ("", now))[1]  # insertion order: the oldest first
            say(
                "dedup memory at its bound; forgot the oldest entries before their TTL",
                ids=len(old_ids),
                titles=len(old),
                max_entries=self.max_entries,
                oldest_kept_age_s=round(now - oldest),
            )

    # -- HTTP validators --------------------------------------------------------------------
    def http_validators(self, source: str, url: str) -> tuple[str | None, str | None]:
        """The ETag and Last-Modified of the last successful fetch of ``url``."""
        with self._lock:
            row = self._db.execute(
                "SELECT etag, last_modified FROM http_state WHERE source = ? AND url = ?", (source, url)
            ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def save_http_validators(self, source: str, url: str, etag: str | None, last_modified: str | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO http_state(source, url, etag, last_modified, updated_at) VALUES (?, ?, ?, ?, ?)",
                (source, url, etag, last_modified, self._clock()),
            )

    # -- small values (replay clocks) ------------------------------------------------------
    def get_value(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_value(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?, ?)", (key, value))

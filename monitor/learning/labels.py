"""Human labels: validation at every entrance, a durable store with provenance, conflict resolution.

Entrances: ``POST /labels`` (a ``write`` bearer token, see ``monitor.app.auth``), ``finsent labels import
FILE.csv|.jsonl`` and the ``news.labels`` topic (:class:`LabelCollector`). Every one goes through
:func:`validate_rows`: a batch is stored all-or-nothing, and a rejected batch names every bad row.

Store (SQLite, ``state/labels.db``): one *vote* per (task, text, labeller); a labeller who labels
the same text again replaces their vote (an identical re-submission changes nothing), so
duplicates never pile up. Each vote keeps its provenance: labeller, source (``http``,
``file:<name>``, ``topic``), story id, when it was labelled and when it arrived.

Conflict rule (:func:`resolve`): the label of a (task, text) is the **majority** of its labellers'
votes; a tie goes to the tied label voted **latest** (``labelled_at``, then arrival order).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models import labels_for, parse_label
from monitor.core.bus.base import Bus, ConsumerOptions, Producer
from monitor.core.bus.codec import DeadLetterSink, RecordReader, next_offsets
from monitor.core.bus.settings import TopicSettings
from monitor.core.csvfile import iter_csv
from monitor.core.records import LabelRecord, UtcDatetime, utcnow
from monitor.core.sqlite import open_sqlite
from monitor.learning.metrics import RetrainMetrics

log = structlog.get_logger(__name__)

Task = Literal["sentiment", "topic"]
StoryLookup = Callable[[str], "str | None"]
"""story id -> the story's text, or None when unknown."""


def canonical_label(task: str, raw: str | int) -> str:
    """The label's name (``negative``, ``Energy | Oil``), given a name (any case) or a dataset id."""

    return labels_for(task)[parse_label(task, raw)]  # type: ignore[arg-type]


class LabelIn(BaseModel):
    """One label as submitted (HTTP body, file row): by ``text`` or by ``story_id``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    task: Task
    label: StrictStr | StrictInt = Field(
        description="a label name, or the dataset's integer id; JSON true, false and 1.0 are not labels"
    )
    text: str | None = Field(default=None, min_length=1, max_length=20_000)
    story_id: str | None = Field(default=None, min_length=1, max_length=256)
    labeller: str = Field(min_length=1, max_length=128)
    labelled_at: UtcDatetime | None = None

    @field_validator("label")
    @classmethod
    def _known_label(cls, v: str | int, info: ValidationInfo) -> str:
        task = info.data.get("task")
        return canonical_label(task, v) if task else str(v)  # unknown task: reported on its own

    @model_validator(mode="after")
    def _text_or_story(self) -> LabelIn:
        if self.text is None and self.story_id is None:
            raise ValueError("give the text or a story_id")
        return self


@dataclass(frozen=True)
class Vote:
    task: str
    text: str
    label: str
    labeller: str
    source: str
    item_id: str | None
    labelled_at: datetime


@dataclass(frozen=True)
class ResolvedLabel:
    task: str
    text: str
    label: str
    votes: dict[str, int]
    seq: int  # newest arrival among its votes


@dataclass(frozen=True)
class Unreadable:
    """A row of a label file that could not even be parsed (not JSON, a broken CSV row)."""

    reason: str


@dataclass(frozen=True)
class RowError:
    row: int | str
    error: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.error}"


class LabelBatchError(ValueError):
    """A batch had invalid rows; nothing of it was stored."""

    def __init__(self, errors: list[RowError], total: int) -> None:
        self.errors = errors
        self.total = total
        super().__init__(
            f"{len(errors)} of {total} labels invalid; nothing stored:\n" + "\n".join(f"  {e}" for e in errors)
        )


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate_rows(
    rows: Sequence[tuple[int | str, Any]],
    source: str,
    lookup: StoryLookup | None = None,
    default_labeller: str | None = None,
) -> list[Vote]:
    """``(row name, raw mapping)`` pairs -> votes; raises :class:`LabelBatchError` naming every bad row."""
    votes: list[Vote] = []
    errors: list[RowError] = []
    now = utcnow()
    for name, raw in rows:
        if isinstance(raw, Unreadable):
            errors.append(RowError(name, raw.reason))
            continue
        if not isinstance(raw, dict):
            errors.append(RowError(name, f"expected an object, got {type(raw).__name__}"))
            continue
        if default_labeller and not raw.get("labeller"):
            raw = {**raw, "labeller": default_labeller}
        try:
            item = LabelIn.model_validate(raw)
        except ValidationError as err:
            errors.append(RowError(name, _describe(err)))
            continue
        text = item.text
        if text is None:
            text = lookup(item.story_id) if lookup and item.story_id else None
            if text is None:
                errors.append(RowError(name, f"story_id: unknown story {item.story_id!r} (send its text instead)"))
                continue
        votes.append(
            Vote(item.task, text, str(item.label), item.labeller, source, item.story_id, item.labelled_at or now)
        )
    if errors:
        raise LabelBatchError(errors, len(rows))
    return votes


# -- the store ---------------------------------------------------------------------------------
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS votes (task TEXT NOT NULL, text TEXT NOT NULL, labeller TEXT NOT NULL,"
    " label TEXT NOT NULL, item_id TEXT, source TEXT NOT NULL, labelled_at TEXT NOT NULL,"
    " received_at TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (task, text, labeller));"
    " CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
)


@dataclass(frozen=True)
class AddResult:
    inserted: int
    updated: int
    unchanged: int

    @property
    def stored(self) -> int:
        return self.inserted + self.updated


class LabelStore:
    """Votes in SQLite (WAL; safe beside a daemon), and the sequence number the last run used."""

    def __init__(self, path: Path) -> None:
        # synchronous=FULL: a vote acknowledged to its labeller survives a power cut too
        self._db = open_sqlite(path, _SCHEMA, synchronous="FULL")
        self._lock = threading.Lock()

    def add(self, votes: Iterable[Vote | LabelRecord], source: str = "topic") -> AddResult:
        """Store every vote in one transaction (all or nothing)."""
        inserted = updated = unchanged = 0
        received = utcnow().isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._max_seq()
                for v in votes:
                    if isinstance(v, LabelRecord):
                        v = Vote(
                            v.task,
                            v.text,
                            canonical_label(v.task, v.label),
                            v.labeller or "anonymous",
                            source,
                            v.item_id,
                            v.labelled_at,
                        )
                    row = self._db.execute(
                        "SELECT label, labelled_at FROM votes WHERE task=? AND text=? AND labeller=?",
                        (v.task, v.text, v.labeller),
                    ).fetchone()
                    if row is not None and (row[0] == v.label or _later(row[1], v.labelled_at)):
                        unchanged += 1  # the same vote, or an older one (read again from the topic)
                        continue
                    seq += 1
                    self._db.execute(
                        "INSERT INTO votes VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(task, text, labeller) DO UPDATE SET"
                        " label=excluded.label, item_id=excluded.item_id, source=excluded.source,"
                        " labelled_at=excluded.labelled_at, received_at=excluded.received_at, seq=excluded.seq",
                        (
                            v.task,
                            v.text,
                            v.labeller,
                            v.label,
                            v.item_id,
                            v.source,
                            v.labelled_at.isoformat(),
                            received,
                            seq,
                        ),
                    )
                    inserted, updated = (inserted + 1, updated) if row is None else (inserted, updated + 1)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return AddResult(inserted, updated, unchanged)

    def _max_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM votes").fetchone()[0])

    def votes(self) -> list[dict[str, Any]]:
        """Every vote with its provenance, in arrival order."""
        with self._lock:
            cur = self._db.execute(
                "SELECT task, text, labeller, label, item_id, source, labelled_at, received_at, seq"
                " FROM votes ORDER BY seq"
            )
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur]

    def resolved(self) -> list[ResolvedLabel]:
        """One label per (task, text) by the conflict rule, oldest first."""
        return resolve(self.votes())

    def max_seq(self) -> int:
        with self._lock:
            return self._max_seq()

    def last_used_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k='last_seq'").fetchone()
            return int(row[0]) if row else 0

    def new_since_last_run(self) -> int:
        """Votes added or changed since the last completed retrain."""
        since = self.last_used_seq()
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM votes WHERE seq > ?", (since,)).fetchone()[0])

    def mark_used(self, seq: int | None = None) -> None:
        """Votes up to ``seq`` (default: all) were seen by a completed run."""
        with self._lock:
            value = self._max_seq() if seq is None else seq
            self._db.execute(
                "INSERT INTO meta VALUES ('last_seq', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (str(value),)
            )

    def close(self) -> None:
        self._db.close()


def resolve(votes: Iterable[dict[str, Any]]) -> list[ResolvedLabel]:
    """Majority of the labellers' votes; a tie goes to the tied label voted latest."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in votes:
        groups.setdefault((v["task"], v["text"]), []).append(v)
    out = []
    for (task, text), vs in groups.items():
        counts: dict[str, int] = {}
        latest: dict[str, tuple[str, int]] = {}
        for v in vs:
            counts[v["label"]] = counts.get(v["label"], 0) + 1
            latest[v["label"]] = max(latest.get(v["label"], ("", 0)), (v["labelled_at"], v["seq"]))
        label = max(counts, key=lambda name: (counts[name], latest[name]))
        out.append(ResolvedLabel(task, text, label, counts, max(v["seq"] for v in vs)))
    return sorted(out, key=lambda r: r.seq)


# -- files ---------------------------------------------------------------------------------------
def read_label_file(path: Path) -> list[tuple[int | str, Any]]:
    """Rows of a ``.csv`` (header: task,label,text[,story_id,labeller,labelled_at]) or ``.jsonl`` file.

    Row names are what an editor shows: CSV rows count the header as row 1, JSONL lines from 1. A
    row that cannot be parsed (not JSON, a broken CSV row: ``monitor.core.csvfile``) comes back as
    :class:`Unreadable`, so :func:`validate_rows` names it with every other bad row. Raises
    ValueError naming the file for a file that cannot be read at all.
    """
    suffix = path.suffix.lower()
    rows: list[tuple[int | str, Any]] = []
    try:
        if suffix == ".csv":
            for line, row in iter_csv(path):
                if isinstance(row, str):
                    rows.append((line, Unreadable(row.split(": ", 1)[-1])))
                    continue
                if not rows and any(c not in row for c in ("task", "label")):
                    missing = [c for c in ("task", "label") if c not in row]
                    raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
                rows.append((line, {k: v for k, v in row.items() if k and v not in (None, "")}))
        elif suffix in (".jsonl", ".ndjson"):
            with path.open(encoding="utf-8") as fh:
                for i, text in enumerate(fh, start=1):
                    if not text.strip():
                        continue
                    try:
                        rows.append((i, json.loads(text)))
                    except ValueError as err:
                        rows.append((i, Unreadable(f"not JSON: {err}")))
        else:
            raise ValueError(f"{path}: expected a .csv or .jsonl file")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror or err}") from None
    if not rows:
        raise ValueError(f"{path}: no labels")
    return rows


EXPORT_FIELDS = ("task", "text", "label", "labeller", "item_id", "source", "labelled_at", "received_at")


def export_rows(store: LabelStore, resolved: bool) -> list[dict[str, Any]]:
    if resolved:
        return [{"task": r.task, "text": r.text, "label": r.label, "votes": r.votes} for r in store.resolved()]
    return [{k: v[k] for k in EXPORT_FIELDS} for v in store.votes()]


# -- HTTP ----------------------------------------------------------------------------------------
def _batch_rows(payload: Any) -> list[tuple[int | str, Any]]:
    if isinstance(payload, dict) and "labels" in payload and isinstance(payload["labels"], list):
        return list(enumerate(payload["labels"]))
    if isinstance(payload, list):
        return list(enumerate(payload))
    return [(0, payload)]


def _later(stored: str, incoming: datetime) -> bool:
    """The stored vote was cast after ``incoming``: ``incoming`` must not replace it."""
    try:
        return datetime.fromisoformat(stored) > incoming
    except (TypeError, ValueError):
        return False


class LabelPublisher:
    """Puts votes received over HTTP on the labels topic too, so every retrain instance (a standby
    pair, each reading the topic with its own group) stores them; this instance re-reads them as
    unchanged."""

    def __init__(self, bus: Bus, topic: str) -> None:
        self._bus = bus
        self._topic = topic
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def publish(self, votes: Sequence[Vote]) -> None:
        with self._lock:
            if self._producer is None:
                self._producer = self._bus.producer()
            deliveries = [
                self._producer.send(
                    self._topic,
                    LabelRecord(
                        task=v.task,  # type: ignore[arg-type]  # validated: sentiment or topic
                        text=v.text,
                        label=v.label,
                        item_id=v.item_id,
                        labeller=v.labeller,
                        labelled_at=v.labelled_at,
                    ).encode(),
                    key=vote_key(v.task, v.text, v.labeller),  # one key's votes stay in order
                )
                for v in votes
            ]
            self._producer.flush(timeout=30)
            for d in deliveries:
                d.get(timeout=30)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None


def vote_key(task: str, text: str, labeller: str) -> str:
    """The labels topic's record key of a vote: what the store keys votes by."""
    return hashlib.sha1(json.dumps([task, text, labeller]).encode()).hexdigest()


def default_label_group(state_dir: Path) -> str:
    """The label-intake consumer group of the label store in ``state_dir``: one per store (an id
    created once in ``state_dir/label-store.id``), so instances with stores of their own each read
    every label, and instances sharing a state directory share a store and a group."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "label-store.id"
    try:
        with path.open("x", encoding="utf-8") as fh:  # the first instance names the store
            fh.write(uuid.uuid4().hex[:12])
    except FileExistsError:
        pass
    store_id = ""
    for _ in range(50):  # another process may be between creating and writing it
        store_id = path.read_text(encoding="utf-8").strip()
        if store_id:
            break
        time.sleep(0.01)
    return f"finsent-labels.{store_id or 'unnamed'}"


def labels_router(store: LabelStore, lookup: StoryLookup, publisher: LabelPublisher | None = None) -> APIRouter:
    """``POST /labels``. Authentication is the daemon's (``monitor.app.auth``): a ``write``-scoped token;
    the token's name is kept in each vote's source (``http:<token name>``). Stored here at once, then
    published on the labels topic (``publisher``) for the other retrain instances."""
    router = APIRouter()

    @router.post("/labels")
    def post_labels(request: Request, payload: Any = Body(...)) -> JSONResponse:
        """One label (object), or a batch (list, or ``{"labels": [...]}``); all-or-nothing."""
        rows = _batch_rows(payload)
        if not rows:
            return JSONResponse({"detail": "no labels in the request"}, status_code=422)
        token = getattr(request.state, "token_name", None)
        try:
            votes = validate_rows(rows, f"http:{token}" if token else "http", lookup)
        except LabelBatchError as err:
            return JSONResponse(
                {
                    "detail": f"{len(err.errors)} of {err.total} labels invalid; nothing stored",
                    "errors": [{"row": e.row, "error": e.error} for e in err.errors],
                },
                status_code=422,
            )
        result = store.add(votes)
        if publisher is not None:
            try:
                publisher.publish(votes)
            except Exception as err:  # stored here; only the other instances miss them until re-sent
                log.warning("labels stored but not published on the labels topic", error=str(err), count=len(votes))
        log.info(
            "labels received",
            source="http",
            token=token,
            inserted=result.inserted,
            updated=result.updated,
            unchanged=result.unchanged,
        )
        return JSONResponse(
            {
                "received": len(votes),
                "inserted": result.inserted,
                "updated": result.updated,
                "unchanged": result.unchanged,
            }
        )

    return router


# -- the topic -----------------------------------------------------------------------------------
class LabelCollector:
    """Stage: labels topic -> :class:`LabelStore`, committing after each stored batch."""

    name = "labels"

    def __init__(
        self, topics: TopicSettings, bus: Bus, store: LabelStore, metrics: RetrainMetrics, group_id: str
    ) -> None:
        self._topics = topics
        self._group_id = group_id
        self._bus = bus
        self._store = store
        self._metrics = metrics
        self._ready = False

    def run(self, stop: threading.Event) -> None:
        bus = self._bus
        producer = bus.producer()
        dlq = DeadLetterSink(producer, self._topics.dlq, stage=self.name)
        reader = RecordReader(LabelRecord, dlq)
        consumer = bus.consumer([self._topics.labels], ConsumerOptions(group_id=self._group_id))
        self._ready = True
        try:
            while not stop.is_set():
                messages = consumer.poll(0.5)
                if not messages:
                    continue
                good = []
                for msg, rec in reader.iter_decoded(messages):
                    try:
                        canonical_label(rec.task, rec.label)
                    except ValueError as err:
                        dlq.reject_message(msg, f"label: {err}").get(timeout=30)
                        continue
                    good.append(rec)
                self._store.add(good, source="topic")
                if dlq.count:
                    self._metrics.label_dead_letters.inc(dlq.count)
                    dlq.count = 0
                consumer.commit(next_offsets(messages))
        finally:
            consumer.close()
            producer.close()

    def ready(self) -> tuple[bool, str]:
        return self._ready, "consuming labels" if self._ready else "starting"

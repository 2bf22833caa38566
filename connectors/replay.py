"""File replay: CSV or JSONL stories sent in event-time order at a speed factor.

Columns/keys: ``title`` (or ``text``) and ``published_at`` are required; ``url``, ``tickers``
(a list, or a string separated by commas, semicolons or spaces), ``source``, ``id``, ``body``
(or ``summary``) and ``language`` are optional. ``speed`` is event seconds per wall second
(``60`` = an hour per minute); ``0`` sends as fast as the broker acknowledges.

``loop`` starts over at the end (the demo feed). Each pass is a synthetic new stream: its ids get a
``~<pass anchor>`` suffix and its near-duplicate clusters a scope of their own, so passes neither
de-duplicate each other nor accumulate state (a pass forgets the previous pass's state). With
``clock: shifted`` event times are moved so that the first story of the first pass is "now" and
each pass follows the previous one: event time then advances ``speed`` times faster than the wall
clock, which is what makes the demo's trends move within a minute.

The file is streamed, never held whole: rows are read in file order and sorted by event time
within a window of the ``SORT_WINDOW`` most recent rows (a heap), so memory stays flat whatever
the file's size. A row older than one already sent (more than ``SORT_WINDOW`` rows out of place)
is sent at once, out of order, and counted (``out_of_order`` in the summary); the aggregator's
grace period absorbs small disorder. Sort a file that is badly out of order first
(``jq -s 'sort_by(.published_at)[]'``, ``sort``).
"""

from __future__ import annotations

import csv
import heapq
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from connectors.identity import story_id
from connectors.normalise import Draft, parse_time
from connectors.publisher import Publisher, PublishResult
from connectors.settings import FileSource
from connectors.text import clean_text
from monitor.core.bus.base import BusError
from monitor.core.csvfile import iter_csv
from monitor.core.records import utcnow

log = structlog.get_logger(__name__)

LOOP_GAP = timedelta(minutes=1)
"""Event time between the last story of a pass and the first of the next (shifted clock)."""
PUBLISH_RETRIES = 3
SORT_WINDOW = 2_000
"""Rows held at once to put the file in event-time order (see the module docstring)."""
CLOCK_SAVE_EVERY_S = 1.0
"""How often (wall seconds) a shifted-clock replay records how far its event time has got."""
FAST_CHUNKS_PER_CALL = 20
"""With ``speed: 0``, chunks given to one ``Publisher.publish`` call (a failed call is retried whole;
the stories it already delivered then count as duplicates and are not sent twice)."""


@dataclass
class Row:
    time: datetime
    draft: Draft


@dataclass
class BadRow:
    line: int
    payload: bytes
    reason: str


@dataclass
class ReplayStats:
    read: int = 0
    produced: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0
    passes: int = 0
    out_of_order: int = 0

    def summary(self) -> dict[str, Any]:
        out = {
            "read": self.read,
            "produced": self.produced,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "seconds": round(self.seconds, 3),
        }
        if self.out_of_order:
            out["out_of_order"] = self.out_of_order
        return out


_TICKER_SPLIT = re.compile(r"[,;\s|]+")


def _tickers(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int)) and str(v).strip()]
    if isinstance(value, str):
        return [t for t in _TICKER_SPLIT.split(value) if t]
    return []


def _str(value: Any) -> str | None:
    """Ids and tags may be numbers (``"id": 12345``); anything else that is not a string is absent."""
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    s = str(value).strip()
    return s or None


def _text(rec: dict[str, Any], name: str) -> str | None:
    """A text field: a string or absent; a number, list or object is an error (not its repr)."""
    value = rec.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string, got {type(value).__name__}")
    return value.strip() or None


def row_to_draft(rec: dict[str, Any], default_source: str) -> tuple[datetime, Draft]:
    """One record as (event time, draft); raises ValueError saying what is wrong."""
    title = _text(rec, "title") or _text(rec, "text")
    if not title:
        raise ValueError("missing 'title' (or 'text')")
    raw_time = rec.get("published_at")
    when = parse_time(raw_time)
    if when is None:
        raise ValueError(f"missing or unparseable 'published_at': {raw_time!r}")
    source = _str(rec.get("source")) or default_source
    given_meta = rec.get("meta")
    meta: dict = given_meta if isinstance(given_meta, dict) else {}
    draft = Draft(
        source=source,
        title=title,
        body=_text(rec, "body") or _text(rec, "summary"),
        url=_text(rec, "url"),
        guid=_str(rec.get("id")),
        published_at=when,
        tickers=_tickers(rec.get("tickers")),
        language=_str(rec.get("language")),
        meta={str(k): str(v) for k, v in meta.items()},
        raw=rec,
    )
    return when, draft


def _records(path: Path, fmt: str) -> Iterator[tuple[int, bytes, dict[str, Any] | str]]:
    """(line number, raw bytes, record or the reason it is unreadable)."""
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl"
    if fmt == "jsonl":
        with path.open("rb") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except RecursionError:
                    yield n, line.rstrip(b"\r\n"), f"line {n}: nested too deeply"
                    continue
                except (ValueError, UnicodeDecodeError) as err:
                    yield n, line.rstrip(b"\r\n"), f"line {n}: not JSON: {err}"
                    continue
                if not isinstance(rec, dict):
                    yield n, line.rstrip(b"\r\n"), f"line {n}: expected a JSON object"
                    continue
                yield n, line.rstrip(b"\r\n"), rec
        return
    dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    for n, rec in iter_csv(path, dialect, errors="replace"):  # strict: a bad row is named, its neighbours kept
        if isinstance(rec, str):
            yield n, f"csv row at line {n}".encode(), rec
            continue
        clean = {str(k).strip().lower(): v for k, v in rec.items() if k is not None}
        yield n, json.dumps(clean, ensure_ascii=False).encode("utf-8"), clean


def iter_file(path: Path, fmt: str, default_source: str) -> Iterator[Row | BadRow]:
    """The file's rows in file order, streamed: each a :class:`Row`, or a :class:`BadRow` saying why not."""
    for line, payload, rec in _records(path, fmt):
        if isinstance(rec, str):
            yield BadRow(line, payload, rec)
            continue
        try:
            when, draft = row_to_draft(rec, default_source)
        except (ValueError, RecursionError) as err:
            yield BadRow(line, payload, f"line {line}: {err}")
            continue
        draft.where = f"line {line}"
        yield Row(when, draft)


def in_event_time_order(
    rows: Iterable[Row | BadRow], window: int = SORT_WINDOW, late: Callable[[Row], None] | None = None
) -> Iterator[Row | BadRow]:
    """``rows`` sorted by event time (stable) within a heap of ``window`` rows; bad rows pass at
    once. A row older than one already yielded is yielded at once, after ``late(row)``."""
    heap: list[tuple[datetime, int, Row]] = []
    last: datetime | None = None
    for seq, row in enumerate(rows):
        if isinstance(row, BadRow):
            yield row
            continue
        if last is not None and row.time < last:
            if late is not None:
                late(row)
            yield row
            continue
        heapq.heappush(heap, (row.time, seq, row))
        if len(heap) > window:
            out = heapq.heappop(heap)[2]
            last = out.time
            yield out
    while heap:
        yield heapq.heappop(heap)[2]


class Replayer:
    def __init__(
        self,
        source: FileSource,
        publisher: Publisher,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.source = source
        self.publisher = publisher
        self._monotonic = monotonic
        self._now = now
        self.stats = ReplayStats()
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> ReplayStats:
        src = self.source
        self._stop = stop
        started = self._monotonic()
        log.info("replay started", source=src.name, path=str(src.path), speed=src.speed, loop=src.loop)
        if src.start_delay_s and stop.wait(src.start_delay_s):
            return self._finish(started)
        loop_prefix = f"loop:{src.name}@"
        if src.loop:
            self.publisher.state.forget_scope_prefix(loop_prefix)
        anchor = self._now()
        if src.clock == "shifted":
            # Event time never goes back, not even across restarts: downstream watermarks would
            # otherwise drop a restarted demo's stories as late.
            saved = self.publisher.state.get_value(self._clock_key)
            if saved:
                anchor = max(anchor, datetime.fromisoformat(saved))
        previous_scope: str | None = None
        first = True
        while not stop.is_set():
            scope = ""
            if src.loop:
                scope = f"{loop_prefix}{int(anchor.timestamp())}"
                if previous_scope:
                    self.publisher.state.forget_scope_prefix(previous_scope)
                previous_scope = scope
            end = self._pass(anchor, scope, stop, report_bad=first)
            first = False
            self.stats.passes += 1
            if not src.loop or end is None:
                break
            anchor = max(self._now(), end + LOOP_GAP)
        return self._finish(started)

    @property
    def _clock_key(self) -> str:
        return f"replay-clock:{self.source.name}"

    def _finish(self, started: float) -> ReplayStats:
        self.stats.seconds = self._monotonic() - started
        log.info("replay finished", source=self.source.name, **self.stats.summary(), passes=self.stats.passes)
        return self.stats

    def _pass(self, anchor: datetime, scope: str, stop: threading.Event, report_bad: bool) -> datetime | None:
        """One pass over the file, streamed; returns the (shifted) event time of its last story
        (None: the file has no usable row). Bad rows are rejected on the first pass only."""
        src = self.source
        speed = src.speed
        shifted = src.clock == "shifted"
        chunk = self.publisher.chunk_size if speed > 0 else self.publisher.chunk_size * FAST_CHUNKS_PER_CALL
        offset: timedelta | None = None
        t0: datetime | None = None
        wall0 = 0.0
        newest: datetime | None = None
        saved_at = self._monotonic()
        pending: list[Draft] = []

        def late(_: Row) -> None:
            self.stats.out_of_order += 1

        def flush() -> None:
            nonlocal saved_at
            if not pending:
                return
            self._send(list(pending), scope)
            pending.clear()
            if shifted and newest is not None and (self._monotonic() - saved_at >= CLOCK_SAVE_EVERY_S or stop.is_set()):
                self.publisher.state.set_value(self._clock_key, (newest + LOOP_GAP).isoformat())
                saved_at = self._monotonic()

        rows = in_event_time_order(iter_file(src.path, src.format, src.name), late=late if report_bad else None)
        for row in rows:
            if stop.is_set():
                break
            if isinstance(row, BadRow):
                if report_bad:
                    self.publisher.reject(src.name, row.payload, row.reason)
                    self.stats.read += 1
                    self.stats.rejected += 1
                continue
            if offset is None:
                offset = anchor - row.time if shifted else timedelta(0)
                t0, wall0 = row.time, self._monotonic()
            if speed > 0:
                due = wall0 + (row.time - t0).total_seconds() / speed  # type: ignore[operator]
                if pending and (len(pending) >= chunk or due > self._monotonic()):
                    flush()
                wait = due - self._monotonic()
                if wait > 0 and stop.wait(wait):
                    break
            elif len(pending) >= chunk:
                # As fast as possible: hand the publisher many chunks per call so that its
                # one-deep pipelining overlaps each chunk's acks with the next chunk's work
                # (one chunk per call would wait out a full round trip every chunk).
                flush()
            pending.append(self._draft(row, offset, scope))
            shifted_time = row.time + offset
            newest = shifted_time if newest is None else max(newest, shifted_time)
        if not stop.is_set():
            flush()
        if shifted and newest is not None:
            self.publisher.state.set_value(self._clock_key, (newest + LOOP_GAP).isoformat())
        return newest

    def _draft(self, row: Row, offset: timedelta, scope: str) -> Draft:
        d = row.draft
        if not scope and not offset:
            return d
        shifted = row.time + offset
        draft = Draft(**{**vars(d), "published_at": shifted, "meta": dict(d.meta)})
        if scope:
            base = story_id(source=d.source, title=clean_text(d.title), guid=d.guid, url=d.url, published_at=row.time)
            draft.id = f"{base}~{scope.rsplit('@', 1)[1]}"
            draft.meta["replay_scope"] = scope
        return draft

    def _send(self, drafts: list[Draft], scope: str) -> None:
        """Publish in file (event-time) order; the drafts may belong to several sources."""
        source = self.source.name
        result = PublishResult()
        for attempt in range(PUBLISH_RETRIES + 1):
            result = self.publisher.publish(source, drafts, scope=scope, live=False)
            self._count(result, first=attempt == 0)
            if not result.failed:
                break
            log.warning(
                "replay chunk not fully acknowledged; retrying",
                source=source,
                failed=result.failed,
                attempt=attempt + 1,
            )
            if self._stop.wait(min(2**attempt, 10)):
                break
        if result.failed and not self._stop.is_set():
            raise BusError(
                f"replay of {self.source.name}: {result.failed} stories not acknowledged: "
                f"{result.errors[0] if result.errors else ''}"
            )

    def _count(self, result: PublishResult, first: bool) -> None:
        if first:
            self.stats.read += result.read
            self.stats.duplicates += result.duplicates
            self.stats.rejected += result.rejected
        self.stats.produced += result.produced

"""A compacted changelog topic backing the aggregator's SQLite checkpoint.

The local file stays the fast path; the changelog lets *another* host take a partition over: on
assignment without a local checkpoint, the window stage reads changelog partition ``p`` (one per
repartition partition, same number) and restores windows, EWMA anchors, first-seen times, counted
ids, offset, watermark and upstream progress from it, instead of replaying the repartition topic
from its start (which retention may have cut).

Each flush writes, after the points are acknowledged and *before* the SQLite commit, one record
per changed row (tombstones for evicted windows and forgotten ids), then one ``partition`` record
(next offset, watermark, upstream sources) that closes the flush. A restore applies rows only up
to the last ``partition`` record, so a flush cut short by a crash is ignored (its input is
replayed from the offset that record names, and the stories are de-duplicated by id).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from monitor.core.bus.base import Message
from monitor.stages.checkpoint import PartitionCheckpoint, PartitionDelta, _sources_json, _sources_of


def changelog_topic(repartition: str) -> str:
    return f"{repartition}.changelog"


def _key(*parts: Any) -> bytes:
    return json.dumps(parts, separators=(",", ":")).encode()


def _value(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":")).encode()


def rows_of(delta: PartitionDelta) -> list[tuple[bytes, bytes | None]]:
    """The changelog records of one partition's checkpoint delta, closing ``partition`` record last."""
    s = delta.state
    rows: list[tuple[bytes, bytes | None]] = []
    for (k, w, start), agg in s.windows.items():
        rows.append((_key("w", k, w, start), _value(agg.to_json()) if agg is not None else None))
    rows.extend((_key("a", k, w), _value(e)) for (k, w), e in s.anchors.items())
    rows.extend((_key("f", k), _value(ts)) for k, ts in s.first_ts.items())
    rows.extend((_key("s", k, i), _value(ts)) for k, i, ts in s.seen_added)
    rows.extend((_key("s", k, i), None) for k, i in s.seen_removed)
    rows.append(
        (
            _key("p"),
            _value(
                {
                    "next_offset": delta.next_offset,
                    "watermark": delta.watermark,
                    "sources": _sources_json(delta.sources),
                }
            ),
        )
    )
    return rows


def restore(messages: Iterable[Message]) -> PartitionCheckpoint | None:
    """The checkpoint as of the last complete flush in ``messages`` (one changelog partition, in
    order); ``None`` when no flush was ever completed."""
    committed: dict[tuple, Any] = {}
    pending: dict[tuple, Any] = {}
    meta: dict[str, Any] | None = None
    for m in messages:
        if m.key is None:
            continue
        key = tuple(json.loads(m.key))
        value = json.loads(m.value) if m.value is not None else None
        if key == ("p",):
            committed.update(pending)
            pending.clear()
            meta = value
        else:
            pending[key] = value
    if meta is None:
        return None
    windows, anchors, first, seen = [], [], [], []
    for key, value in committed.items():
        if value is None:
            continue
        kind = key[0]
        if kind == "w":
            windows.append((key[1], key[2], value))
        elif kind == "a":
            anchors.append((key[1], key[2], value))
        elif kind == "f":
            first.append((key[1], value))
        elif kind == "s":
            seen.append((key[1], key[2], value))
    return PartitionCheckpoint(
        meta["next_offset"], meta["watermark"], windows, anchors, first, seen, _sources_of(meta["sources"])
    )

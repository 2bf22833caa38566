"""What a polled feed's next owner needs from its last one, kept on the feed-split topic.

Ingest instances split the polled feeds by slot (``monitor.core.bus.lease.GroupShare`` over
``topics.ingest_feeds``). The owner of a feed writes, after each poll that published stories, the
ids it published recently (the newest :data:`KEEP`) to that topic: key = the feed's name, in the
feed's slot partition, so the topic is compacted to one record per feed. An instance that gains a
feed reads that record first and remembers those ids as already published, so it does not publish
again what the last owner did (it adopts the feed after :data:`ADOPT_DELAY_S`, so that a poll
the last owner had in flight when the slot moved has written its record).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable

import structlog

from connectors.ingest_state import IngestState
from monitor.core.bus.base import Bus, Producer

log = structlog.get_logger(__name__)

KEEP = 300
"""Story ids kept per feed: more than a feed serves at once."""

ADOPT_DELAY_S = 2.0
"""A gained feed is first polled this long after the slot moved."""


class FeedHandover:
    def __init__(self, bus: Bus, topic: str, state: IngestState, slot: Callable[[str], int]) -> None:
        self._bus = bus
        self._topic = topic
        self._state = state
        self._slot = slot
        self._recent: dict[str, deque[str]] = {}
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def published(self, feed: str, ids: list[str]) -> None:
        """Record the ids a poll of ``feed`` published (after the broker acknowledged them)."""
        if not ids:
            return
        with self._lock:
            recent = self._recent.setdefault(feed, deque(maxlen=KEEP))
            recent.extend(ids)
            if self._producer is None:
                self._producer = self._bus.producer()
            value = json.dumps({"ids": list(recent)}, separators=(",", ":")).encode()
            self._producer.send(self._topic, value, key=feed, partition=self._slot(feed)).get(timeout=30)

    def adopt(self, feed: str) -> int:
        """Before the first poll of a gained ``feed``: what its last owner published counts as
        seen here. Returns how many ids were new to this instance."""
        ids: list[str] = []
        for m in self._bus.read_partition(self._topic, self._slot(feed)):
            if m.key is not None and m.key.decode() == feed:
                ids = list(json.loads(m.value)["ids"]) if m.value is not None else []
        with self._lock:
            self._recent[feed] = deque(ids, maxlen=KEEP)
        fresh = self._state.remember(ids)
        log.info("feed adopted", source=feed, published_by_last_owner=len(ids), new_here=fresh)
        return fresh

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None

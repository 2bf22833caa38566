"""RSS/Atom poller: conditional GET, feedparser, entries to drafts, drafts to news.raw.

A broken feed (timeout, 5xx after retries, size cap, malformed XML without entries) is logged and
counted in ``finsent_ingest_errors_total{kind}``; it never affects the other sources. Malformed XML
that still yields entries (feedparser's "bozo") is counted and its entries are kept.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from typing import Any

import feedparser
import structlog

from connectors.fetch import Fetcher, FetchError
from connectors.identity import resolve_url
from connectors.ingest_state import IngestState
from connectors.metrics import IngestMetrics
from connectors.normalise import Draft, sane_published
from connectors.publisher import Publisher, PublishResult
from connectors.settings import RssSource
from connectors.tickers import TickerExtractor
from monitor.core.records import utcnow

log = structlog.get_logger(__name__)

_DATE_FIELDS = ("published_parsed", "updated_parsed", "created_parsed")


def _entry_time(entry: Any) -> datetime | None:
    for name in _DATE_FIELDS:
        st = dict.get(entry, name)  # plain lookup: no feedparser fallback mapping (and its warning)
        if st:
            try:
                return datetime.fromtimestamp(calendar.timegm(st), tz=timezone.utc)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def entries_to_drafts(parsed: Any, source: RssSource, base_url: str, finder: TickerExtractor) -> list[Draft]:
    """feedparser entries as drafts: links resolved against the feed URL, dates in UTC (a missing
    or far-future date becomes the fetch time, noted in ``meta``), ``$TICKER`` categories kept."""
    now = utcnow()
    feed_language = (parsed.get("feed") or {}).get("language")
    drafts: list[Draft] = []
    for entry in parsed.entries:
        published, note = sane_published(_entry_time(entry), now)
        link = resolve_url(entry.get("link"), base_url)
        body = entry.get("summary") or ""
        if not body and entry.get("content"):
            body = entry["content"][0].get("value", "")
        tags = [t.get("term") or "" for t in entry.get("tags") or []]
        tickers = [t for tag in tags for t in finder.find(tag)]
        meta = {"feed": base_url}
        if note:
            meta["published_at"] = note
        raw = {k: dict.get(entry, k) for k in ("id", "title", "link", "published", "updated", "summary")}
        drafts.append(
            Draft(
                source=source.name,
                title=entry.get("title"),
                body=body,
                url=link,
                guid=entry.get("id") or None,
                published_at=published,
                tickers=tickers,
                language=source.language or feed_language,
                meta=meta,
                html=True,
                raw=raw,
            )
        )
    return drafts


class RssPoller:
    def __init__(
        self,
        source: RssSource,
        fetcher: Fetcher,
        state: IngestState,
        publisher: Publisher,
        metrics: IngestMetrics,
        finder: TickerExtractor,
    ) -> None:
        self.source = source
        self.fetcher = fetcher
        self.state = state
        self.publisher = publisher
        self.metrics = metrics
        self.finder = finder

    @property
    def name(self) -> str:
        return self.source.name

    def poll_once(self) -> PublishResult:
        """One fetch of the feed; never raises for a bad feed (logged and counted instead)."""
        src = self.source
        etag, last_modified = self.state.http_validators(src.name, src.url)
        try:
            with self.metrics.fetch_seconds.labels(src.name).time():
                res = self.fetcher.get(src.url, etag=etag, last_modified=last_modified)
        except FetchError as err:
            self.metrics.errors.labels(src.name, err.kind).inc()
            log.warning("feed fetch failed", source=src.name, kind=err.kind, error=str(err))
            return PublishResult(fetch_error=f"{err.kind}: {err}")
        if res.not_modified:
            self.metrics.not_modified.labels(src.name).inc()
            return PublishResult()
        parsed = feedparser.parse(
            res.body,
            response_headers={
                "content-type": res.headers.get("content-type", "application/xml"),
                "content-location": res.url,
            },
            sanitize_html=False,
            resolve_relative_uris=True,
        )
        if parsed.get("bozo"):
            self.metrics.errors.labels(src.name, "malformed").inc()
            log.warning(
                "malformed feed",
                source=src.name,
                entries=len(parsed.entries),
                error=str(parsed.get("bozo_exception", ""))[:200],
            )
            if not parsed.entries:
                return PublishResult(fetch_error="malformed feed")
        drafts = entries_to_drafts(parsed, src, res.url, self.finder)
        result = self.publisher.publish(src.name, drafts)
        if not result.failed:
            # Only remember the validators once everything was delivered, so a failed publish refetches.
            self.state.save_http_validators(
                src.name, src.url, res.headers.get("etag"), res.headers.get("last-modified")
            )
        log.info(
            "feed polled",
            source=src.name,
            entries=len(drafts),
            produced=result.produced,
            duplicates=result.duplicates,
            rejected=result.rejected,
        )
        return result

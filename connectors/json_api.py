"""HTTP JSON API poller with a declarative field mapping and page/cursor pagination."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import structlog

from connectors.fetch import Fetcher, FetchError
from connectors.identity import resolve_url
from connectors.metrics import IngestMetrics
from connectors.normalise import Draft, parse_time, sane_published
from connectors.publisher import Publisher, PublishResult
from connectors.settings import JsonApiSource
from monitor.core.records import utcnow

log = structlog.get_logger(__name__)

_MISSING = object()


def get_path(obj: Any, path: str | None) -> Any:
    """Follow a dotted path (``data.items``, ``links.0.href``); ``*`` maps the rest over a list.
    Returns None when any step is missing. An empty path is the object itself."""
    if path is None:
        return None
    if path == "":
        return obj
    parts = path.split(".")
    return _walk(obj, parts)


def _walk(obj: Any, parts: list[str]) -> Any:
    for i, part in enumerate(parts):
        if part == "*":
            if not isinstance(obj, list):
                return None
            rest = parts[i + 1 :]
            return [v for v in (_walk(x, rest) for x in obj) if v is not None]
        if isinstance(obj, dict):
            obj = obj.get(part, _MISSING)
        elif isinstance(obj, list) and part.lstrip("-").isdigit():
            idx = int(part)
            obj = obj[idx] if -len(obj) <= idx < len(obj) else _MISSING
        else:
            return None
        if obj is _MISSING:
            return None
    return obj


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.replace(";", ",").split(",")) if v]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int))]
    return []


def item_to_draft(item: Any, source: JsonApiSource, base_url: str) -> Draft:
    f = source.fields
    published, note = sane_published(parse_time(get_path(item, f.published_at)), utcnow())
    meta = {"api": source.url}
    if note:
        meta["published_at"] = note
    return Draft(
        source=source.name,
        title=_as_str(get_path(item, f.title)),
        body=_as_str(get_path(item, f.body)),
        url=resolve_url(_as_str(get_path(item, f.url)), base_url),
        guid=_as_str(get_path(item, f.id)),
        published_at=published,
        tickers=_as_list(get_path(item, f.tickers)),
        language=source.language or _as_str(get_path(item, f.language)),
        meta=meta,
        html=True,
        raw=item,
    )


class JsonApiPoller:
    def __init__(self, source: JsonApiSource, fetcher: Fetcher, publisher: Publisher, metrics: IngestMetrics) -> None:
        self.source = source
        self.fetcher = fetcher
        self.publisher = publisher
        self.metrics = metrics

    @property
    def name(self) -> str:
        return self.source.name

    def _headers(self) -> dict[str, str]:
        src = self.source
        if src.auth is None:
            return {}
        secret = src.auth.reveal()
        return {src.auth_header: f"{src.auth_scheme} {secret}".strip() if src.auth_scheme else secret}

    def _pages(self) -> Iterator[tuple[int, Any, str]]:
        """(page number, decoded JSON, final URL) for each page of this poll."""
        src, pg = self.source, self.source.pagination
        params = dict(src.params)
        headers = self._headers()
        page_no = pg.start
        for n in range(pg.max_pages):
            if pg.type == "page":
                params[pg.param] = str(page_no)
            with self.metrics.fetch_seconds.labels(src.name).time():
                res = self.fetcher.get(src.url, params=params, headers=headers)
            try:
                doc = json.loads(res.body)
            except RecursionError:
                raise FetchError("parse", f"{src.url}: JSON nested too deeply") from None
            except (ValueError, UnicodeDecodeError) as err:
                raise FetchError("parse", f"{src.url}: not JSON: {err}") from err
            yield n, doc, res.url
            if pg.type == "none":
                return
            if pg.type == "cursor":
                cursor = _as_str(get_path(doc, pg.next_cursor_path))
                if not cursor:
                    return
                params[pg.param] = cursor
            page_no += 1

    def poll_once(self) -> PublishResult:
        """Fetch up to ``max_pages`` pages; stop early at an empty page, at the end of the cursor
        chain, or (``stop_when_seen``) at a page holding nothing new. Never raises for a bad API."""
        src = self.source
        total = PublishResult()
        try:
            for _, doc, final_url in self._pages():
                items = get_path(doc, src.items_path)
                if not isinstance(items, list):
                    self.metrics.errors.labels(src.name, "parse").inc()
                    log.warning("no item list in API response", source=src.name, items_path=src.items_path)
                    break
                if not items:
                    break
                result = self.publisher.publish(src.name, [item_to_draft(it, src, final_url) for it in items])
                total.add(result)
                if result.failed:
                    break
                if src.pagination.stop_when_seen and result.produced == 0 and result.rejected < len(items):
                    break
        except FetchError as err:
            self.metrics.errors.labels(src.name, err.kind).inc()
            log.warning("API fetch failed", source=src.name, kind=err.kind, error=str(err))
            total.fetch_error = f"{err.kind}: {err}"
        except ValueError as err:  # e.g. the secret's environment variable is missing
            self.metrics.errors.labels(src.name, "config").inc()
            log.error("API poll misconfigured", source=src.name, error=str(err))
            total.fetch_error = f"config: {err}"
        log.info(
            "API polled", source=src.name, produced=total.produced, duplicates=total.duplicates, rejected=total.rejected
        )
        return total

"""From what a connector read (a :class:`Draft`) to a clean :class:`NewsItem`, or a reason why not."""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from connectors.identity import story_id
from connectors.text import clean_text, guess_language, html_to_text
from connectors.tickers import TickerExtractor
from monitor.core.records import NewsItem, utcnow

MAX_TITLE_CHARS = 1_000
MAX_BODY_CHARS = 20_000
TICKER_SCAN_CHARS = 2_000
"""Tickers are looked for in the title and the first this many characters of the body."""
_PARTIAL_WORD = re.compile(r"\w+\Z")


def ticker_scan(body: str) -> str:
    """The start of ``body`` searched for tickers: its first ``TICKER_SCAN_CHARS`` characters, less
    a word cut in two at the end (so "Applebee's" cut after "Apple" is not Apple). A prefix of
    ``body``, so mention offsets index ``body`` itself."""
    if len(body) <= TICKER_SCAN_CHARS:
        return body
    scan = body[:TICKER_SCAN_CHARS]
    if body[TICKER_SCAN_CHARS].isalnum() or body[TICKER_SCAN_CHARS] == "_":
        scan = _PARTIAL_WORD.sub("", scan)
    return scan


@dataclass
class Draft:
    """A story as a connector read it, before clean-up and identity."""

    source: str
    title: str | None
    body: str | None = None
    url: str | None = None
    guid: str | None = None
    published_at: datetime | None = None
    tickers: Sequence[str] = ()
    language: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    html: bool = False
    """Title and body may hold HTML (feeds): strip tags rather than just clean whitespace."""
    id: str | None = None
    """An id fixed by the connector (replay loops); else derived by :func:`story_id`."""
    raw: Any = None
    """The original input, kept for the dead-letter payload."""
    where: str | None = None
    """Where the input came from (``line 3`` of a replayed file), named when it is rejected."""

    def payload(self) -> bytes:
        """The original input as bytes for the dead-letter topic."""
        raw = self.raw
        if isinstance(raw, bytes):
            return raw
        if isinstance(raw, str):
            return raw.encode("utf-8", "backslashreplace")  # a lone surrogate must not lose the row
        if raw is None:
            raw = {k: v for k, v in vars(self).items() if k not in ("raw", "html")}
        try:
            return json.dumps(raw, default=str, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: JSON's own \uXXXX escapes keep them readable
            return json.dumps(raw, default=str, ensure_ascii=True).encode("ascii")


class Rejected(ValueError):
    """The draft cannot become a NewsItem; the message says why (it goes to the DLQ)."""


def parse_time(value: Any) -> datetime | None:
    """ISO 8601, RFC 2822 or epoch seconds/milliseconds to an aware UTC datetime; None if unknown.

    Naive times are taken as UTC.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, bool):
        return None
    elif isinstance(value, (int, float)) or (isinstance(value, str) and _is_number(value)):
        try:
            n = float(value)  # a 400-digit integer does not fit a float: not a time
            if n > 1e11:  # milliseconds
                n /= 1000.0
            dt = datetime.fromtimestamp(n, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        s = value.strip()
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith(("Z", "z")) else s)
        except ValueError:
            try:
                dt = email.utils.parsedate_to_datetime(s)
            except (TypeError, ValueError, IndexError):
                return None
            if dt is None:
                return None
    else:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00: no such UTC date
        return None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def sane_published(
    published: datetime | None, now: datetime, max_future: timedelta = timedelta(hours=1)
) -> tuple[datetime, str | None]:
    """For live feeds: a missing date becomes ``now``; one far in the future (a time-zone bug) is
    clamped to ``now``. Returns the time and a note for ``meta['published_at']`` when changed."""
    if published is None:
        return now, "missing"
    if published > now + max_future:
        return now, "future-clamped"
    return published, None


class Normaliser:
    """Cleans text, assigns the stable id, tags the language and extracts tickers."""

    def __init__(
        self,
        tickers: TickerExtractor,
        default_language: str = "en",
        source_tickers: Mapping[str, Sequence[str]] | None = None,
        source_languages: Mapping[str, str | None] | None = None,
    ) -> None:
        self.tickers = tickers
        self.default_language = default_language
        self.source_tickers = dict(source_tickers or {})
        self.source_languages = dict(source_languages or {})

    def build(self, draft: Draft, fetched_at: datetime | None = None) -> NewsItem:
        fetched_at = fetched_at or utcnow()
        clean = html_to_text if draft.html else clean_text
        title = clean(draft.title if isinstance(draft.title, str) else None)
        if not title:
            raise Rejected("missing title")
        title = title[:MAX_TITLE_CHARS]
        body = clean(draft.body if isinstance(draft.body, str) else None)[:MAX_BODY_CHARS]
        if body == title:
            body = ""
        meta = {str(k): str(v) for k, v in draft.meta.items()}
        published = draft.published_at
        if published is None:
            published = fetched_at
            meta.setdefault("published_at", "missing")
        item_id = draft.id or story_id(
            source=draft.source, title=title, guid=draft.guid, url=draft.url, published_at=draft.published_at
        )
        language = (
            draft.language
            or self.source_languages.get(draft.source)
            or guess_language(f"{title} {body[:500]}", self.default_language)
        )
        explicit = [*draft.tickers, *self.source_tickers.get(draft.source, ())]
        tickers, mentions = self.tickers.mentions(explicit, title, ticker_scan(body))
        try:
            return NewsItem(
                id=item_id[:256],
                source=draft.source,
                url=draft.url,
                title=title,
                body=body,
                published_at=published,
                fetched_at=fetched_at,
                tickers=tickers,
                mentions=mentions,
                language=_language_tag(language, self.default_language),
                meta=meta,
            )
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:3])
            raise Rejected(f"invalid story: {problems}") from None


def _language_tag(value: str, default: str) -> str:
    """``en-US`` -> ``en``; anything odd -> ``default``."""
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else default

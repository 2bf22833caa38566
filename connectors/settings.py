"""Config section owned by the connectors (``connectors``).

Sources are a list discriminated by ``type`` (``rss``, ``json_api``, ``webhook``, ``file``).
By default (``demo: true``) the bundled demo feed is replayed in a loop so that ``finsent run``
shows moving trends out of the box; set ``demo: false`` (or ``FINSENT_CONNECTORS__DEMO=false``)
to ingest only the configured sources.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.tickers import MAX_ALIAS_CHARS, clean_alias, clean_ticker, default_aliases, load_alias_table
from monitor.core.secrets import http_url_problem
from monitor.core.section import Section

DEMO_FEED = Path(__file__).resolve().parent / "demo" / "demo_feed.jsonl"
DEMO_SOURCE_NAME = "demo-wire"

SourceName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class Secret(Section):
    """A secret given inline (``value``) or by the name of an environment variable (``env``)."""

    value: SecretStr | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Secret:
        if (self.value is None) == (self.env is None):
            raise ValueError("give exactly one of 'value' or 'env'")
        return self

    def problem(self) -> str | None:
        """Why the secret cannot be revealed (an unset environment variable), else None."""
        try:
            self.reveal()
        except ValueError as err:
            return str(err)
        return None

    def reveal(self) -> str:
        if self.value is not None:
            return self.value.get_secret_value()
        got = os.environ.get(self.env or "")
        if not got:
            raise ValueError(f"environment variable {self.env!r} holding the secret is not set")
        return got


class _SourceBase(Section):
    name: SourceName
    enabled: bool = True
    tickers: list[str] = Field(default_factory=list, description="tickers attached to every story of this source")
    language: str | None = Field(default=None, description="force a language tag instead of guessing it")


class HttpSourceBase(_SourceBase):
    url: str = Field(pattern=r"^https?://", description="http(s)://HOST[:PORT]/...")
    interval_s: float = Field(default=300.0, gt=0, description="polling interval")
    timeout_s: float = Field(default=10.0, gt=0, description="connect/read timeout per request")
    retries: int = Field(default=3, ge=0, description="retries after the first attempt on timeouts, 429 and 5xx")
    backoff_s: float = Field(default=1.0, ge=0, description="first retry delay; doubles each retry, with jitter")
    backoff_max_s: float = Field(default=30.0, ge=0)
    max_bytes: int = Field(default=5_000_000, ge=1024, description="abort a response body past this many bytes")
    max_redirects: int = Field(default=5, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)
    failure_backoff_max_s: float = Field(
        default=3600.0,
        gt=0,
        description="a source failing poll after poll is polled at interval * 2^failures, at most this far apart",
    )
    user_agent: str = "finsent/0.1 (+https://github.com/finsent/finsent)"

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if problem := http_url_problem(v):
            raise ValueError(problem)  # the error line shows the URL once, its credentials masked
        return v


class RssSource(HttpSourceBase):
    """An RSS 0.9x/1.0/2.0 or Atom feed, fetched with conditional GET."""

    type: Literal["rss"] = "rss"


class Pagination(Section):
    type: Literal["none", "page", "cursor"] = "none"
    param: str = Field(default="page", description="query parameter carrying the page number or cursor")
    start: int = Field(default=1, description="first page number (page pagination)")
    next_cursor_path: str = Field(default="next_cursor", description="path of the next cursor in the response")
    max_pages: int = Field(default=5, ge=1, description="pages fetched per poll at most")
    stop_when_seen: bool = Field(default=True, description="stop paging once a whole page was already seen")


class FieldMap(Section):
    """Where each story field lives inside one item (dotted paths, ``*`` maps over a list)."""

    id: str | None = None
    title: str = "title"
    body: str | None = "body"
    url: str | None = "url"
    published_at: str | None = "published_at"
    tickers: str | None = "tickers"
    language: str | None = None


class JsonApiSource(HttpSourceBase):
    """An HTTP JSON API polled with a declarative field mapping."""

    type: Literal["json_api"] = "json_api"
    items_path: str = Field(default="items", description="dotted path of the list of items ('' = the root)")
    fields: FieldMap = Field(default_factory=FieldMap)
    params: dict[str, str] = Field(default_factory=dict)
    pagination: Pagination = Field(default_factory=Pagination)
    auth_header: str = "Authorization"
    auth_scheme: str = Field(default="Bearer", description="prefix before the secret ('' = the bare secret)")
    auth: Secret | None = None


class WebhookSource(_SourceBase):
    """Stories pushed to ``POST /ingest/{name}``, authenticated by a shared secret."""

    type: Literal["webhook"] = "webhook"
    auth: Literal["hmac", "bearer"] = "hmac"
    secret: Secret
    signature_header: str = Field(
        default="X-Finsent-Signature", description="'t=<unix seconds>,v1=<hex HMAC-SHA256 of t.body>'"
    )
    tolerance_s: float = Field(
        default=300.0, gt=0, le=86_400, description="reject signatures whose timestamp is further from now"
    )
    legacy_body_hmac: bool = Field(
        default=False,
        description="also accept the old body-only 'sha256=<hex>' signature: it has no timestamp, so a captured "
        "request can be replayed; only for senders that cannot sign timestamps",
    )
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    max_items: int = Field(default=1000, ge=1)


class FileSource(_SourceBase):
    """A CSV or JSONL file replayed in event-time order."""

    type: Literal["file"] = "file"
    path: Path
    format: Literal["auto", "jsonl", "csv"] = "auto"
    speed: float = Field(default=0.0, ge=0, description="event seconds per wall second; 0 = as fast as possible")
    loop: bool = Field(default=False, description="start over at the end (demo); each pass gets fresh ids")
    clock: Literal["original", "shifted"] = Field(
        default="original",
        description="'shifted' moves event times so the first story is 'now' and passes follow each other",
    )
    start_delay_s: float = Field(default=0.0, ge=0)


Source = Annotated[RssSource | JsonApiSource | WebhookSource | FileSource, Field(discriminator="type")]


class DedupSettings(Section):
    ttl_hours: float = Field(default=48.0, gt=0, description="how long seen ids and titles are remembered")
    max_entries: int = Field(
        default=100_000,
        ge=1_000,
        description="at most this many ids (and as many title clusters) are remembered; beyond it the oldest are "
        "forgotten before ttl_hours (about 2.5 KiB of memory each, id and title together)",
    )
    near_duplicate_threshold: float = Field(
        default=0.8,
        gt=0,
        le=1.0,
        description="Jaccard similarity of title words above which stories are near-duplicates",
    )
    min_novelty: float = Field(
        default=0.0,
        ge=0,
        le=1.0,
        description="near-duplicates whose novelty (1/(1+earlier copies)) falls below this are dropped",
    )
    db_name: str = "connectors.db"


class ConnectorsSettings(Section):
    demo: bool = Field(default=True, description="replay the bundled demo feed in a loop (turn off in production)")
    demo_speed: float = Field(default=120.0, gt=0, description="demo replay speed: 120 = two hours per minute")
    sources: list[Source] = Field(default_factory=list)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    alias_table: str = Field(
        default="default",
        description="company names -> tickers: 'default' = the table shipped with finsent (connectors/data/"
        "aliases.csv, large US and European companies), 'none' = no table, else the path of a CSV "
        "in the same format (header 'alias,ticker', then one alias a row)",
    )
    aliases: dict[str, str | None] = Field(
        default_factory=dict,
        description="company name -> ticker, e.g. {'Acme Corp': 'ACME'} (case-sensitive, whole words); extends "
        "alias_table and wins over it; a name mapped to null is removed from the table",
    )
    default_language: str = "en"
    max_tickers: int = Field(default=8, ge=1)
    chunk_size: int = Field(default=500, ge=1, description="stories sent per producer flush")
    feed_slots: int = Field(
        default=12,
        ge=1,
        le=1000,
        description="slots (partitions of topics.ingest_feeds, set when the topic is created) that split the "
        "polled sources among ingest instances: a source belongs to the slot its name hashes to",
    )
    ack_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for name, ticker in v.items():
            alias = clean_alias(name)
            if not alias or (ticker is not None and not ticker.strip()):
                raise ValueError("alias names and tickers must be non-empty (map a name to null to remove it)")
            if len(alias) > MAX_ALIAS_CHARS:
                raise ValueError(f"alias {alias[:40]!r}...: longer than {MAX_ALIAS_CHARS} characters")
            if not any(c.isalnum() for c in alias):
                raise ValueError(f"alias {alias!r} has no letter or digit")
            if ticker is None:
                out[alias] = None
                continue
            symbol = clean_ticker(ticker)
            if symbol is None or ":" in ticker or ticker.strip().startswith("$"):
                raise ValueError(f"alias {alias!r}: {ticker!r} is not a ticker symbol (like AAPL, BRK.B, NOVO-B)")
            out[alias] = symbol
        return out

    @field_validator("alias_table")
    @classmethod
    def _alias_table(cls, v: str) -> str:
        v = v.strip()
        if v.lower() in ("default", "none"):
            return v.lower()
        if not v:
            raise ValueError("give 'default', 'none' or the path of an alias table CSV")
        load_alias_table(Path(v).expanduser())  # AliasTableError (a ValueError) names the file and line
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> ConnectorsSettings:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        if self.demo and DEMO_SOURCE_NAME in names:
            raise ValueError(f"source name {DEMO_SOURCE_NAME!r} is reserved for the demo feed")
        return self

    def problems(self) -> list[str]:
        """Secrets that cannot be revealed, one line each: refused by ``check-config`` and at start."""
        out = []
        for i, s in enumerate(self.sources):
            secret = s.secret if isinstance(s, WebhookSource) else getattr(s, "auth", None)
            if s.enabled and isinstance(secret, Secret) and (problem := secret.problem()):
                field = "secret" if isinstance(s, WebhookSource) else "auth"
                out.append(f"connectors.sources.{i}.{field} (source {s.name!r}): {problem}")
        return out

    def alias_map(self) -> dict[str, str]:
        """The alias table in use: ``alias_table`` (read now), extended and overridden by ``aliases``."""
        if self.alias_table == "none":
            table: dict[str, str] = {}
        elif self.alias_table == "default":
            table = default_aliases()
        else:
            table = load_alias_table(Path(self.alias_table).expanduser())
        if self.demo and self.alias_table == "default":  # the demo feed's fictional companies
            table.update(DEMO_ALIASES)
        for name, ticker in self.aliases.items():
            if ticker is None:
                table.pop(name, None)
            else:
                table[name] = ticker
        return table

    def active_sources(self) -> list[RssSource | JsonApiSource | WebhookSource | FileSource]:
        """The enabled sources, plus the demo feed replay when ``demo`` is on."""
        out: list[RssSource | JsonApiSource | WebhookSource | FileSource] = [s for s in self.sources if s.enabled]
        if self.demo:
            out.append(demo_source(self.demo_speed))
        return out


DEMO_ALIASES = {"Halvorsen Bancorp": "HLVB", "Halvorsen": "HLVB"}
"""Names of the demo feed's fictional companies, added to the default alias table while ``demo`` is on."""


def demo_source(speed: float) -> FileSource:
    return FileSource(name=DEMO_SOURCE_NAME, path=DEMO_FEED, speed=speed, loop=True, clock="shifted")

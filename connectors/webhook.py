"""Push receiver: ``POST /ingest/{source}`` for systems that send stories to finsent.

The body is one story, a JSON list of stories, or ``{"items": [...]}``. It is authenticated with
the source's shared secret, either a timestamped signature in ``X-Finsent-Signature``
(``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t." + raw body>``, the scheme finsent's own outbound
webhooks use, :mod:`monitor.core.signing`) or ``Authorization: Bearer <secret>``. A signature is
accepted only within ``tolerance_s`` of its timestamp and only once: a replay cache reserves a
valid signature before anything is awaited (copies sent at the same time, on other connections,
are replays) and keeps it for the tolerance window once the request is accepted (later copies are
stale); a request that then fails (422, 503) frees it for the sender's retry. A header that is not
``t=<at most 12 digits>,v1=<64 hex digits>`` is a 401 saying so. The old
body-only ``sha256=<hex>`` HMAC is accepted only with ``legacy_body_hmac: true``. The answer is
``202`` only once every story is acknowledged by the broker (or recognised as a duplicate);
``503`` means retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connectors.metrics import IngestMetrics
from connectors.normalise import Draft
from connectors.publisher import Publisher
from connectors.settings import WebhookSource
from monitor.core import signing
from monitor.core.records import UtcDatetime

log = structlog.get_logger(__name__)


class WebhookStory(BaseModel):
    """One pushed story. ``title`` (or ``text``) is required; ``published_at`` defaults to now."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=256, description="the sender's stable id")
    title: str | None = Field(default=None, max_length=2000)
    text: str | None = Field(default=None, max_length=2000, description="alias of title")
    body: str = Field(default="", max_length=100_000)
    url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=4096)
    published_at: UtcDatetime | None = None
    tickers: list[str] = Field(default_factory=list, max_length=50)
    language: str | None = Field(default=None, max_length=16)
    meta: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_title(self) -> WebhookStory:
        if not (self.title or self.text or "").strip():
            raise ValueError("a story needs a non-empty 'title' (or 'text')")
        return self


class WebhookBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[WebhookStory] = Field(min_length=1)


class IngestAccepted(BaseModel):
    source: str
    received: int
    produced: int
    duplicates: int
    rejected: int = Field(description="stories that failed normalisation (sent to the dead-letter topic)")
    ids: list[str] = Field(description="ids of the stories produced")


class ErrorBody(BaseModel):
    detail: Any


class ReplayCache:
    """Signatures of accepted requests, each remembered until its timestamp leaves the tolerance
    window (after that the timestamp check rejects it anyway). Bounded: the oldest go first."""

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._seen:
            key, until = next(iter(self._seen.items()))
            if until > now and len(self._seen) <= self._max:
                break
            del self._seen[key]

    def seen(self, key: str) -> bool:
        with self._lock:
            self._expire(self._clock())
            return key in self._seen

    def reserve(self, key: str, until: float) -> bool:
        """Remember ``key`` until ``until``; False (and nothing changed) when it is already held.
        Check and record are one step: of concurrent copies of a request exactly one gets True."""
        with self._lock:
            self._expire(self._clock())
            if key in self._seen:
                return False
            self._seen[key] = until
            return True

    def release(self, key: str) -> None:
        """Forget a reserved key (its request failed; the sender may retry it)."""
        with self._lock:
            self._seen.pop(key, None)

    def add(self, key: str, until: float) -> None:
        with self._lock:
            self._seen[key] = until
            self._seen.move_to_end(key)
            self._expire(self._clock())


_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_MAC = re.compile(r"[0-9a-fA-F]{64}")


def _malformed(header: str) -> str | None:
    """Why a ``t=...,v1=...`` header cannot be a signature (None when its shape is right): the
    timestamp is at most 12 ASCII digits, each ``v1`` is 64 hex digits."""
    parts = [item.strip().partition("=") for item in header.split(",")]
    stamps = [v for k, sep, v in parts if sep and k == "t"]
    macs = [v for k, sep, v in parts if sep and k == "v1"]
    if not stamps or not _TIMESTAMP.fullmatch(stamps[0]):
        return "malformed signature header: t must be unix seconds (at most 12 digits)"
    if not macs or not all(_HEX_MAC.fullmatch(m) for m in macs):
        return "malformed signature header: v1 must be 64 hex digits (HMAC-SHA256 of t.body)"
    return None


def verify(
    source: WebhookSource,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    replays: ReplayCache | None = None,
) -> tuple[str | None, str | None]:
    """``(problem, replay key)``: problem is None when the request is authentic, else what is wrong
    (for the 401 message); the replay key identifies an accepted signature (None for bearer). With
    ``replays``, the key is reserved there: release it (:meth:`ReplayCache.release`) if the request
    is then refused, so that the sender can retry it."""
    secret = source.secret.reveal().encode("utf-8")  # checked at start (ConnectorsSettings.problems)
    if source.auth == "bearer":
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "missing 'Authorization: Bearer <token>' header", None
        if not hmac.compare_digest(token.strip().encode("utf-8"), secret):
            return "invalid bearer token", None
        return None, None
    given = headers.get(source.signature_header.lower(), "").strip()
    if not given:
        return f"missing {source.signature_header} header (t=<unix seconds>,v1=<hex HMAC-SHA256 of t.body>)", None
    if given.lower().startswith("sha256="):
        if not source.legacy_body_hmac:
            return (
                "body-only 'sha256=' signatures are not accepted (no timestamp, replayable); sign "
                "'t=<unix seconds>,v1=<hex HMAC-SHA256 of t.body>' or set legacy_body_hmac"
            ), None
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given[7:].lower().encode("ascii", "replace"), expected.encode("ascii")):
            return "signature does not match the body", None
        return None, None
    if malformed := _malformed(given):
        return malformed, None
    current = time.time() if now is None else now
    try:
        t = signing.verify(secret, given, body, now=current, tolerance_s=source.tolerance_s)
    except signing.SignatureError as err:
        return str(err), None
    except (ValueError, TypeError, OverflowError):  # a shape _malformed let through: still the sender's fault
        return "malformed signature header", None
    key = f"{source.name}:{t}:{hmac.new(secret, f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"
    if replays is not None and not replays.reserve(key, until=max(current, t) + source.tolerance_s + 1):
        return "signature already used (replayed request); sign each request afresh", None
    return None, key


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Finsent-Signature`` value for ``body`` (for senders and tests)."""
    return signing.sign(secret, body, timestamp)


def parse_stories(data: Any) -> list[WebhookStory]:
    """One story, a list, or ``{"items": [...]}``; raises ValidationError (or ValueError)."""
    if isinstance(data, list):
        if not data:
            raise ValueError("empty list: nothing to ingest")
        return WebhookBatch(items=data).items
    if isinstance(data, dict) and "items" in data:
        return WebhookBatch.model_validate(data).items
    if isinstance(data, dict):
        return [WebhookStory.model_validate(data)]
    raise ValueError("expected a JSON object (a story or {'items': [...]}) or a list of stories")


def _errors(err: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors()[:20]]


def story_to_draft(story: WebhookStory, source: WebhookSource) -> Draft:
    return Draft(
        source=source.name,
        title=story.title or story.text,
        body=story.body,
        url=story.url,
        guid=story.id,
        published_at=story.published_at,
        tickers=story.tickers,
        language=story.language or source.language,
        meta={**story.meta, "via": "webhook"},
        html=True,
        raw=story.model_dump(mode="json", exclude_none=True),
    )


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise HTTPException(413, f"body larger than {cap} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise HTTPException(413, f"body larger than {cap} bytes")
        parts.append(chunk)
    return b"".join(parts)


def build_webhook_router(
    sources: list[WebhookSource],
    publisher: Publisher,
    metrics: IngestMetrics,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    problems = [f"webhook source {s.name!r}: {p}" for s in sources if (p := s.secret.problem())]
    if problems:
        raise ValueError("; ".join(problems))
    by_name = {s.name: s for s in sources}
    replays = ReplayCache(clock=clock)
    router = APIRouter(tags=["ingest"])

    @router.post(
        "/ingest/{source}",
        status_code=202,
        response_model=IngestAccepted,
        responses={
            401: {"model": ErrorBody},
            404: {"model": ErrorBody},
            413: {"model": ErrorBody},
            422: {"model": ErrorBody},
            503: {"model": ErrorBody},
        },
        summary="Push one story or a batch; 202 once they are durably on news.raw",
    )
    async def ingest(source: str, request: Request) -> Any:
        cfg = by_name.get(source)
        if cfg is None:
            raise HTTPException(404, f"no webhook source named {source!r} is configured")
        body = await _read_capped(request, cfg.max_body_bytes)
        problem, replay_key = verify(
            cfg, body, {k.lower(): v for k, v in request.headers.items()}, now=clock(), replays=replays
        )
        if problem:
            metrics.errors.labels(source, "auth").inc()
            headers = {"WWW-Authenticate": "Bearer"} if cfg.auth == "bearer" else None
            raise HTTPException(401, problem, headers=headers)
        answer: Any = None
        try:
            answer = await accept(cfg, body)
            return answer
        finally:
            if replay_key and not isinstance(answer, IngestAccepted):
                replays.release(replay_key)  # refused or failed: the sender may send it again

    async def accept(cfg: WebhookSource, body: bytes) -> Any:
        """The stories of an authenticated push: 202 once produced, else the 4xx/503 saying why."""
        source = cfg.name
        try:
            data = json.loads(body)
        except RecursionError:
            metrics.errors.labels(source, "bad_request").inc()
            return JSONResponse({"detail": "body is nested too deeply"}, status_code=422)
        except (ValueError, UnicodeDecodeError) as err:
            metrics.errors.labels(source, "bad_request").inc()
            return JSONResponse({"detail": f"body is not valid JSON: {err}"}, status_code=422)
        try:
            stories = parse_stories(data)
        except ValidationError as err:
            metrics.errors.labels(source, "bad_request").inc()
            return JSONResponse({"detail": _errors(err)}, status_code=422)
        except ValueError as err:
            metrics.errors.labels(source, "bad_request").inc()
            return JSONResponse({"detail": str(err)}, status_code=422)
        if len(stories) > cfg.max_items:
            metrics.errors.labels(source, "bad_request").inc()
            return JSONResponse({"detail": f"at most {cfg.max_items} stories per request"}, status_code=413)
        drafts = [story_to_draft(s, cfg) for s in stories]
        result = await run_in_threadpool(publisher.publish, source, drafts)
        if result.failed:
            return JSONResponse(
                {
                    "detail": f"{result.failed} of {len(stories)} stories were not acknowledged by the broker; "
                    "retry the request (stories already delivered are de-duplicated)"
                },
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return IngestAccepted(
            source=source,
            received=len(stories),
            produced=result.produced,
            duplicates=result.duplicates,
            rejected=result.rejected,
            ids=result.ids,
        )

    return router

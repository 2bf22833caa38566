"""Push receiver: ``POST /ingest/{source}`` for systems that send stories to finsent.

The body is one story, a JSON list of stories, or ``{"items": [...]}``. It is authenticated with
the source's shared secret, either an HMAC-SHA256 of the raw body in ``X-Finsent-Signature``
(``sha256=<hex>``) or ``Authorization: Bearer <secret>``. The answer is ``202`` only once every
story is acknowledged by the broker (or recognised as a duplicate); ``503`` means retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
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

log = structlog.get_logger(__name__)


class WebhookStory(BaseModel):
    """One pushed story. ``title`` (or ``text``) is required; ``published_at`` defaults to now."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=256, description="the sender's stable id")
    title: str | None = Field(default=None, max_length=2000)
    text: str | None = Field(default=None, max_length=2000, description="alias of title")
    body: str = Field(default="", max_length=100_000)
    url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=4096)
    published_at: datetime | None = None
    tickers: list[str] = Field(default_factory=list, max_length=50)
    language: str | None = Field(default=None, max_length=16)
    meta: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_title(self) -> "WebhookStory":
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


def verify(source: WebhookSource, body: bytes, headers: Mapping[str, str]) -> str | None:
    """None when the request is authentic, else what is wrong (for the 401 message)."""
    try:
        secret = source.secret.reveal().encode("utf-8")
    except ValueError as err:
        log.error("webhook secret unavailable", source=source.name, error=str(err))
        return "receiver misconfigured: secret unavailable"
    if source.auth == "bearer":
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "missing 'Authorization: Bearer <token>' header"
        if not hmac.compare_digest(token.strip().encode("utf-8"), secret):
            return "invalid bearer token"
        return None
    given = headers.get(source.signature_header.lower(), "").strip()
    if not given:
        return f"missing {source.signature_header} header (sha256=<hex HMAC-SHA256 of the body>)"
    if given.lower().startswith("sha256="):
        given = given[7:]
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.lower().encode("ascii", "replace"), expected.encode("ascii")):
        return "signature does not match the body"
    return None


def sign(secret: str, body: bytes) -> str:
    """The ``X-Finsent-Signature`` value for ``body`` (for senders and tests)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


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


def build_webhook_router(sources: list[WebhookSource], publisher: Publisher, metrics: IngestMetrics) -> APIRouter:
    by_name = {s.name: s for s in sources}
    router = APIRouter(tags=["ingest"])

    @router.post(
        "/ingest/{source}",
        status_code=202,
        response_model=IngestAccepted,
        responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 413: {"model": ErrorBody},
                   422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
        summary="Push one story or a batch; 202 once they are durably on news.raw",
    )
    async def ingest(source: str, request: Request) -> Any:
        cfg = by_name.get(source)
        if cfg is None:
            raise HTTPException(404, f"no webhook source named {source!r} is configured")
        body = await _read_capped(request, cfg.max_body_bytes)
        problem = verify(cfg, body, {k.lower(): v for k, v in request.headers.items()})
        if problem:
            metrics.errors.labels(source, "auth").inc()
            headers = {"WWW-Authenticate": "Bearer"} if cfg.auth == "bearer" else None
            raise HTTPException(401, problem, headers=headers)
        try:
            data = json.loads(body)
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
                {"detail": f"{result.failed} of {len(stories)} stories were not acknowledged by the broker; "
                           "retry the request (stories already delivered are de-duplicated)"},
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

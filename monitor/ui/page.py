"""Routes of the page: ``GET /`` (the page), ``GET /ui/api`` (the API's endpoints, read from
``/openapi.json``), ``/ui/static/...`` (its assets, shipped in the package,
nothing from a CDN), ``GET /ui/overview``, ``GET /ui/keys`` and ``GET /ui/item`` (the JSON it reads).

Errors are JSON ``{"detail": "..."}`` with a 4xx status; the page shows the detail as it is.
A static asset is looked up by name among the files shipped (never a path built from the request
on the file system): anything else, a NUL byte or a path of thousands of segments included, is 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse

from monitor.core.api_errors import BAD_QUERY, NOT_FOUND
from monitor.ui.overview import KeyMatches, Overview, UiError

STATIC = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
POLL_HEADERS = {"Cache-Control": "no-store"}
SEARCHABLE = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000$]"
"""What ``q`` of ``/ui/keys`` must contain: a character that is neither white space (``str.isspace``,
spelt out so that JSON Schema's regex dialect means the same) nor ``$``; the schema says so too."""
_SEARCHABLE = re.compile(SEARCHABLE)


def assets(root: Path = STATIC) -> dict[str, Path]:
    """The page's assets by their path under ``root`` (``"app.js"``, ``"img/logo.svg"``)."""
    return {
        p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in MEDIA_TYPES
    }


def _error(err: UiError) -> JSONResponse:
    return JSONResponse({"detail": str(err)}, status_code=err.status, headers=POLL_HEADERS)


def page_router(
    build_overview: Callable[..., Overview],
    match: Callable[[str, str | None], KeyMatches],
    item: Callable[[str], Any],
    windows: Sequence[str] = (),
) -> APIRouter:
    """``windows``: the aggregator's window names, listed in the schema of the ``window`` parameters
    (empty or absent means the default); any other name is a 400 naming them."""
    router = APIRouter(tags=["page"])
    shipped = assets()
    window_schema = {"enum": [*windows, ""]} if windows else None

    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type=MEDIA_TYPES[".html"], headers=POLL_HEADERS)

    @router.get("/ui/api", include_in_schema=False)
    def api_docs() -> FileResponse:
        return FileResponse(STATIC / "api.html", media_type=MEDIA_TYPES[".html"], headers=POLL_HEADERS)

    @router.get("/ui/static/{name:path}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        path = shipped.get(name)
        if path is None:
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise HTTPException(status_code=404, detail=f"no page asset {shown!r}")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix])

    @router.get(
        "/ui/overview",
        response_model=Overview,
        responses={**BAD_QUERY, **NOT_FOUND},
        summary="everything the page at / shows, in one poll",
    )
    def get_overview(
        window: str | None = Query(
            default=None, description="window name; default 5m", json_schema_extra=window_schema
        ),
        key: list[str] = Query(default=[], description="trend keys to chart besides the busiest ones"),
        points: int = Query(default=96, ge=1, le=1000, description="windows per series"),
    ):
        try:
            return build_overview(window=window, pinned=key, points=points)
        except UiError as err:
            return _error(err)

    @router.get(
        "/ui/keys",
        response_model=KeyMatches,
        responses={**BAD_QUERY, **NOT_FOUND},
        summary="trend keys containing q, busiest first",
    )
    def get_keys(
        q: str = Query(description="part of a ticker, topic or source", json_schema_extra={"pattern": SEARCHABLE}),
        window: str | None = Query(default=None, json_schema_extra=window_schema),
    ):
        if not _SEARCHABLE.search(q):
            q = ""  # nothing to search for ("$ $" included): refused below with the page's own 400 message
        try:
            return match(q, window)
        except UiError as err:
            return _error(err)

    @router.get("/ui/item", responses=NOT_FOUND, summary="one scored story this process kept, by id")
    def get_item(id: str = Query(description="story id")):
        try:
            return item(id)
        except UiError as err:
            return _error(err)

    return router


__all__ = ["STATIC", "page_router"]

"""FastAPI routers over the in-process stores (see :mod:`monitor.stages.recent`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from monitor.core.api_errors import BAD_QUERY, NOT_FOUND
from monitor.core.records import ScoredItem, TrendPoint, UtcDatetime
from monitor.stages.recent import ItemStore, TrendStore


class TrendsResponse(BaseModel):
    key: str
    window: str
    points: list[TrendPoint]


class TrendKeysResponse(BaseModel):
    keys: list[str]
    windows: list[str]


def trends_router(store: TrendStore, window_names: list[str]) -> APIRouter:
    router = APIRouter(tags=["trends"])

    @router.get("/trends", response_model=TrendsResponse, responses=BAD_QUERY)
    def get_trends(
        key: str = Query(description="'all', 'topic:<name>', 'ticker:<SYM>' or 'source:<name>'"),
        # The schema lists the configured windows; another name is still the 400 saying which exist.
        window: str = Query(
            description=f"one of: {', '.join(window_names)}", json_schema_extra={"enum": list(window_names)}
        ),
        since: UtcDatetime | None = Query(default=None, description="ISO 8601; windows ending after it"),
        limit: int | None = Query(default=None, ge=1, le=10_000),
    ) -> TrendsResponse:
        if window not in window_names:
            raise HTTPException(status_code=400, detail=f"unknown window {window!r}; known: {window_names}")
        return TrendsResponse(key=key, window=window, points=store.query(key, window, since, limit))

    @router.get("/trends/keys", response_model=TrendKeysResponse)
    def get_trend_keys() -> TrendKeysResponse:
        return TrendKeysResponse(keys=store.keys(), windows=list(window_names))

    return router


def items_router(store: ItemStore) -> APIRouter:
    router = APIRouter(tags=["items"])

    @router.get(
        "/items/{item_id:path}",
        response_model=ScoredItem,
        responses=NOT_FOUND,
        summary="One scored story",
        description="The scored story as it travels on news.scored: the story's sentiment and topic, "
        "`entities` (per ticker: its own sentiment, probabilities, score in [-1, 1], relevance "
        "in [0, 1] and method) and `item.mentions` (where each ticker was found: part, start, "
        "end, surface, how). Both are empty on records older than schema 2.",
    )
    def get_item(item_id: str) -> ScoredItem:
        item = store.get(item_id)
        if item is None:
            raise HTTPException(status_code=404, detail=f"no scored item {item_id!r} seen by this process")
        return item

    return router

"""The error answers of the HTTP API: the reply models and the ``responses=`` entries routes declare.

Every route's 4xx is listed on its operation, so clients generated from ``/openapi.json`` know
them: routes declare their own (``responses=``, with :data:`BAD_QUERY` and :data:`NOT_FOUND`);
:func:`monitor.app.openapi.document_errors` adds what every route can answer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    """A refused request: ``detail`` says why."""

    detail: str


class LabelRowError(BaseModel):
    row: int | str = Field(description="the label's index in the batch")
    error: str


class LabelsRefused(BaseModel):
    """``POST /labels`` refused: ``detail`` says why; ``errors`` names every bad label (nothing is
    stored). A body that is not JSON gets FastAPI's validation errors as ``detail`` (a list)."""

    detail: str | list[dict[str, Any]]
    errors: list[LabelRowError] | None = None


def error(description: str, model: type[BaseModel] = ErrorDetail) -> dict[str, Any]:
    return {"model": model, "description": description}


Responses = dict[int | str, dict[str, Any]]
"""FastAPI's ``responses=`` mapping: status code -> the documented reply."""

BAD_QUERY: Responses = {400: error("a query parameter names something unknown (the detail says what)")}
NOT_FOUND: Responses = {404: error("nothing with that id or key here")}
UNREADABLE_BODY = error("the body is not JSON text (FastAPI's answer to a JSON body that is not UTF-8)")
NOT_JSON = error("the body is not sent as JSON (Content-Type must be application/json)")
